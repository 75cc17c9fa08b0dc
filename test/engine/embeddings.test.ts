/**
 * Textual-inversion embeddings: an embedding's vectors reach the text encoder exactly where its
 * name stands in the prompt. Checked against the encoder run on the same vectors placed by hand:
 * a copy of tiny-sd1 whose token table holds the vectors in the rows of two ordinary tokens,
 * prompted with those tokens, must give the same hidden states and the same images.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { ClipTokenizer } from "../../src/engine/tokenizer/clip.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbsDiff, modelDir } from "../helpers/fixtures.js";
import { copyModel, type ModelCopy } from "../helpers/model-copy.js";

const WIDTH = 32; // tiny-sd1's text hidden size
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-embeddings-"));
const embDir = path.join(tmp, "embeddings");
const opened: Pipeline[] = [];
let handPlaced: ModelCopy;
after(async () => {
  for (const p of opened) await p.release();
  handPlaced?.remove();
  rmSync(tmp, { recursive: true, force: true });
});

const f32 = (name: string, shape: number[], data: Float32Array) => ({ name, dtype: "F32" as const, shape, data });
/** Two vectors, deterministic and unlike any token's. */
const vectors = Float32Array.from({ length: 2 * WIDTH }, (_, i) => Math.cos(i * 1.3) * 0.05);

describe("textual inversion on tiny-sd1", () => {
  let withEmb: Pipeline;
  let byHand: Pipeline;
  before(async () => {
    const { mkdir } = await import("node:fs/promises");
    await mkdir(embDir);
    await writeSafetensors(path.join(embDir, "oldstyle.safetensors"), [f32("emb_params", [2, WIDTH], vectors)]);
    await writeSafetensors(path.join(embDir, "learned.safetensors"), [
      f32("<shiny-thing>", [WIDTH], vectors.subarray(WIDTH)),
    ]);

    // The same vectors written by hand into the token table, in the rows of "zebra" and "kite".
    const tokenizer = await ClipTokenizer.fromFolder(path.join(modelDir("tiny-sd1"), "tokenizer"));
    const [zebra, kite] = tokenizer.encode("zebra kite", { padding: false }).inputIds.slice(1, -1) as [number, number];
    handPlaced = copyModel("tiny-sd1");
    const file = path.join(handPlaced.dir, "text_encoder", "model.safetensors");
    const st = await readSafetensors(file);
    const tensors = [];
    for (const t of st.tensors.values()) {
      const data = await readTensor(t);
      if (t.name === "text_model.embeddings.token_embedding.weight") {
        data.set(vectors.subarray(0, WIDTH), zebra * WIDTH);
        data.set(vectors.subarray(WIDTH), kite * WIDTH);
      }
      tensors.push(f32(t.name, t.shape, data));
    }
    await writeSafetensors(file, tensors);

    withEmb = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, embeddings: [embDir] });
    byHand = await loadPipeline(handPlaced.dir, { threads: 1 });
    opened.push(withEmb, byHand);
  });

  const same = async (prompts: string[], handPrompts: string[]) => {
    const a = await withEmb.encodePrompts(prompts);
    const b = await byHand.encodePrompts(handPrompts);
    assert.equal(maxAbsDiff(a.data, b.data), 0);
  };

  test("an A1111 embedding's two vectors stand where its name does", () =>
    same(["a photo of oldstyle, at night", "oldstyle"], ["a photo of zebra kite, at night", "zebra kite"]));

  test("a diffusers embedding is called by its file name and by its token", () =>
    same(["learned portrait", "a <shiny-thing> portrait"], ["kite portrait", "a kite portrait"]));

  test("cut at 77 tokens as the tokens placed by hand are", async () => {
    const filler = Array.from({ length: 74 }, () => "red").join(" ");
    await same([`${filler} oldstyle`], [`${filler} zebra kite`]);
  });

  test("a prompt naming an embedding thousands of times places only what fits before the cut", async () => {
    const { EmbeddingPlacer, loadEmbeddings } = await import("../../src/engine/embeddings.js");
    const tokenizer = await ClipTokenizer.fromFolder(path.join(modelDir("tiny-sd1"), "tokenizer"));
    const placer = new EmbeddingPlacer(tokenizer, await loadEmbeddings([embDir], WIDTH), 49408, WIDTH);
    const { ids, rows } = placer.encode([Array.from({ length: 5000 }, () => "oldstyle").join(" ")]);
    assert.equal(ids[0]?.length, 77);
    assert.ok(rows <= 76, `${rows} rows`);
    await same(
      [Array.from({ length: 50 }, () => "oldstyle").join(" ")],
      [Array.from({ length: 50 }, () => "zebra kite").join(" ")],
    );
  });

  test("a prompt without embeddings is unchanged", async () => {
    const plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 1 });
    opened.push(plain);
    const a = await withEmb.encodePrompts(["a red cube"]);
    const b = await plain.encodePrompts(["a red cube"]);
    assert.equal(maxAbsDiff(a.data, b.data), 0);
  });

  test("in the negative prompt too: the same image as the vectors placed by hand", async () => {
    const req = { prompt: "a castle", numInferenceSteps: 3, seed: 5, width: 64, height: 64 };
    const a = await withEmb.generate({ ...req, negativePrompt: "oldstyle, blurry" });
    const b = await byHand.generate({ ...req, negativePrompt: "zebra kite, blurry" });
    assert.equal(maxAbsDiff(a.latents.data, b.latents.data), 0);
  });
});

describe("bad embedding files", () => {
  const rejects = async (file: string, pattern: RegExp) => {
    await assert.rejects(loadPipeline(modelDir("tiny-sd1"), { threads: 1, embeddings: [file] }), (err: Error) => {
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

  test("vectors of the wrong width", async () => {
    await rejects(await write("wide.safetensors", [{ name: "emb_params", shape: [1, 768] }]), /768 wide.*takes 32/);
  });
  test("an SDXL embedding", async () => {
    await rejects(
      await write("xl.safetensors", [
        { name: "clip_l", shape: [1, 768] },
        { name: "clip_g", shape: [1, 1280] },
      ]),
      /SDXL/,
    );
  });
  test("a file of several unknown tensors", async () => {
    await rejects(
      await write("many.safetensors", [
        { name: "a", shape: [1, 32] },
        { name: "b", shape: [1, 32] },
      ]),
      /not a textual-inversion embedding/,
    );
  });
  test("too many vectors", async () => {
    await rejects(await write("long.safetensors", [{ name: "emb_params", shape: [76, 32] }]), /vectors \(1–75\)/);
  });
  test("a pickle", async () => {
    const file = path.join(tmp, "old.pt");
    await import("node:fs/promises").then((fs) => fs.writeFile(file, Buffer.from([0x80, 0x02])));
    await rejects(file, /pickle/);
  });
  test("two embeddings under one name", async () => {
    const dir = path.join(tmp, "dupes");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dir);
    await writeSafetensors(path.join(dir, "a.safetensors"), [f32("<b>", [WIDTH], new Float32Array(WIDTH))]);
    await writeSafetensors(path.join(dir, "<b>.safetensors"), [f32("emb_params", [1, WIDTH], new Float32Array(WIDTH))]);
    await rejects(path.join(dir), /also the name of/);
  });
});
