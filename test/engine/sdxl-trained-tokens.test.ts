/**
 * Replicate's trained tokens on SDXL (cog-sdxl's `embeddings.pti`: text_encoders_0 and
 * text_encoders_1, the vectors of `<s0>`, `<s1>`… for each encoder), given per request: the
 * conditioning must equal a copy of the model with the tokens added to its tokenizers and token
 * tables as cog-sdxl adds them (exact, the pooled embedding included: transformers' legacy pooling
 * takes it at the last-numbered added token), on a pipeline loaded once, with no new session
 * between requests with and without them.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { splitOnTokens, type TrainedTokens } from "../../src/engine/embeddings.js";
import { RequestError } from "../../src/engine/errors.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, maxAbsDiff } from "../helpers/fixtures.js";
import { addedTokensSdxl } from "../helpers/sdxl-hand-placed.js";
import { writeTinyRefiner } from "../helpers/tiny-refiner.js";

const MODEL = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
const WIDTH_L = 16;
const WIDTH_G = 32;
/** The pooled embedding against its final-norm state projected here (float64 sums). */
const POOLED_TOLERANCE = 1e-6;
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-sdxl-pti-"));
const opened: Pipeline[] = [];
after(async () => {
  for (const p of opened) await p.release();
  rmSync(tmp, { recursive: true, force: true });
});

const f32 = (name: string, shape: number[], data: Float32Array) => ({ name, dtype: "F32" as const, shape, data });
const clipL = Float32Array.from({ length: 2 * WIDTH_L }, (_, i) => Math.sin(i * 0.9 + 2) * 0.05);
const clipG = Float32Array.from({ length: 2 * WIDTH_G }, (_, i) => Math.cos(i * 0.4) * 0.05);

describe("trained tokens per request on tiny-sdxl", () => {
  let pipe: Pipeline;
  let byHand: Pipeline;
  const pti = path.join(tmp, "embeddings.pti");
  before(async () => {
    await writeSafetensors(pti, [
      f32("text_encoders_0", [2, WIDTH_L], clipL),
      f32("text_encoders_1", [2, WIDTH_G], clipG),
    ]);
    pipe = await loadPipeline(MODEL, { threads: 1, requestEmbeddings: true });
    const added = await addedTokensSdxl(MODEL, path.join(tmp, "by-hand"), clipL, clipG, { l: WIDTH_L, g: WIDTH_G });
    assert.deepEqual(added.ids, [49408, 49409], "transformers' ids for the added tokens");
    byHand = await loadPipeline(added.dir, { threads: 1 });
    opened.push(pipe, byHand);
  });

  const conditioning = (p: Pipeline, prompt: string, negativePrompt: string, trainedTokens?: string) =>
    p.sdxl!.conditioning({ prompt, negativePrompt, width: 64, height: 64, trainedTokens }, 1, true);

  test("<s0><s1> in the prompt and the negative prompt = the tokens added to the model", async () => {
    for (const [prompt, negative] of [
      ["a photo of <s0><s1>, at night", "blurry <s1>"],
      ["<s1> then <s0>, <s1>", "<s0> only"],
      ["no trained token", "<s1><s0>"],
    ] as const) {
      const a = await conditioning(pipe, prompt, negative, pti);
      const b = await conditioning(byHand, prompt, negative);
      assert.equal(maxAbsDiff(a.context.data, b.context.data), 0, `prompt embeddings (both encoders): ${prompt}`);
      assert.equal(maxAbsDiff(a.added.textEmbeds.data, b.added.textEmbeds.data), 0, `pooled text_embeds: ${prompt}`);
    }
  });

  /**
   * Where each text's pooled embedding was taken: the positions whose final-norm state, projected
   * here by hand, gives text_embeds (to POOLED_TOLERANCE), with the ids fed.
   */
  const pooledPlaces = async (p: Pipeline, texts: string[], trained?: TrainedTokens) => {
    const sdxl = p.sdxl!;
    const { encoder } = sdxl.encoders[1]!;
    const { ids, feeds } = sdxl.placers![1]!.encode(texts, trained);
    const out = await encoder.outputs(ids, ["last_hidden_state", "text_embeds"], feeds);
    const st = await readSafetensors(path.join(MODEL, "text_encoder_2", "model.safetensors"));
    const projection = await readTensor(st.tensors.get("text_projection.weight")!); // [P, H]
    const [H, P, L] = [encoder.hiddenSize, encoder.projectionDim!, ids[0]!.length];
    const places = texts.map((_, b) => {
      const pooled = out["text_embeds"]!.data.subarray(b * P, (b + 1) * P);
      const matches: number[] = [];
      for (let at = 0; at < L; at++) {
        const h = out["last_hidden_state"]!.data.subarray((b * L + at) * H, (b * L + at + 1) * H);
        const byHand = Float64Array.from({ length: P }, (_, q) =>
          h.reduce((sum, v, k) => sum + v * projection[q * H + k]!, 0),
        );
        if (maxAbsDiff(pooled, byHand) <= POOLED_TOLERANCE) matches.push(at);
      }
      return matches;
    });
    return { ids, places };
  };

  test("the pooled embedding: the final-norm state at the last-numbered added token's first place, projected", async () => {
    const trained = (await pipe.sdxl!.trainedTokens(pti))[1] as TrainedTokens;
    const texts = ["a photo of <s0><s1>", "<s1> and <s0> <s1>", "only <s0> here", "a photo"];
    const { ids, places } = await pooledPlaces(pipe, texts, trained);
    // [BOS, a, photo, of, <s0>, <s1>, EOS]: <s1>; [BOS, <s1>, and, <s0>, <s1>, EOS]: the first <s1>;
    // [BOS, only, <s0>, here, EOS]: <s0>; no added token: the end-of-text token.
    const [s0, s1, eos] = [49408, 49409, pipe.sdxl!.encoders[1]!.tokenizer.eosTokenId];
    const expected: [number, number][] = [
      [5, s1],
      [1, s1],
      [2, s0],
      [3, eos],
    ];
    expected.forEach(([at, id], b) => {
      assert.equal(ids[b]![at], id, `text ${b}: ${ids[b]!.slice(0, 8)}`);
      // Only there: the end-of-text token (A1111's place) gives another vector.
      assert.deepEqual(places[b], [at], `text ${b}`);
    });
  });

  test("with --embeddings-dir embeddings too: those pool at the end-of-text token, the added tokens as transformers", async () => {
    const dir = path.join(tmp, "embeddings");
    mkdirSync(dir);
    await writeSafetensors(path.join(dir, "xlemb.safetensors"), [
      f32("clip_l", [1, WIDTH_L], clipL.subarray(WIDTH_L)),
      f32("clip_g", [1, WIDTH_G], clipG.subarray(WIDTH_G)),
    ]);
    const both = await loadPipeline(MODEL, { threads: 1, embeddings: [dir], requestEmbeddings: true });
    opened.push(both);
    const trained = (await both.sdxl!.trainedTokens(pti))[1] as TrainedTokens;
    // The trained tokens take rows 0 and 1 (ids 49408, 49409, as transformers numbers them), the
    // embedding a row of its own at each place after those.
    const { ids, places } = await pooledPlaces(both, ["xlemb <s0>", "xlemb", "<s0> xlemb xlemb"], trained);
    assert.deepEqual(
      ids.map((r) => r.slice(0, 5)),
      [
        [49406, 49410, 49408, 49407, 0],
        [49406, 49411, 49407, 0, 0],
        [49406, 49408, 49412, 49413, 49407],
      ],
    );
    assert.deepEqual(places, [[2], [2], [1]]);
    // Without trained tokens the embedding's rows start at 0, pooled at the end-of-text token too.
    assert.deepEqual((await pooledPlaces(both, ["xlemb"])).places, [[2]]);
  });

  test("found as added tokens are, whatever stands around them", async () => {
    const a = await conditioning(pipe, "of<s0>x<s1>", "", pti);
    const b = await conditioning(byHand, "of<s0>x<s1>", "");
    assert.equal(maxAbsDiff(a.context.data, b.context.data), 0);
    assert.equal(maxAbsDiff(a.added.textEmbeds.data, b.added.textEmbeds.data), 0);
    assert.deepEqual(splitOnTokens("a<s1><s0>b<s10", ["<s0>", "<s1>"]), ["a", 1, 0, "b<s10"]);
    assert.deepEqual(splitOnTokens("<s10>", ["<s1>", "<s10>"]), [1]);
  });

  test("the same pipeline without them: the plain prompt, unchanged (no new session)", async () => {
    const plain = await loadPipeline(MODEL, { threads: 1 });
    opened.push(plain);
    const a = await conditioning(pipe, "a photo of <s0>", "");
    const b = await conditioning(plain, "a photo of <s0>", "");
    assert.equal(maxAbsDiff(a.context.data, b.context.data), 0);
    assert.equal(maxAbsDiff(a.added.textEmbeds.data, b.added.textEmbeds.data), 0);
  });

  test("a generation with them equals the model with the tokens added", async () => {
    const req = { numInferenceSteps: 2, seed: 3, width: 64, height: 64, guidanceScale: 5 };
    const a = await pipe.generate({ ...req, prompt: "a castle, <s0><s1>", trainedTokens: pti });
    const b = await byHand.generate({ ...req, prompt: "a castle, <s0><s1>" });
    assert.equal(maxAbsDiff(a.latents.data, b.latents.data), 0);
  });

  test("an OpenCLIP-only model (the refiner's layout) takes text_encoders_1 at the same places", async () => {
    const refiner = await loadPipeline(await writeTinyRefiner(path.join(tmp, "refiner")), {
      threads: 1,
      requestEmbeddings: true,
    });
    opened.push(refiner);
    const prompts = ["a photo of <s0><s1>, at night", "<s1>"];
    const trained = await pipe.sdxl!.trainedTokens(pti);
    const r = await refiner.sdxl!.encode(prompts, [], "diffusers", await refiner.sdxl!.trainedTokens(pti));
    const base = await pipe.sdxl!.encode(prompts, [], "diffusers", trained);
    const openClipPart = base.promptEmbeds.data.filter((_, i) => i % (WIDTH_L + WIDTH_G) >= WIDTH_L);
    assert.equal(maxAbsDiff(r.promptEmbeds.data, openClipPart), 0);
    assert.equal(maxAbsDiff(r.pooled.data, base.pooled.data), 0);
  });

  const rejects = async (name: string, tensors: { name: string; shape: number[] }[] | string, pattern: RegExp) => {
    const file = path.join(tmp, name);
    if (typeof tensors === "string") writeFileSync(file, tensors);
    else
      await writeSafetensors(
        file,
        tensors.map((t) => f32(t.name, t.shape, new Float32Array(t.shape.reduce((a, d) => a * d, 1)))),
      );
    await assert.rejects(conditioning(pipe, "<s0>", "", file), (err: Error) => {
      assert.ok(err.message.includes(name), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };

  test("vectors of the wrong width (SDXL base's on the tiny model)", async () => {
    await rejects(
      "wide.pti",
      [
        { name: "text_encoders_0", shape: [2, 768] },
        { name: "text_encoders_1", shape: [2, 1280] },
      ],
      /text_encoders_0 holds vectors 768 wide.*CLIP ViT-L text encoder takes 16/,
    );
  });
  test("one encoder's vectors only", async () => {
    await rejects("half.pti", [{ name: "text_encoders_0", shape: [2, WIDTH_L] }], /no text_encoders_1/);
  });
  test("counts that do not pair up", async () => {
    await rejects(
      "unpaired.pti",
      [
        { name: "text_encoders_0", shape: [2, WIDTH_L] },
        { name: "text_encoders_1", shape: [3, WIDTH_G] },
      ],
      /2 text_encoders_0 vectors but 3/,
    );
  });
  test("not a safetensors file", async () => {
    await rejects("junk.pti", "not a safetensors file at all", /not a readable safetensors file/);
  });
  test("a pipeline loaded without requestEmbeddings refuses them", async () => {
    await assert.rejects(conditioning(byHand, "<s0>", "", pti), RequestError);
  });
});
