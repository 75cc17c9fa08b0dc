import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { BPE_CACHE_BYTES, ClipTokenizer, MAX_BPE_WORD } from "../../src/engine/tokenizer/clip.js";
import { FIXTURE_MODELS, GOLDEN, modelDir, readJson } from "../helpers/fixtures.js";

interface TokenizerCase {
  prompt: string;
  input_ids: number[];
  attention_mask: number[];
  untruncated_ids: number[];
  untruncated_length: number;
  tokens: string[];
}

interface TokenizerReference {
  pad_token: string;
  pad_token_id: number;
  cases: TokenizerCase[];
}

const tokenizerDir = (model: (typeof FIXTURE_MODELS)[number]) => path.join(modelDir(model), "tokenizer");

const scratchDirs: string[] = [];
after(async () => {
  await Promise.all(scratchDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A tokenizer folder with tiny-sd1's vocab and merges and the given config files. */
async function folderWith(files: Record<string, unknown>, copy = ["vocab.json", "merges.txt"]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "sdserve-tokenizer-"));
  scratchDirs.push(dir);
  for (const name of copy) await copyFile(path.join(tokenizerDir("tiny-sd1"), name), path.join(dir, name));
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), JSON.stringify(content));
  return dir;
}

for (const model of FIXTURE_MODELS) {
  describe(`ClipTokenizer on ${model}`, async () => {
    const reference = readJson<TokenizerReference>(path.join(GOLDEN, model, "tokenizer_ids.json"));
    const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir(model));

    test("special token ids and length come from the folder", () => {
      assert.equal(tokenizer.modelMaxLength, 77);
      assert.equal(tokenizer.bosTokenId, 49406);
      assert.equal(tokenizer.eosTokenId, 49407);
      assert.equal(tokenizer.padTokenId, reference.pad_token_id);
    });

    assert.equal(reference.cases.length, 40);
    for (const c of reference.cases) {
      test(`matches transformers on ${JSON.stringify(c.prompt).slice(0, 60)}`, () => {
        const padded = tokenizer.encode(c.prompt);
        assert.deepEqual(padded.inputIds, c.input_ids);
        assert.deepEqual(padded.attentionMask, c.attention_mask);
        const untruncated = tokenizer.encode(c.prompt, { padding: false, truncation: false });
        assert.deepEqual(untruncated.inputIds, c.untruncated_ids);
        assert.equal(untruncated.inputIds.length, c.untruncated_length);
        assert.deepEqual(
          untruncated.attentionMask,
          c.untruncated_ids.map(() => 1),
        );
        assert.deepEqual(["<|startoftext|>", ...tokenizer.tokenize(c.prompt), "<|endoftext|>"], c.tokens);
      });
    }
  });
}

describe("ClipTokenizer options", async () => {
  const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
  const long = Array.from({ length: 100 }, () => "word").join(" ");

  test("truncation keeps bos, the first maxLength - 2 tokens and eos", () => {
    const { inputIds, attentionMask } = tokenizer.encode(long, { maxLength: 10 });
    const word = tokenizer.encode("word", { padding: false }).inputIds[1];
    assert.deepEqual(inputIds, [49406, ...Array(8).fill(word), 49407]);
    assert.deepEqual(attentionMask, Array(10).fill(1));
  });

  test("padding off gives only the real tokens; truncation off keeps them all", () => {
    assert.deepEqual(
      tokenizer.encode("a photo of a cat", { padding: false }).inputIds,
      [49406, 320, 1125, 539, 320, 2368, 49407],
    );
    assert.equal(tokenizer.encode(long, { truncation: false }).inputIds.length, 102);
  });

  test("the attention mask follows positions, not ids, when pad and eos are the same token", () => {
    const { inputIds, attentionMask } = tokenizer.encode("", { maxLength: 5 });
    assert.deepEqual(inputIds, [49406, 49407, 49407, 49407, 49407]);
    assert.deepEqual(attentionMask, [1, 1, 0, 0, 0]);
  });

  test("a max length below bos + eos is refused", () => {
    assert.throws(() => tokenizer.encode("x", { maxLength: 1 }), RangeError);
  });

  test("special-token text hidden by cleanup still maps to the special token", () => {
    // Zero-width space is dropped and upper case lowered before CLIP's pattern sees the text.
    assert.deepEqual(tokenizer.tokenize("x<|END\u200BOFTEXT|>y"), ["x</w>", "<|endoftext|>", "y</w>"]);
  });

  test("Python `regex` IGNORECASE quirks: a lone U+0345 vanishes, long s counts as s", () => {
    assert.deepEqual(tokenizer.tokenize("a\u0345b"), ["a</w>", "b</w>"]);
    // "'ſ" is one contraction match (then BPE'd), not an apostrophe followed by a letter run.
    assert.deepEqual(tokenizer.tokenize("'\u017f"), ["'", "Å", "¿</w>"]);
  });
});

describe("ClipTokenizer pad token rules", () => {
  const sd2Config = {
    bos_token: "<|startoftext|>",
    eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    pad_token: "<|endoftext|>",
    model_max_length: 77,
  };

  test("special_tokens_map.json wins over tokenizer_config.json (SD 2.x)", async () => {
    const dir = await folderWith({
      "tokenizer_config.json": sd2Config,
      "special_tokens_map.json": { pad_token: "!" },
    });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.equal(tokenizer.padTokenId, 0);
    // Being a special token, the pad token is cut out of the text wherever it appears.
    assert.deepEqual(tokenizer.tokenize("wow!!"), ["wow</w>", "!", "!"]);
    assert.deepEqual(tokenizer.encode("hi!", { maxLength: 6 }).inputIds, [49406, 1883, 0, 49407, 0, 0]);
  });

  test("without special_tokens_map.json the config's pad token is used", async () => {
    const dir = await folderWith({ "tokenizer_config.json": { ...sd2Config, pad_token: "!" } });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.equal(tokenizer.padTokenId, 0);
  });

  test("with no config files CLIP's defaults apply", async () => {
    const tokenizer = await ClipTokenizer.fromFolder(await folderWith({}));
    assert.equal(tokenizer.padTokenId, 49407);
    assert.equal(tokenizer.modelMaxLength, 77);
    assert.deepEqual(tokenizer.tokenize("hi!"), ["hi</w>", "!</w>"]);
  });

  test("added_tokens_decoder entries are split out with their ids and whitespace rules", async () => {
    const dir = await folderWith({
      "tokenizer_config.json": {
        ...sd2Config,
        added_tokens_decoder: {
          "49408": { content: "<sks>", lstrip: true, rstrip: true, single_word: false, special: true },
        },
      },
    });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.deepEqual(tokenizer.tokenize("a <sks> dog"), ["a</w>", "<sks>", "dog</w>"]);
    assert.deepEqual(tokenizer.encode("a<sks>dog", { padding: false }).inputIds, [49406, 320, 49408, 1929, 49407]);
  });

  test("a single_word added token inside a word stays text", async () => {
    const dir = await folderWith({
      "tokenizer_config.json": {
        ...sd2Config,
        added_tokens_decoder: { "49408": { content: "<sks>", single_word: true, special: true } },
      },
    });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.deepEqual(tokenizer.tokenize("x <sks>"), ["x</w>", "<sks>"]);
    assert.deepEqual(tokenizer.tokenize("<sks>dog"), ["<</w>", "sks</w>", "></w>", "dog</w>"]);
  });

  test("with added_tokens_decoder in the config, transformers ignores special_tokens_map.json", async () => {
    const dir = await folderWith({
      "tokenizer_config.json": {
        ...sd2Config,
        added_tokens_decoder: { "49407": { content: "<|endoftext|>", special: true } },
      },
      "special_tokens_map.json": { pad_token: "!" },
    });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.equal(tokenizer.padTokenId, 49407);
  });

  test("a special token missing from the vocabulary gets the next free id", async () => {
    const dir = await folderWith({ "tokenizer_config.json": { ...sd2Config, pad_token: "<pad>" } });
    const tokenizer = await ClipTokenizer.fromFolder(dir);
    assert.equal(tokenizer.padTokenId, 49408);
    assert.deepEqual(tokenizer.tokenize("x<pad>"), ["x</w>", "<pad>"]);
  });
});

describe("ClipTokenizer errors", () => {
  for (const missing of ["vocab.json", "merges.txt"]) {
    test(`a missing ${missing} is a ModelError naming the file`, async () => {
      const dir = await folderWith(
        {},
        ["vocab.json", "merges.txt"].filter((f) => f !== missing),
      );
      await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
        assert.ok(err instanceof ModelError);
        assert.equal(err.file, path.join(dir, missing));
        assert.match(err.message, new RegExp(missing.replace(".", "\\.")));
        return true;
      });
    });
  }

  test("a malformed tokenizer_config.json is a ModelError naming the file", async () => {
    const dir = await folderWith({});
    await writeFile(path.join(dir, "tokenizer_config.json"), "{ not json");
    await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.equal(err.file, path.join(dir, "tokenizer_config.json"));
      return true;
    });
  });
});

describe("ClipTokenizer on hostile prompts", async () => {
  /** Deterministic pseudo-random lower-case words (no two alike in practice). */
  function words(count: number, length: number, seed: number): string[] {
    let x = seed;
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      let w = "";
      for (let j = 0; j < length; j++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        w += String.fromCharCode(97 + (x % 26));
      }
      out.push(w);
    }
    return out;
  }
  /** Most bytes BPE_CACHE_BYTES' accounting gives one cached piece of MAX_BPE_WORD symbols. */
  const pieceBytes = 96 + 2 * (MAX_BPE_WORD + 1) + (MAX_BPE_WORD + 1) * (16 + 2 * 4);

  test("truncation's budget stops tokenizing: the ids are the first 75 tokens, and later words are never merged", async () => {
    const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
    const text = words(5000, 8, 1).join(" ");
    const all = tokenizer.tokenize(text);
    const fresh = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
    const { inputIds } = fresh.encode(text);
    const untruncated = tokenizer.encode(text, { truncation: false, padding: false }).inputIds;
    assert.deepEqual(inputIds, [...untruncated.slice(0, 76), tokenizer.eosTokenId]);
    assert.deepEqual(fresh.tokenize(text, 75), all.slice(0, 75));
    // Only the words that fed the 75 tokens went through BPE (the cache holds them alone).
    assert.ok(fresh.bpeCacheBytes < 80 * (96 + 2 * 16 + 8 * 24), `${fresh.bpeCacheBytes} bytes cached`);
  });

  test("a 64k-letter word is merged in pieces, only as far as the budget", async () => {
    const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
    const [word] = words(1, 65_536, 2) as [string];
    const { inputIds } = tokenizer.encode(word);
    assert.equal(inputIds.length, 77);
    assert.ok(!inputIds.includes(tokenizer.padTokenId) || tokenizer.padTokenId === tokenizer.eosTokenId);
    // A piece or two of MAX_BPE_WORD symbols, not the whole word.
    assert.ok(tokenizer.bpeCacheBytes <= 2 * pieceBytes, `${tokenizer.bpeCacheBytes} bytes cached`);
    // Untruncated, the pieces cover the word: every letter is in some token, one </w> at the end.
    const tokens = tokenizer.tokenize(word);
    assert.equal(tokens.join("").replace("</w>", ""), word);
    assert.equal(tokens.filter((t) => t.endsWith("</w>")).length, 1);
  });

  test("the BPE cache is bounded in bytes, however long and many the words", async () => {
    const tokenizer = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
    for (const word of words(800, MAX_BPE_WORD, 3)) tokenizer.tokenize(word);
    assert.ok(tokenizer.bpeCacheBytes <= BPE_CACHE_BYTES, `${tokenizer.bpeCacheBytes} bytes cached`);
    assert.ok(tokenizer.bpeCacheBytes > BPE_CACHE_BYTES - pieceBytes, "the cache is used up to its budget");
    // Evicted words come back the same.
    const [first] = words(1, MAX_BPE_WORD, 3) as [string];
    const fresh = await ClipTokenizer.fromFolder(tokenizerDir("tiny-sd1"));
    assert.deepEqual(tokenizer.tokenize(first), fresh.tokenize(first));
  });
});
