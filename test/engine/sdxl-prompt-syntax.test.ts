/**
 * AUTOMATIC1111's prompt syntax on SDXL (tiny-sdxl), as A1111 runs it: both encoders get the same
 * chunks and weights, each with its own tokenizer's padding (CLIP ViT-L: end-of-text; OpenCLIP:
 * "!", id 0); emphasis scales each encoder's penultimate states and restores that encoder's mean;
 * chunks are joined along the sequence; the pooled embedding is the first chunk's; an empty
 * negative prompt is zeros; clip skip is ignored. Checked against the encoders run on token ids
 * built by hand, the diffusers path (identical for plain prompts under 75 tokens) and diffusers'
 * golden. Also: one CLIP graph serves SDXL's projected pooled output beside clip skip's deeper
 * states.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError, RequestError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { type TensorF32, TextEncoder } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import type { SdxlConditioner } from "../../src/engine/sdxl.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { familyManifest, familyTensor, GOLDEN_FAMILY, maxAbsDiff } from "../helpers/fixtures.js";
import { randomSdxlLora, writeLora } from "../helpers/sdxl-lora.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

describe("the projected text encoder with clip skip outputs (tiny-sdxl text_encoder_2)", () => {
  let enc: TextEncoder;
  before(async () => {
    const folder = await openModelFolder(BASE);
    assert.ok(folder.textEncoder2);
    enc = await TextEncoder.load(folder.textEncoder2, { threads: 1 });
  });
  after(() => enc.session.release());

  test("has text_embeds and the deeper hidden states side by side", async () => {
    assert.ok(enc.projectionDim !== null);
    const names = enc.session.outputNames;
    for (const n of ["last_hidden_state", "penultimate_hidden_state", "text_embeds", "hidden_state_minus_3"]) {
      assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
    }
    const ids = [[49406, 320, 1125, 49407, 49407]];
    const out = await enc.outputs(ids, ["text_embeds", "penultimate_hidden_state"]);
    assert.deepEqual(out["text_embeds"]?.shape, [1, enc.projectionDim]);
    // Clip skip 2 is the penultimate state through the final norm: a different tensor of the same shape.
    const skipped = await enc.encode(ids, {}, 2);
    const raw = out["penultimate_hidden_state"];
    assert.ok(raw);
    assert.deepEqual(skipped.shape, raw.shape);
    assert.ok(maxAbsDiff(skipped.data, raw.data) > 1e-3);
    const last = await enc.encode(ids);
    assert.deepEqual(last.shape, raw.shape);
  });
});

const WIDTHS = [16, 32]; // tiny-sdxl's two encoders' hidden sizes
const DIM = 48;
const LEN = 77;
/** The golden tolerance for networks (sdxl-golden.test.ts). */
const NET_TOL = 1e-4;
/** Emphasis against a float64 computation from the encoder's own outputs (the SD path's, README). */
const EMPHASIS_TOL = 2e-6;

/** Encoder `e`'s channels of context rows [n, L, 48] → [n, L, width]. */
function part(ctx: TensorF32, e: number): Float32Array {
  const [n, l] = ctx.shape as [number, number];
  const w = WIDTHS[e] as number;
  const off = e === 0 ? 0 : (WIDTHS[0] as number);
  const out = new Float32Array(n * l * w);
  for (let r = 0; r < n * l; r++) out.set(ctx.data.subarray(r * DIM + off, r * DIM + off + w), r * w);
  return out;
}

/** Rows [from, to) of sequence positions of batch item b of a context. */
function rows(ctx: TensorF32, b: number, from: number, to: number): Float32Array {
  const l = ctx.shape[1] as number;
  return ctx.data.subarray((b * l + from) * DIM, (b * l + to) * DIM);
}

describe("A1111 prompt syntax on SDXL", () => {
  let pipe: Pipeline;
  let sdxl: SdxlConditioner;
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-sdxl-a1111-"));
  before(async () => {
    pipe = await loadPipeline(BASE, { threads: 1 });
    assert.ok(pipe.sdxl);
    sdxl = pipe.sdxl;
  });
  after(async () => {
    await pipe.release();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** Each encoder run on ids built by hand: its penultimate states and (the second's) text_embeds. */
  const byHand = async (e: number, ids: number[][]) => {
    const enc = sdxl.encoders[e]?.encoder as TextEncoder;
    const names = e === 1 ? ["penultimate_hidden_state", "text_embeds"] : ["penultimate_hidden_state"];
    const out = await enc.outputs(ids, names);
    return { z: (out["penultimate_hidden_state"] as TensorF32).data, pooled: out["text_embeds"]?.data };
  };
  /** Content token ids (no BOS/EOS) of a text with encoder e's tokenizer. */
  const tokenizer = (e: number) => {
    const tok = sdxl.encoders[e]?.tokenizer;
    assert.ok(tok);
    return tok;
  };
  const content = (e: number, text: string) =>
    tokenizer(e).encode(text, { padding: false, truncation: false }).inputIds.slice(1, -1);
  /** BOS + content + EOS, padded to 77 with the tokenizer's pad id. */
  const chunkIds = (e: number, ids: number[]) => {
    const tok = tokenizer(e);
    const out = [tok.bosTokenId, ...ids, tok.eosTokenId];
    while (out.length < LEN) out.push(tok.padTokenId);
    return out;
  };

  test('the two tokenizers pad as A1111 pads them: end-of-text for CLIP ViT-L, "!" (id 0) for OpenCLIP', () => {
    assert.equal(sdxl.encoders[0]?.tokenizer.padTokenId, sdxl.encoders[0]?.tokenizer.eosTokenId);
    assert.equal(sdxl.encoders[1]?.tokenizer.padTokenId, 0);
  });

  test("a plain prompt under 75 tokens equals the diffusers path exactly, and diffusers' golden", async () => {
    const m = familyManifest("sdxl");
    for (const prompt of [m.runs[0].prompt as string, "a photo of a cat, 4k, high detail", ""]) {
      const a = await sdxl.encode([prompt, "low quality"], [], "a1111");
      const d = await sdxl.encode([prompt, "low quality"]);
      assert.deepEqual(a.promptEmbeds.shape, [2, LEN, DIM]);
      assert.equal(maxAbsDiff(a.promptEmbeds.data, d.promptEmbeds.data), 0, `prompt embeds of ${prompt}`);
      assert.equal(maxAbsDiff(a.pooled.data, d.pooled.data), 0, `pooled of ${prompt}`);
    }
    const e = m.encode_prompt;
    const ref = (file: string) => familyTensor("sdxl", file.replace(/^ref\/|\.bin$/g, ""));
    const { context, added } = await sdxl.conditioning(
      { prompt: m.runs[0].prompt, negativePrompt: "low quality", width: 96, height: 64 },
      1,
      true,
      false,
      [],
      "a1111",
    );
    const half = LEN * DIM;
    assert.ok(maxAbsDiff(context.data.subarray(0, half), ref(e.negative_prompt_embeds).data) <= NET_TOL);
    assert.ok(maxAbsDiff(context.data.subarray(half), ref(e.prompt_embeds).data) <= NET_TOL);
    const p = added.textEmbeds.data.length / 2;
    assert.ok(maxAbsDiff(added.textEmbeds.data.subarray(0, p), ref(e.negative_pooled_prompt_embeds).data) <= NET_TOL);
    assert.ok(maxAbsDiff(added.textEmbeds.data.subarray(p), ref(e.pooled_prompt_embeds).data) <= NET_TOL);
  });

  test("(red:1.5) scales red's states in each encoder and restores that encoder's mean; pooled untouched", async (t) => {
    const a = await sdxl.encode(["a (red:1.5) cube, [shiny]"], [], "a1111");
    assert.deepEqual(a.promptEmbeds.shape, [1, LEN, DIM]);
    for (const e of [0, 1]) {
      const ids = content(e, "a red cube, shiny");
      const weights = [1, 1.5, 1, 1, 1 / 1.1];
      assert.equal(ids.length, weights.length);
      const { z, pooled } = await byHand(e, [chunkIds(e, ids)]);
      const w = WIDTHS[e] as number;
      let before = 0;
      for (const v of z) before += v;
      before /= z.length;
      const scaled = Float64Array.from(z);
      weights.forEach((m, t) => {
        for (let j = (t + 1) * w; j < (t + 2) * w; j++) scaled[j] = (scaled[j] as number) * m;
      });
      let after = 0;
      for (const v of scaled) after += v;
      after /= scaled.length;
      const expected = scaled.map((v) => (v * before) / after);
      const ours = part(a.promptEmbeds, e);
      const err = maxAbsDiff(ours, Float32Array.from(expected));
      assert.ok(err <= EMPHASIS_TOL, `encoder ${e + 1}: max abs error ${err}`);
      t.diagnostic(`encoder ${e + 1}: emphasis max abs error ${err}`);
      assert.ok(maxAbsDiff(ours, z) > 1e-3, "the emphasis changes the states");
      if (e === 1) assert.equal(maxAbsDiff(a.pooled.data, pooled as Float32Array), 0, "pooled as the plain prompt's");
    }
  });

  test("BREAK makes two chunks (sequence 154), each the encoding of its text, pooled from the first", async () => {
    const a = await sdxl.encode(["a red cube BREAK a blue sphere"], [], "a1111");
    assert.deepEqual(a.promptEmbeds.shape, [1, 2 * LEN, DIM]);
    const first = await sdxl.encode(["a red cube"], [], "a1111");
    const second = await sdxl.encode(["a blue sphere"], [], "a1111");
    assert.equal(maxAbsDiff(rows(a.promptEmbeds, 0, 0, LEN), first.promptEmbeds.data), 0);
    assert.equal(maxAbsDiff(rows(a.promptEmbeds, 0, LEN, 2 * LEN), second.promptEmbeds.data), 0);
    assert.equal(maxAbsDiff(a.pooled.data, first.pooled.data), 0);
    assert.ok(maxAbsDiff(a.pooled.data, second.pooled.data) > 1e-3);
  });

  test("a 100-token prompt: chunks of 75 + 25 built by hand per encoder, pooled from chunk 1", async () => {
    const prompt = Array.from({ length: 100 }, (_, i) => (i % 2 ? "cube" : "red")).join(" ");
    const a = await sdxl.encode([prompt], [], "a1111");
    assert.deepEqual(a.promptEmbeds.shape, [1, 2 * LEN, DIM]);
    for (const e of [0, 1]) {
      const ids = content(e, prompt);
      assert.equal(ids.length, 100);
      const chunks = [chunkIds(e, ids.slice(0, 75)), chunkIds(e, ids.slice(75))];
      const { z, pooled } = await byHand(e, chunks);
      // byHand gives [2, 77, w]: chunk 1 then chunk 2, which is how they are joined.
      assert.equal(maxAbsDiff(part(a.promptEmbeds, e), z), 0, `encoder ${e + 1}`);
      if (e === 1) {
        const p = a.pooled.data.length;
        assert.equal(maxAbsDiff(a.pooled.data, (pooled as Float32Array).subarray(0, p)), 0, "chunk 1's pooled");
        assert.ok(maxAbsDiff(a.pooled.data, (pooled as Float32Array).subarray(p)) > 1e-3);
      }
    }
    // diffusers cuts the same prompt at 77 tokens: its encoding is the first chunk.
    const d = await sdxl.encode([prompt]);
    assert.equal(maxAbsDiff(rows(a.promptEmbeds, 0, 0, LEN), d.promptEmbeds.data), 0);
  });

  test("a negative with fewer chunks is padded with the empty prompt's chunk; an empty negative is zeros", async () => {
    const prompt = "a red cube BREAK a blue sphere";
    const req = { prompt, width: 64, height: 64 };
    const empty = await sdxl.encode([""], [], "a1111");
    const blurry = await sdxl.encode(["blurry"], [], "a1111");
    const withNeg = await sdxl.conditioning({ ...req, negativePrompt: "blurry" }, 1, true, false, [], "a1111");
    assert.deepEqual(withNeg.context.shape, [2, 2 * LEN, DIM]);
    assert.equal(maxAbsDiff(rows(withNeg.context, 0, 0, LEN), blurry.promptEmbeds.data), 0);
    assert.equal(maxAbsDiff(rows(withNeg.context, 0, LEN, 2 * LEN), empty.promptEmbeds.data), 0);
    const p = blurry.pooled.data.length;
    assert.equal(maxAbsDiff(withNeg.added.textEmbeds.data.subarray(0, p), blurry.pooled.data), 0);
    for (const negativePrompt of ["", undefined]) {
      const zero = await sdxl.conditioning({ ...req, negativePrompt }, 1, true, false, [], "a1111");
      assert.ok(
        rows(zero.context, 0, 0, LEN).every((v) => v === 0),
        "the empty negative's first chunk is zeros",
      );
      assert.equal(maxAbsDiff(rows(zero.context, 0, LEN, 2 * LEN), empty.promptEmbeds.data), 0);
      assert.ok(
        zero.added.textEmbeds.data.subarray(0, p).every((v) => v === 0),
        "and its pooled",
      );
    }
  });

  test("generate: plain prompts match the diffusers path; an empty negative is zeroed as diffusers' absent one", async () => {
    const run = (extra: Record<string, unknown>) =>
      pipe.generate({ prompt: "a cube", numInferenceSteps: 2, width: 64, height: 64, seed: 3, ...extra });
    const images = async (extra: Record<string, unknown>) => decodedToFloatImages((await run(extra)).decoded);
    const plain = await images({ negativePrompt: "dark" });
    assert.equal(maxAbsDiff(await images({ negativePrompt: "dark", promptSyntax: "a1111" }), plain), 0);
    const zeroed = await images({});
    assert.equal(maxAbsDiff(await images({ negativePrompt: "", promptSyntax: "a1111" }), zeroed), 0);
    // diffusers encodes a given "" as text; A1111 zeroes it.
    assert.ok(maxAbsDiff(await images({ negativePrompt: "" }), zeroed) > 0);
    assert.ok(maxAbsDiff(await images({ prompt: "a (cube:1.4)", promptSyntax: "a1111" }), zeroed) > 0);
  });

  test("clip skip is ignored with the a1111 syntax (as A1111 ignores it for SDXL), refused with diffusers'", async () => {
    const run = (extra: Record<string, unknown>) =>
      pipe.generate({ prompt: "a cube", numInferenceSteps: 1, width: 64, height: 64, seed: 1, ...extra });
    const one = await run({ promptSyntax: "a1111" });
    const two = await run({ promptSyntax: "a1111", clipSkip: 2 });
    assert.equal(maxAbsDiff(decodedToFloatImages(one.decoded), decodedToFloatImages(two.decoded)), 0);
    assert.equal(two.parameters.clipSkip, undefined, "not recorded: not applied");
    await assert.rejects(
      () => run({ clipSkip: 2 }),
      (err: unknown) =>
        err instanceof RequestError && err.field === "clipSkip" && /not supported on SDXL/.test(err.message),
    );
    await assert.rejects(
      () => loadPipeline(BASE, { threads: 1, clipSkip: 2 }),
      (err: unknown) => err instanceof ModelError && /not supported on SDXL/.test(err.message),
    );
    const loaded = await loadPipeline(BASE, { threads: 1, promptSyntax: "a1111", clipSkip: 2 });
    await loaded.release();
  });

  test("<lora:NAME:SCALE> tags reach SDXL's LoRA support: the same picture as the LoRA asked for by path", async () => {
    const dir = path.join(tmp, "loras");
    mkdirSync(dir);
    const file = await writeLora(path.join(dir, "xl-style.safetensors"), await randomSdxlLora(21), "kohya-sgm", 4);
    const withDir = await loadPipeline(BASE, { threads: 1, loraDir: dir });
    try {
      const req = { numInferenceSteps: 2, width: 64, height: 64, seed: 5, negativePrompt: "dark" };
      const tagged = await withDir.generate({
        ...req,
        prompt: "a (cube:1.2) <lora:xl-style:0.7>",
        promptSyntax: "a1111",
      });
      const byPath = await withDir.generate({
        ...req,
        prompt: "a (cube:1.2)",
        promptSyntax: "a1111",
        loras: [{ path: file, scale: 0.7 }],
      });
      const none = await withDir.generate({ ...req, prompt: "a (cube:1.2)", promptSyntax: "a1111" });
      const [t, b, n] = [tagged, byPath, none].map((r) => decodedToFloatImages(r.decoded));
      assert.equal(maxAbsDiff(t as Float32Array, b as Float32Array), 0);
      assert.ok(maxAbsDiff(t as Float32Array, n as Float32Array) > 1e-3, "the LoRA changes the picture");
      await assert.rejects(
        () => withDir.generate({ ...req, prompt: "a cube <lora:missing:1>", promptSyntax: "a1111" }),
        (err: unknown) => err instanceof RequestError && /missing/.test(err.message),
      );
    } finally {
      await withDir.release();
    }
  });
});
