/**
 * SDXL textual-inversion embeddings (the two-encoder form: `clip_l` and `clip_g` tensors): each
 * encoder's vectors reach that encoder exactly where the embedding's name stands in the prompt.
 * Checked against the encoders run on the same vectors placed by hand: a copy of tiny-sdxl whose
 * two token tables hold clip_l's and clip_g's vectors in the rows of two ordinary tokens,
 * prompted with those tokens, must give the same prompt embeddings, the same pooled embedding
 * (taken at the end-of-text token either way) and the same images.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { listEmbeddingFiles } from "../../src/engine/embeddings.js";
import { ModelError } from "../../src/engine/errors.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { ClipTokenizer } from "../../src/engine/tokenizer/clip.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, maxAbsDiff } from "../helpers/fixtures.js";
import { writeTinyRefiner } from "../helpers/tiny-refiner.js";

const MODEL = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
const WIDTH_L = 16; // tiny-sdxl's text_encoder (CLIP ViT-L's place)
const WIDTH_G = 32; // its text_encoder_2 (OpenCLIP bigG's place)
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-sdxl-embeddings-"));
const embDir = path.join(tmp, "embeddings");
const opened: Pipeline[] = [];
after(async () => {
  for (const p of opened) await p.release();
  rmSync(tmp, { recursive: true, force: true });
});

const f32 = (name: string, shape: number[], data: Float32Array) => ({ name, dtype: "F32" as const, shape, data });
/** Two vectors per encoder, deterministic, unlike any token's and unlike each other's. */
const clipL = Float32Array.from({ length: 2 * WIDTH_L }, (_, i) => Math.cos(i * 1.3) * 0.05);
const clipG = Float32Array.from({ length: 2 * WIDTH_G }, (_, i) => Math.sin(i * 0.7 + 1) * 0.05);

/** A copy of tiny-sdxl whose token tables hold the vectors in the rows of "zebra" and "kite". */
async function handPlacedCopy(): Promise<string> {
  const dir = path.join(tmp, "by-hand");
  mkdirSync(dir);
  for (const entry of ["model_index.json", "scheduler", "tokenizer", "tokenizer_2", "unet", "vae"]) {
    symlinkSync(path.join(MODEL, entry), path.join(dir, entry));
  }
  const tokenizer = await ClipTokenizer.fromFolder(path.join(MODEL, "tokenizer"));
  const [zebra, kite] = tokenizer.encode("zebra kite", { padding: false }).inputIds.slice(1, -1) as [number, number];
  for (const [component, vectors, width] of [
    ["text_encoder", clipL, WIDTH_L],
    ["text_encoder_2", clipG, WIDTH_G],
  ] as const) {
    mkdirSync(path.join(dir, component));
    copyFileSync(path.join(MODEL, component, "config.json"), path.join(dir, component, "config.json"));
    const st = await readSafetensors(path.join(MODEL, component, "model.safetensors"));
    const tensors = [];
    for (const t of st.tensors.values()) {
      const data = await readTensor(t);
      if (t.name === "text_model.embeddings.token_embedding.weight") {
        data.set(vectors.subarray(0, width), zebra * width);
        data.set(vectors.subarray(width), kite * width);
      }
      tensors.push(f32(t.name, t.shape, data));
    }
    await writeSafetensors(path.join(dir, component, "model.safetensors"), tensors);
  }
  return dir;
}

describe("SDXL textual inversion on tiny-sdxl", () => {
  let withEmb: Pipeline;
  let byHand: Pipeline;
  before(async () => {
    mkdirSync(embDir);
    await writeSafetensors(path.join(embDir, "xlstyle.safetensors"), [
      f32("clip_g", [2, WIDTH_G], clipG),
      f32("clip_l", [2, WIDTH_L], clipL),
    ]);
    withEmb = await loadPipeline(MODEL, { threads: 1, embeddings: [embDir] });
    byHand = await loadPipeline(await handPlacedCopy(), { threads: 1 });
    opened.push(withEmb, byHand);
  });

  const same = async (prompts: string[], handPrompts: string[]) => {
    const a = await withEmb.sdxl!.encode(prompts);
    const b = await byHand.sdxl!.encode(handPrompts);
    assert.deepEqual(a.promptEmbeds.shape, b.promptEmbeds.shape);
    assert.equal(maxAbsDiff(a.promptEmbeds.data, b.promptEmbeds.data), 0, "prompt embeddings (both encoders)");
    assert.equal(maxAbsDiff(a.pooled.data, b.pooled.data), 0, "pooled text_embeds");
  };

  test("clip_l's vectors reach CLIP ViT-L and clip_g's OpenCLIP, where the name stands", () =>
    same(["a photo of xlstyle, at night", "xlstyle"], ["a photo of zebra kite, at night", "zebra kite"]));

  test("each encoder has its own placer with its own vectors", () => {
    const placers = withEmb.sdxl?.placers;
    assert.equal(placers?.length, 2);
    assert.deepEqual(
      placers?.map((p) => p.names),
      [["xlstyle"], ["xlstyle"]],
    );
  });

  test("cut at 77 tokens as the tokens placed by hand are", async () => {
    const filler = Array.from({ length: 74 }, () => "red").join(" ");
    await same([`${filler} xlstyle`], [`${filler} zebra kite`]);
  });

  test("a prompt without embeddings is unchanged", async () => {
    const plain = await loadPipeline(MODEL, { threads: 1 });
    opened.push(plain);
    const a = await withEmb.sdxl!.encode(["a red cube"]);
    const b = await plain.sdxl!.encode(["a red cube"]);
    assert.equal(maxAbsDiff(a.promptEmbeds.data, b.promptEmbeds.data), 0);
    assert.equal(maxAbsDiff(a.pooled.data, b.pooled.data), 0);
  });

  test("in the prompt and the negative prompt: the same image as the vectors placed by hand", async () => {
    const req = { numInferenceSteps: 3, seed: 5, width: 64, height: 64, guidanceScale: 5 };
    const a = await withEmb.generate({ ...req, prompt: "a castle, xlstyle", negativePrompt: "xlstyle, blurry" });
    const b = await byHand.generate({ ...req, prompt: "a castle, zebra kite", negativePrompt: "zebra kite, blurry" });
    assert.equal(maxAbsDiff(a.latents.data, b.latents.data), 0);
  });

  test("inside A1111 emphasis and chunks: as the vectors placed by hand, weighted like any token", async () => {
    const a1111 = async (pipe: Pipeline, prompts: string[]) => pipe.sdxl!.encode(prompts, [], "a1111");
    const filler = Array.from({ length: 74 }, () => "red").join(" ");
    // The second prompt's embedding would straddle the 75-token boundary: it moves to chunk 2 whole
    // (A1111 never splits an embedding), where the hand-placed tokens need a BREAK to follow.
    const prompts = ["a (photo of xlstyle:1.4), [at night]", `${filler} xlstyle BREAK a cube`];
    const hand = ["a (photo of zebra kite:1.4), [at night]", `${filler} BREAK zebra kite BREAK a cube`];
    const a = await a1111(withEmb, prompts);
    const b = await a1111(byHand, hand);
    assert.deepEqual(a.promptEmbeds.shape, [2, 3 * 77, WIDTH_L + WIDTH_G]);
    assert.equal(maxAbsDiff(a.promptEmbeds.data, b.promptEmbeds.data), 0, "prompt embeddings (both encoders)");
    assert.equal(maxAbsDiff(a.pooled.data, b.pooled.data), 0, "pooled text_embeds");
    const unweighted = await a1111(withEmb, ["a photo of xlstyle, at night"]);
    const first = a.promptEmbeds.data.subarray(0, 77 * (WIDTH_L + WIDTH_G));
    assert.ok(maxAbsDiff(first, unweighted.promptEmbeds.data.subarray(0, first.length)) > 1e-3, "emphasis applied");
  });

  test("the refiner (OpenCLIP only) takes the clip_g vectors at the same places", async () => {
    const refiner = await loadPipeline(await writeTinyRefiner(path.join(tmp, "refiner")), {
      threads: 1,
      embeddings: [embDir],
    });
    opened.push(refiner);
    assert.equal(refiner.sdxl?.placers?.length, 1);
    const prompts = ["a photo of xlstyle, at night", "xlstyle"];
    const r = await refiner.sdxl!.encode(prompts);
    const base = await withEmb.sdxl!.encode(prompts);
    // The base's embeddings are [CLIP ViT-L 16 | OpenCLIP 32] per token; the refiner's the OpenCLIP part.
    const openClipPart = base.promptEmbeds.data.filter((_, i) => i % (WIDTH_L + WIDTH_G) >= WIDTH_L);
    assert.equal(maxAbsDiff(r.promptEmbeds.data, openClipPart), 0);
    assert.equal(maxAbsDiff(r.pooled.data, base.pooled.data), 0);
  });

  test("embeddings folders list SDXL files with both widths", async () => {
    const [e] = await listEmbeddingFiles(embDir);
    assert.deepEqual(
      { name: e?.name, vectors: e?.vectors, width: e?.width, clipLWidth: e?.clipLWidth },
      { name: "xlstyle", vectors: 2, width: WIDTH_G, clipLWidth: WIDTH_L },
    );
  });
});

describe("bad SDXL embedding files", () => {
  const rejects = async (file: string, pattern: RegExp) => {
    await assert.rejects(loadPipeline(MODEL, { threads: 1, embeddings: [file] }), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(file)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };
  const write = async (name: string, tensors: { name: string; shape: number[] }[]) => {
    const file = path.join(tmp, name);
    await writeSafetensors(
      file,
      tensors.map((t) => f32(t.name, t.shape, new Float32Array(t.shape.reduce((a, d) => a * d, 1)))),
    );
    return file;
  };

  test("clip_g vectors of the wrong width (SDXL base's 1280 on the tiny model)", async () => {
    await rejects(
      await write("xl-wide.safetensors", [
        { name: "clip_l", shape: [1, WIDTH_L] },
        { name: "clip_g", shape: [1, 1280] },
      ]),
      /clip_g vectors 1280 wide.*OpenCLIP text encoder takes 32/,
    );
  });
  test("clip_l vectors of the wrong width", async () => {
    await rejects(
      await write("xl-wide-l.safetensors", [
        { name: "clip_l", shape: [1, 768] },
        { name: "clip_g", shape: [1, WIDTH_G] },
      ]),
      /clip_l vectors 768 wide.*CLIP ViT-L text encoder takes 16/,
    );
  });
  test("an SD 1.x / 2.x embedding on SDXL", async () => {
    await rejects(
      await write("sd1.safetensors", [{ name: "emb_params", shape: [1, WIDTH_L] }]),
      /one-encoder \(SD 1\.x \/ 2\.x\) embedding.*clip_l and clip_g/,
    );
  });
  test("only one encoder's vectors", async () => {
    await rejects(await write("half.safetensors", [{ name: "clip_g", shape: [1, WIDTH_G] }]), /only clip_g/);
  });
  test("clip_l and clip_g counts that do not pair up", async () => {
    await rejects(
      await write("unpaired.safetensors", [
        { name: "clip_l", shape: [2, WIDTH_L] },
        { name: "clip_g", shape: [3, WIDTH_G] },
      ]),
      /2 clip_l vectors but 3 clip_g vectors/,
    );
  });
  test("too many vectors", async () => {
    await rejects(
      await write("xl-long.safetensors", [
        { name: "clip_l", shape: [76, WIDTH_L] },
        { name: "clip_g", shape: [76, WIDTH_G] },
      ]),
      /vectors \(1–75\)/,
    );
  });
});
