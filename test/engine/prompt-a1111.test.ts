/**
 * AUTOMATIC1111's prompt syntax: the parser against A1111's documented cases (rewritten here as
 * our own data), the chunker on a toy tokenizer, and the encoder output on tiny-sd1: emphasis is
 * the plain encoding scaled per token with its mean restored, long prompts and BREAK are plain
 * encodings of 75-token pieces joined along the sequence, clip skip N is a text encoder N − 1
 * layers shorter.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { findLora, listLoraFiles } from "../../src/engine/lora-dir.js";
import type { TensorF32 } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import {
  applyEmphasis,
  type ChunkTokenizer,
  MAX_A1111_PROMPT_CHARS,
  MAX_BRACKETS,
  MAX_CHUNKS,
  type PromptPiece,
  parseA1111Prompt,
  parsePromptAttention,
  promptChunks,
} from "../../src/engine/prompt-a1111.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, maxAbsDiff, modelDir } from "../helpers/fixtures.js";
import { copyModel, type ModelCopy } from "../helpers/model-copy.js";

const pieces = (...p: [string, number][]): PromptPiece[] => p.map(([text, weight]) => ({ text, weight }));
const close = (got: PromptPiece[], want: (PromptPiece | [string, number])[]) => {
  assert.equal(got.length, want.length, JSON.stringify(got));
  want.forEach((w, i) => {
    const g = got[i] as PromptPiece;
    if (!Array.isArray(w)) {
      assert.deepEqual(g, w);
      return;
    }
    assert.ok(!("break" in g), JSON.stringify(g));
    assert.equal(g.text, w[0]);
    assert.ok(Math.abs(g.weight - w[1]) < 1e-12, `${g.text}: ${g.weight} vs ${w[1]}`);
  });
};

describe("parsePromptAttention (A1111's documented cases)", () => {
  test("plain text is one piece of weight 1", () => {
    assert.deepEqual(parsePromptAttention("just some words"), pieces(["just some words", 1]));
  });
  test("(x) is ×1.1 and the text around it stays 1", () => {
    close(parsePromptAttention("a (big) dog"), [
      ["a ", 1],
      ["big", 1.1],
      [" dog", 1],
    ]);
  });
  test("an unclosed bracket applies to the rest", () => {
    close(parsePromptAttention("(open ended"), [["open ended", 1.1]]);
    close(parsePromptAttention("x [open"), [
      ["x ", 1],
      ["open", 1 / 1.1],
    ]);
  });
  test("escapes are literal brackets", () => {
    close(parsePromptAttention("\\(kept\\] and \\[ \\) \\\\"), [["(kept] and [ ) \\", 1]]);
  });
  test("adjacent pieces of equal weight merge", () => {
    close(parsePromptAttention("(first)(second)"), [["firstsecond", 1.1]]);
  });
  test("nesting, explicit weights and square brackets combine by multiplication", () => {
    close(parsePromptAttention("a (((tree:1.3)) [by] a (lake:0.5), moon, (((stars))))."), [
      ["a ", 1],
      ["tree", 1.3 * 1.1 * 1.1],
      [" ", 1.1],
      ["by", 1],
      [" a ", 1.1],
      ["lake", 0.55],
      [", moon, ", 1.1],
      ["stars", 1.1 ** 4],
      [".", 1],
    ]);
  });
  test("the doc's own nesting example: one more ( left open", () => {
    close(parsePromptAttention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."), [
      ["a ", 1],
      ["house", 1.5730000000000004],
      [" ", 1.1],
      ["on", 1],
      [" a ", 1.1],
      ["hill", 0.55],
      [", sun, ", 1.1],
      ["sky", 1.4641000000000006],
      [".", 1.1],
    ]);
  });
  test("BREAK splits, also inside brackets, and eats the spaces around it", () => {
    close(parsePromptAttention("cat BREAK dog"), [["cat", 1], { break: true }, ["dog", 1]]);
    close(parsePromptAttention("(cat BREAK dog)"), [["cat", 1.1], { break: true }, ["dog", 1.1]]);
    // Not a word of its own, or not upper case: text.
    close(parsePromptAttention("BREAKFAST break"), [["BREAKFAST break", 1]]);
  });
  test("weights: negative, zero, and malformed ones", () => {
    close(parsePromptAttention("(a:-1)(b:0)"), [
      ["a", -1],
      ["b", 0],
    ]);
    // ":1.2.3)" is not a number: the brackets and text stay as written, the "(" still open.
    close(parsePromptAttention("(a:1.2.3)"), [["a:1.2.3)", 1.1]]);
    close(parsePromptAttention("a: b"), [["a: b", 1]]);
    close(parsePromptAttention("stray ) and ]"), [["stray ) and ]", 1]]);
  });
  test("an empty prompt is one empty piece", () => {
    assert.deepEqual(parsePromptAttention(""), pieces(["", 1]));
  });
});

describe("parseA1111Prompt: <lora:…> tags", () => {
  test("tags come out of the text with their scales (default 1)", () => {
    const p = parseA1111Prompt("a cat <lora:pixel_art:0.7>, (ears) <lora:Other Style>");
    assert.deepEqual(p.loras, [
      { name: "pixel_art", scale: 0.7 },
      { name: "Other Style", scale: 1 },
    ]);
    close(p.pieces, [
      ["a cat , ", 1],
      ["ears", 1.1],
      [" ", 1],
    ]);
  });
  test("malformed or unsupported tags are request errors", () => {
    for (const bad of [
      "<lora:x:abc>",
      "<lora: :1>",
      "<lora:x:>",
      "<lora:x:1:0.5>",
      "<hypernet:x:1>",
      "<lora:x:Infinity>".replace("Infinity", "1e999"),
    ]) {
      assert.throws(() => parseA1111Prompt(bad), RequestError, bad);
    }
    assert.throws(() => parseA1111Prompt("<lora:x>".repeat(17)), /more than 16/);
  });
  test("hostile input: huge and deeply nested prompts finish or are refused", () => {
    assert.throws(() => parseA1111Prompt("a".repeat(MAX_A1111_PROMPT_CHARS + 1)), RequestError);
    const n = MAX_BRACKETS;
    const nested = `${"(".repeat(n)}${"a)".repeat(n)}`;
    const p = parseA1111Prompt(nested);
    assert.equal(p.pieces.length, n);
    // The first "a" sits in all n brackets: 1.1^n, too strong to encode.
    assert.ok((p.pieces[0] as { weight: number }).weight > 1e40);
    assert.throws(() => promptChunks(p.pieces, toy), /emphasis/);
    assert.throws(() => promptChunks(parsePromptAttention("(a:5000)"), toy), /emphasis/);
    assert.throws(() => parseA1111Prompt("[".repeat(MAX_BRACKETS + 1)), /more than 1000 opening brackets/);
    assert.throws(() => parseA1111Prompt("(a:1".repeat(MAX_BRACKETS + 1)), RequestError);
    assert.equal(parseA1111Prompt("(a:1".repeat(MAX_BRACKETS)).pieces.length, MAX_BRACKETS);
    assert.equal(parseA1111Prompt("<".repeat(5000) + ">".repeat(5000)).loras.length, 0);
    // Unclosed tags: text, read without rescanning the rest of the prompt for each.
    assert.equal(parseA1111Prompt("<a:".repeat(6000)).loras.length, 0);
    assert.deepEqual(parseA1111Prompt("<lora:<lora:x:0.5>").loras, [{ name: "x", scale: 0.5 }]);
  });
});

/** A toy tokenizer: one token per character, "," is 9, BOS 1, EOS 2, pad 0. */
const toy: ChunkTokenizer = {
  bos: 1,
  eos: 2,
  pad: 0,
  comma: 9,
  ids: (text, limit) => [...text].slice(0, limit).map((c) => (c === "," ? 9 : 100 + c.charCodeAt(0))),
};
const content = (ids: number[]) => ids.filter((id) => id !== 0 && id !== 1 && id !== 2);

describe("promptChunks", () => {
  test("every chunk is BOS + 75 + EOS, padded, with weight 1 outside the text", () => {
    const chunks = promptChunks(pieces(["ab", 1], ["c", 1.5]), toy);
    assert.equal(chunks.length, 1);
    const [c] = chunks as [{ ids: number[]; weights: number[] }];
    assert.equal(c.ids.length, 77);
    assert.deepEqual(c.ids.slice(0, 5), [1, 197, 198, 199, 2]);
    assert.deepEqual(c.weights.slice(0, 5), [1, 1, 1, 1.5, 1]);
    assert.ok(c.ids.slice(5).every((id) => id === 0));
  });
  test("150 tokens make two full chunks; 151 three", () => {
    assert.equal(promptChunks(pieces(["x".repeat(150), 1]), toy).length, 2);
    const three = promptChunks(pieces(["x".repeat(151), 1]), toy);
    assert.equal(three.length, 3);
    assert.deepEqual(content((three[2] as { ids: number[] }).ids).length, 1);
  });
  test("BREAK closes the chunk, even an empty one", () => {
    const chunks = promptChunks([{ break: true }, ...pieces(["a", 1]), { break: true }, ...pieces(["b", 1])], toy);
    assert.equal(chunks.length, 3);
    assert.deepEqual(
      chunks.map((c) => content(c.ids)),
      [[], [197], [198]],
    );
  });
  test("a chunk ending within 20 tokens after a comma moves the rest to the next chunk", () => {
    const text = `${"a".repeat(60)},${"b".repeat(30)}`;
    const [first, second] = promptChunks(pieces([text, 1]), toy) as unknown as [{ ids: number[] }, { ids: number[] }];
    assert.equal(content(first.ids).length, 61);
    assert.equal(content(first.ids).at(-1), 9);
    assert.equal(content(second.ids).length, 30);
    // A comma further back than 20 tokens does not move anything.
    const far = promptChunks(pieces([`${"a".repeat(40)},${"b".repeat(60)}`, 1]), toy);
    assert.equal(content((far[0] as { ids: number[] }).ids).length, 75);
  });
  test("an embedding is not split across chunks", () => {
    const tok: ChunkTokenizer = {
      ...toy,
      embeddingAt: (tokens, at) =>
        tokens[at] === 100 + "E".charCodeAt(0) ? { length: 1, vectors: () => [5000, 5001, 5002] } : undefined,
    };
    const chunks = promptChunks(pieces([`${"a".repeat(74)}E`, 2]), tok);
    assert.equal(chunks.length, 2);
    assert.equal(content((chunks[0] as { ids: number[] }).ids).length, 74);
    assert.deepEqual((chunks[1] as { ids: number[] }).ids.slice(0, 5), [1, 5000, 5001, 5002, 2]);
    assert.deepEqual((chunks[1] as { weights: number[] }).weights.slice(0, 5), [1, 2, 2, 2, 1]);
  });
  test("more than 20 chunks is a request error, however it is reached", () => {
    assert.throws(() => promptChunks(pieces(["x".repeat(MAX_CHUNKS * 75 + 1), 1]), toy), RequestError);
    const breaks = Array.from({ length: MAX_CHUNKS + 1 }, () => ({ break: true }) as const);
    assert.throws(() => promptChunks(breaks, toy), RequestError);
  });
});

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-a1111-"));
const opened: Pipeline[] = [];
let shorter: ModelCopy | undefined;
after(async () => {
  for (const p of opened) await p.release();
  shorter?.remove();
  rmSync(tmp, { recursive: true, force: true });
});

const WIDTH = 32;
const LEN = 77;
/** Item `b`, tokens [from, to) of an encoding [B, L, W]. */
const rowsOf = (t: TensorF32, b: number, from = 0, to = t.shape[1] as number) => {
  const L = t.shape[1] as number;
  return t.data.subarray((b * L + from) * WIDTH, (b * L + to) * WIDTH);
};
const join = (...parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe("A1111 encoding on tiny-sd1", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1 });
    opened.push(pipe);
  });
  const a1111 = (prompts: string[], clipSkip?: number) =>
    pipe.encodePrompts(prompts, [], { promptSyntax: "a1111", clipSkip });
  const plain = (prompts: string[], clipSkip?: number) => pipe.encodePrompts(prompts, [], { clipSkip });

  test("without emphasis a short prompt encodes as diffusers does", async () => {
    const a = await a1111(["a photo of a cat", ""]);
    const b = await plain(["a photo of a cat", ""]);
    assert.deepEqual(a.shape, [2, LEN, WIDTH]);
    assert.equal(maxAbsDiff(a.data, b.data), 0);
  });

  test("(cat:1.3) is the plain encoding with cat's vector ×1.3, then the mean restored", async () => {
    const got = await a1111(["a photo of a (cat:1.3)"]);
    const base = Float32Array.from((await plain(["a photo of a cat"])).data);
    const ids = pipe.tokenizer.encode("a photo of a cat").inputIds;
    const catAt = ids.indexOf(pipe.tokenizer.encode("cat", { padding: false }).inputIds[1] as number);
    assert.equal(catAt, 5);
    // Independently: scale in float64, restore the mean, compare.
    let before = 0;
    for (const v of base) before += v;
    const want = Array.from(base, (v, i) => (Math.floor(i / WIDTH) === catAt ? v * 1.3 : v));
    const after = want.reduce((a, v) => a + v, 0);
    const restored = want.map((v) => (v * before) / after);
    const diff = Math.max(...restored.map((v, i) => Math.abs(v - (got.data[i] as number))));
    // Float32 rounding of each product and of the ratio, on values of magnitude ~3.
    assert.ok(diff < 2e-6, `max difference ${diff}`);
    assert.ok(maxAbsDiff(got.data, base) > 1e-3, "emphasis changed nothing");
  });

  test("applyEmphasis leaves all-ones weights untouched and keeps the mean", () => {
    const z = Float32Array.from({ length: 4 * 3 }, (_, i) => Math.sin(i) + 0.5);
    const copy = Float32Array.from(z);
    applyEmphasis(z, [1, 1, 1, 1], 3);
    assert.deepEqual(z, copy);
    applyEmphasis(z, [1, 2, 0.5, 1], 3);
    const mean = (x: Float32Array) => x.reduce((a, v) => a + v, 0) / x.length;
    assert.ok(Math.abs(mean(z) - mean(copy)) < 1e-6);
  });

  // 150 words of one token each: 75 + 75, no commas, so no backtracking.
  const words = "red green blue cat dog bird tree house road hill".split(" ");
  const text = (n: number, from = 0) => Array.from({ length: n }, (_, i) => words[(from + i) % words.length]).join(" ");

  test("a 150-token prompt is two 75-token encodings joined; the negative is padded with an empty chunk", async () => {
    assert.equal(pipe.tokenizer.encode(text(150), { padding: false, truncation: false }).inputIds.length, 152);
    const got = await a1111(["", text(150)]);
    assert.deepEqual(got.shape, [2, 2 * LEN, WIDTH]);
    const first = await plain([text(75)]);
    const second = await plain([text(75, 75)]);
    const empty = await plain([""]);
    assert.equal(maxAbsDiff(rowsOf(got, 1), join(first.data, second.data)), 0);
    assert.equal(maxAbsDiff(rowsOf(got, 0), join(empty.data, empty.data)), 0);
  });

  test("BREAK starts a new chunk", async () => {
    const got = await a1111(["a cat BREAK on a hill"]);
    const want = join((await plain(["a cat"])).data, (await plain(["on a hill"])).data);
    assert.equal(maxAbsDiff(got.data, want), 0);
  });

  test("clip skip 2 equals the same text encoder one layer shorter", async () => {
    shorter = copyModel("tiny-sd1");
    shorter.patchConfig("text_encoder", { num_hidden_layers: 4 });
    const short = await loadPipeline(shorter.dir, { threads: 1 });
    opened.push(short);
    const prompts = ["a photo of a cat", ""];
    const want = await short.encodePrompts(prompts);
    const got = await plain(prompts, 2);
    const diff = maxAbsDiff(got.data, want.data);
    assert.ok(diff < 1e-5, `max difference ${diff}`);
    assert.ok(maxAbsDiff(got.data, (await plain(prompts)).data) > 1e-3);
    // And with the A1111 syntax, chunk by chunk.
    const long = await a1111([text(100)], 2);
    const ref = join((await short.encodePrompts([text(75)])).data, (await short.encodePrompts([text(25, 75)])).data);
    assert.ok(maxAbsDiff(long.data, ref) < 1e-5);
  });

  test("clip skip 4 equals the same text encoder three layers shorter", async () => {
    const copy = copyModel("tiny-sd1");
    try {
      copy.patchConfig("text_encoder", { num_hidden_layers: 2 });
      const short = await loadPipeline(copy.dir, { threads: 1 });
      opened.push(short);
      const prompts = ["a photo of a cat", ""];
      const diff = maxAbsDiff((await plain(prompts, 4)).data, (await short.encodePrompts(prompts)).data);
      assert.ok(diff < 1e-5, `max difference ${diff}`);
    } finally {
      copy.remove();
    }
  });

  test("clip skip and syntax outside their values are request errors", async () => {
    // tiny-sd1 has 5 layers: hidden_states[-6] is the embeddings' output, the deepest there is.
    await plain(["x"], 6);
    await assert.rejects(plain(["x"], 7), /from 1 to 6 for this model/);
    await assert.rejects(plain(["x"], 13), RequestError);
    await assert.rejects(plain(["x"], 1.5), RequestError);
    await assert.rejects(plain(["x"], 0), RequestError);
    await assert.rejects(pipe.encodePrompts(["x"], [], { promptSyntax: "comfy" as never }), RequestError);
  });

  test("a <lora:…> tag without a LoRA folder is a request error", async () => {
    await assert.rejects(
      pipe.generate({ prompt: "cat <lora:x:1>", promptSyntax: "a1111", numInferenceSteps: 1, width: 64, height: 64 }),
      /no LoRA folder/,
    );
  });
});

describe("<lora:NAME:SCALE> tags resolved in a LoRA folder", () => {
  const loraDir = path.join(tmp, "loras");
  let tagged: Pipeline;
  before(async () => {
    mkdirSync(path.join(loraDir, "styles"), { recursive: true });
    symlinkSync(
      path.join(GOLDEN_FAMILY, "lora", "tiny-sd1_lora_kohya.safetensors"),
      path.join(loraDir, "styles", "kohya.safetensors"),
    );
    symlinkSync(
      path.join(GOLDEN_FAMILY, "lora", "tiny-sd1_lora_peft.safetensors"),
      path.join(loraDir, "peft.safetensors"),
    );
    tagged = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraDir, promptSyntax: "a1111" });
    opened.push(tagged);
  });

  test("the folder lists both, by name", async () => {
    assert.deepEqual(
      (await listLoraFiles(loraDir)).map((f) => f.name),
      ["peft", "kohya"],
    );
  });

  test("a tag is the same as asking for that file at that scale", async () => {
    const base = { numInferenceSteps: 2, width: 64, height: 64, seed: 7, scheduler: "DDIM" };
    const byTag = await tagged.generate({ ...base, prompt: "a red cat <lora:kohya:0.5>" });
    const byPath = await tagged.generate({
      ...base,
      prompt: "a red cat ",
      loras: [{ path: path.join(loraDir, "styles", "kohya.safetensors"), scale: 0.5 }],
    });
    const without = await tagged.generate({ ...base, prompt: "a red cat " });
    assert.equal(maxAbsDiff(byTag.latents.data, byPath.latents.data), 0);
    assert.ok(maxAbsDiff(byTag.latents.data, without.latents.data) > 1e-4, "the LoRA changed nothing");
  });

  test("a pipeline that reads plain prompts takes tags from a request that asks for a1111", async () => {
    const plainByDefault = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraDir });
    opened.push(plainByDefault);
    const base = { numInferenceSteps: 2, width: 64, height: 64, seed: 7, scheduler: "DDIM" };
    const byTag = await plainByDefault.generate({
      ...base,
      prompt: "a red cat <lora:kohya:0.5>",
      promptSyntax: "a1111",
    });
    const byPath = await tagged.generate({
      ...base,
      prompt: "a red cat ",
      loras: [{ path: path.join(loraDir, "styles", "kohya.safetensors"), scale: 0.5 }],
    });
    assert.equal(maxAbsDiff(byTag.latents.data, byPath.latents.data), 0);
    // Its own requests read the tag as text.
    const asText = await plainByDefault.generate({ ...base, prompt: "a red cat <lora:kohya:0.5>" });
    assert.ok(maxAbsDiff(asText.latents.data, byTag.latents.data) > 1e-4);
  });

  test("an unknown or path-like name is a request error", async () => {
    for (const name of ["missing", "../loras/peft", "styles/kohya"]) {
      await assert.rejects(
        tagged.generate({ prompt: `x <lora:${name}:1>`, numInferenceSteps: 1, width: 64, height: 64 }),
        /not found/,
      );
    }
  });
});

test("<lora:ALIAS> finds a file by the ss_output_name in its header when no file has that name, as A1111 does", async () => {
  const dir = path.join(tmp, "aliased-loras");
  mkdirSync(path.join(dir, "sub"), { recursive: true });
  const tiny = [{ name: "lora_unet_x.alpha", dtype: "F32" as const, shape: [], data: Float32Array.of(1) }];
  const file = async (rel: string, alias?: string) => {
    await writeSafetensors(path.join(dir, rel), tiny, alias === undefined ? undefined : { ss_output_name: alias });
    return path.join(dir, rel);
  };
  const renamed = await file("sub/more_details_v2.safetensors", "add_detail");
  const named = await file("pixel.safetensors", "retro");
  await file("retro.safetensors");
  await file("twin-a.safetensors", "twin");
  await file("twin-b.safetensors", "twin");
  assert.equal(await findLora(dir, "add_detail"), renamed);
  assert.equal(await findLora(dir, "more_details_v2"), renamed);
  // A file's own name comes first: "retro" is retro.safetensors, not pixel's alias.
  assert.equal(await findLora(dir, "retro"), path.join(dir, "retro.safetensors"));
  assert.equal(await findLora(dir, "pixel"), named);
  await assert.rejects(
    findLora(dir, "twin"),
    (err: Error) => err instanceof RequestError && /ambiguous/.test(err.message),
  );
  await assert.rejects(
    findLora(dir, "nothing"),
    (err: Error) => err instanceof RequestError && /not found/.test(err.message),
  );
});

describe("embeddings under the A1111 syntax", () => {
  let pipe: Pipeline;
  const vectors = Float32Array.from({ length: 2 * WIDTH }, (_, i) => Math.sin(i * 0.7) * 0.05);
  before(async () => {
    const dir = path.join(tmp, "embeddings");
    mkdirSync(dir);
    await writeSafetensors(path.join(dir, "oldstyle.safetensors"), [
      { name: "emb_params", dtype: "F32", shape: [2, WIDTH], data: vectors },
    ]);
    pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, embeddings: [dir] });
    opened.push(pipe);
  });

  test("a name is placed as in plain prompts, and emphasis weighs both of its vectors", async () => {
    const plain = await pipe.encodePrompts(["a photo, oldstyle"]);
    const a = await pipe.encodePrompts(["a photo, oldstyle"], [], { promptSyntax: "a1111" });
    assert.equal(maxAbsDiff(a.data, plain.data), 0);
    // "a photo , v1 v2": the vectors sit at 4 and 5 after BOS.
    const weighted = await pipe.encodePrompts(["a photo, (oldstyle:1.5)"], [], { promptSyntax: "a1111" });
    const base = Float32Array.from(plain.data);
    let before = 0;
    for (const v of base) before += v;
    const scaled = Array.from(base, (v, i) => ([4, 5].includes(Math.floor(i / WIDTH)) ? v * 1.5 : v));
    const after = scaled.reduce((s, v) => s + v, 0);
    const diff = Math.max(...scaled.map((v, i) => Math.abs((v * before) / after - (weighted.data[i] as number))));
    assert.ok(diff < 2e-6, `max difference ${diff}`);
  });
});
