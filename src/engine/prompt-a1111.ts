/**
 * AUTOMATIC1111's prompt syntax, as an option beside diffusers' plain prompts:
 *
 * - emphasis: `(text)` ×1.1, `(text:1.3)` ×1.3, `[text]` ÷1.1, nested multiplicatively; an
 *   unclosed bracket applies to the rest of the prompt; `\(` `\)` `\[` `\]` `\\` are literal;
 * - `BREAK` (upper case, a word of its own) ends the current 75-token chunk;
 * - prompts of any length, in chunks of 75 tokens, each encoded as BOS + 75 + EOS/padding and
 *   the chunks' hidden states concatenated along the sequence;
 * - `<lora:NAME:SCALE>` tags, taken out of the text and returned as LoRA requests.
 *
 * The weights scale the text encoder's hidden states per token, then the chunk's mean is put
 * back (`applyEmphasis`), as A1111's default ("Original") emphasis does. A chunk that would end
 * within 20 tokens after a comma is cut after the comma instead, the rest moving to the next
 * chunk (A1111's comma_padding_backtrack, default 20). Embeddings called by name are never split
 * across two chunks.
 */
import type { EmbeddingPlacer } from "./embeddings.js";
import { RequestError } from "./errors.js";
import type { Feeds } from "./runtime.js";
import type { ClipTokenizer } from "./tokenizer/clip.js";

/** A piece of prompt text and its emphasis, or a BREAK. */
export type PromptPiece = { text: string; weight: number } | { break: true };

export interface LoraTag {
  name: string;
  scale: number;
}

export interface ParsedA1111Prompt {
  /** The text without its `<…:…>` tags, in pieces of equal emphasis. */
  pieces: PromptPiece[];
  loras: LoraTag[];
}

/** Content tokens per chunk (the text encoder's 77 less BOS and EOS). */
export const CHUNK_TOKENS = 75;
/** A chunk ending this close after a comma is cut after the comma. */
const COMMA_BACKTRACK = 20;
/** At most this many chunks per prompt (1,500 tokens): the encoder runs once per chunk. */
export const MAX_CHUNKS = 20;
/**
 * Longer prompts are refused before parsing: bracket handling costs up to (brackets × pieces),
 * which stays small below this.
 */
export const MAX_A1111_PROMPT_CHARS = 20_000;
/**
 * At most this many opening brackets: each one closed (or left open) multiplies every piece after
 * it, a cost of brackets × pieces.
 */
export const MAX_BRACKETS = 1000;
/** Emphasis beyond ±this is refused: the scaled hidden states would leave float32's range. */
const MAX_WEIGHT = 1000;
/** At most this many `<lora:…>` tags per prompt. */
const MAX_LORA_TAGS = 16;

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

// A1111's tokens, one alternative each: escapes, brackets, ":weight)", plain runs, a lone colon.
const ATTENTION = /\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()[\]:]+|:/g;
const BREAK = /\s*\bBREAK\b\s*/;
// Extra-network tags, A1111's `<kind:args>`; all are taken out of the text.
// Arguments stop at "<" as well as ">", so a prompt of unclosed "<a:" is read in one pass.
const EXTRA_NETWORK = /<(\w+):([^<>]+)>/g;

/**
 * The emphasis of each run of text, as A1111's parse_prompt_attention gives it: adjacent runs
 * of the same weight merged, at least one (empty) piece. A BREAK is a marker of its own, also
 * inside brackets (A1111 would then read it as the word "BREAK").
 */
export function parsePromptAttention(text: string): PromptPiece[] {
  const res: PromptPiece[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiply = (from: number, by: number) => {
    for (let p = from; p < res.length; p++) {
      const piece = res[p] as PromptPiece;
      if (!("break" in piece)) piece.weight *= by;
    }
  };
  let opened = 0;
  for (const m of text.matchAll(ATTENTION)) {
    const tok = m[0];
    const weight = m[1];
    if ((tok === "(" || tok === "[") && ++opened > MAX_BRACKETS) {
      throw new RequestError(`prompt has more than ${MAX_BRACKETS} opening brackets`, "prompt");
    }
    if (tok.startsWith("\\")) res.push({ text: tok.slice(1), weight: 1 });
    else if (tok === "(") round.push(res.length);
    else if (tok === "[") square.push(res.length);
    else if (weight !== undefined && round.length > 0) {
      const w = Number(weight);
      // "1.2.3" or "." is no number: Python's float() would raise; the text stays as written.
      if (Number.isFinite(w)) multiply(round.pop() as number, w);
      else res.push({ text: tok, weight: 1 });
    } else if (tok === ")" && round.length > 0) multiply(round.pop() as number, ROUND);
    else if (tok === "]" && square.length > 0) multiply(square.pop() as number, SQUARE);
    else {
      tok.split(BREAK).forEach((part, i) => {
        if (i > 0) res.push({ break: true });
        res.push({ text: part, weight: 1 });
      });
    }
  }
  for (const pos of round) multiply(pos, ROUND);
  for (const pos of square) multiply(pos, SQUARE);
  if (res.length === 0) res.push({ text: "", weight: 1 });
  const merged: PromptPiece[] = [];
  for (const piece of res) {
    const last = merged[merged.length - 1];
    if (last && !("break" in last) && !("break" in piece) && last.weight === piece.weight) last.text += piece.text;
    else merged.push("break" in piece ? piece : { ...piece });
  }
  return merged;
}

/**
 * A prompt in A1111's syntax: `<lora:NAME[:SCALE]>` tags taken out (scale 1 by default), other
 * `<kind:…>` tags refused, then the emphasis parsed. Throws RequestError for a malformed tag.
 */
export function parseA1111Prompt(text: string): ParsedA1111Prompt {
  if (typeof text !== "string") throw new RequestError("prompt must be a string", "prompt");
  if (text.length > MAX_A1111_PROMPT_CHARS) {
    throw new RequestError(`prompt is longer than ${MAX_A1111_PROMPT_CHARS} characters`, "prompt");
  }
  const loras: LoraTag[] = [];
  const stripped = text.replace(EXTRA_NETWORK, (_all, kind: string, args: string) => {
    if (kind !== "lora") {
      throw new RequestError(`<${kind}:…> prompt tags are not supported (only <lora:NAME:SCALE>)`, "prompt");
    }
    const items = args.split(":");
    const name = (items[0] as string).trim();
    if (items.length > 2) {
      throw new RequestError(
        `<lora:${name}:…>: one scale only (separate text-encoder and UNet scales are not supported)`,
        "prompt",
      );
    }
    const scale = items.length === 2 ? Number((items[1] as string).trim()) : 1;
    if (name === "" || !Number.isFinite(scale) || (items[1] ?? "1").trim() === "") {
      throw new RequestError(`<lora:${args}> must be <lora:NAME> or <lora:NAME:SCALE> with a number`, "prompt");
    }
    if (loras.length >= MAX_LORA_TAGS) throw new RequestError(`more than ${MAX_LORA_TAGS} <lora:…> tags`, "prompt");
    loras.push({ name, scale });
    return "";
  });
  return { pieces: parsePromptAttention(stripped), loras };
}

/**
 * Refuses emphasis beyond ±MAX_WEIGHT (the scaled hidden states would leave float32's range), so
 * callers can check a prompt before any encoding (the /sdapi routes: a 422, not a failed run).
 */
export function checkEmphasis(pieces: readonly PromptPiece[], field = "prompt"): void {
  for (const piece of pieces) {
    if (!("break" in piece) && !(Math.abs(piece.weight) <= MAX_WEIGHT)) {
      throw new RequestError(`emphasis ${piece.weight} is out of range (at most ${MAX_WEIGHT} either way)`, field);
    }
  }
}

/** 77 token ids (or embedding rows) with their emphasis weights. */
export interface PromptChunk {
  ids: number[];
  weights: number[];
}

/** What the chunker needs of the tokenizer and the embeddings. */
export interface ChunkTokenizer {
  bos: number;
  eos: number;
  pad: number;
  /** The id of "," as a word of its own, if the vocabulary has one. */
  comma?: number;
  /** Content token ids of a text, at most `limit` of them. */
  ids(text: string, limit: number): number[];
  /**
   * An embedding named at `position` of `tokens`: how many tokens its name takes and the ids
   * its vectors get (rows of the encoder's extra table, assigned by the caller).
   */
  embeddingAt?(tokens: readonly number[], position: number): { length: number; vectors: () => number[] } | undefined;
}

/**
 * A parsed prompt in 77-token chunks, as A1111's tokenize_line makes them: each chunk is BOS,
 * up to 75 content tokens, EOS, then padding (weight 1 for BOS, EOS and padding).
 */
export function promptChunks(pieces: readonly PromptPiece[], tok: ChunkTokenizer): PromptChunk[] {
  checkEmphasis(pieces);
  const chunks: PromptChunk[] = [];
  let ids: number[] = [];
  let weights: number[] = [];
  let lastComma = -1;
  const budget = MAX_CHUNKS * CHUNK_TOKENS;
  let seen = 0;
  const nextChunk = () => {
    if (chunks.length >= MAX_CHUNKS) {
      throw new RequestError(
        `prompt is longer than ${MAX_CHUNKS} chunks of ${CHUNK_TOKENS} tokens (BREAK included)`,
        "prompt",
      );
    }
    const full = [tok.bos, ...ids, tok.eos];
    const w = [1, ...weights, 1];
    // A1111 pads with EOS and then turns every token after the first EOS into the pad token
    // (the same token for SD 1.x; "!" for SD 2.x's OpenCLIP tokenizer).
    while (full.length < CHUNK_TOKENS + 2) {
      full.push(tok.pad);
      w.push(1);
    }
    chunks.push({ ids: full, weights: w });
    ids = [];
    weights = [];
    lastComma = -1;
  };
  for (const piece of pieces) {
    if ("break" in piece) {
      nextChunk();
      continue;
    }
    const tokens = tok.ids(piece.text, budget - seen + 1);
    seen += tokens.length;
    if (seen > budget) {
      throw new RequestError(
        `prompt is longer than ${budget} tokens (${MAX_CHUNKS} chunks of ${CHUNK_TOKENS})`,
        "prompt",
      );
    }
    let position = 0;
    while (position < tokens.length) {
      const token = tokens[position] as number;
      if (token === tok.comma) lastComma = ids.length;
      else if (ids.length === CHUNK_TOKENS && lastComma !== -1 && ids.length - lastComma <= COMMA_BACKTRACK) {
        const cut = lastComma + 1;
        const movedIds = ids.slice(cut);
        const movedWeights = weights.slice(cut);
        ids = ids.slice(0, cut);
        weights = weights.slice(0, cut);
        nextChunk();
        ids = movedIds;
        weights = movedWeights;
      }
      if (ids.length === CHUNK_TOKENS) nextChunk();
      const emb = tok.embeddingAt?.(tokens, position);
      if (!emb) {
        ids.push(token);
        weights.push(piece.weight);
        position++;
        continue;
      }
      const vectors = emb.vectors();
      if (ids.length + vectors.length > CHUNK_TOKENS) nextChunk();
      for (const v of vectors) {
        ids.push(v);
        weights.push(piece.weight);
      }
      position += emb.length;
    }
  }
  if (ids.length > 0 || chunks.length === 0) nextChunk();
  return chunks;
}

/**
 * A batch of prompts in A1111's chunks for one text encoder: `chunks[c][b]` is prompt b's chunk c,
 * every prompt padded with empty chunks to the longest's count (A1111 pads a batch so; the
 * negative prompt is padded the same way, as A1111's "pad prompt/negative prompt" option does).
 * Each distinct prompt is parsed once. `feeds`: the placed embeddings' vectors
 * (`extra_token_rows`, called by ids vocabSize + row) when the encoder has a placer.
 */
export function a1111Chunks(
  prompts: readonly string[],
  tok: ClipTokenizer,
  placer: EmbeddingPlacer | undefined,
  encoder: { vocabSize: number; hiddenSize: number },
): { chunks: PromptChunk[][]; feeds: Feeds } {
  const rows: Float32Array[] = [];
  const width = encoder.hiddenSize;
  const chunker: ChunkTokenizer = {
    bos: tok.bosTokenId,
    eos: tok.eosTokenId,
    pad: tok.padTokenId,
    comma: tok.encode(",", { padding: false }).inputIds[1],
    ids: (text, limit) => tok.encode(text, { padding: false, maxLength: limit + 2 }).inputIds.slice(1, -1),
    embeddingAt: placer
      ? (tokens, position) => {
          const hit = placer.at(tokens, position);
          if (!hit) return undefined;
          const e = hit.embedding;
          return {
            length: hit.length,
            vectors: () =>
              Array.from({ length: e.count }, (_, v) => {
                rows.push(e.vectors.subarray(v * width, (v + 1) * width));
                return encoder.vocabSize + rows.length - 1;
              }),
          };
        }
      : undefined,
  };
  const byPrompt = new Map<string, PromptChunk[]>();
  for (const p of prompts) {
    if (!byPrompt.has(p)) byPrompt.set(p, promptChunks(parseA1111Prompt(p).pieces, chunker));
  }
  const count = Math.max(...[...byPrompt.values()].map((c) => c.length));
  const empty = emptyChunk(chunker);
  const chunks = Array.from({ length: count }, (_, c) =>
    prompts.map((p) => (byPrompt.get(p) as PromptChunk[])[c] ?? empty),
  );
  return { chunks, feeds: placer ? placer.rowsFeed(rows) : {} };
}

/** BOS, EOS, then padding: what A1111 pads a shorter prompt's missing chunks with. */
export function emptyChunk(tok: Pick<ChunkTokenizer, "bos" | "eos" | "pad">): PromptChunk {
  return promptChunks([{ text: "", weight: 1 }], { ...tok, ids: () => [] })[0] as PromptChunk;
}

/**
 * A1111's "Original" emphasis on one chunk's hidden states [tokens, width] (in place): each
 * token's vector multiplied by its weight, then all of it scaled so its mean is the mean before.
 * Means are taken over the whole chunk in float64, the products rounded to float32.
 */
export function applyEmphasis(z: Float32Array, weights: readonly number[], width: number): void {
  if (weights.every((w) => w === 1)) return;
  let before = 0;
  for (let i = 0; i < z.length; i++) before += z[i] as number;
  before /= z.length;
  let after = 0;
  for (let t = 0; t < weights.length; t++) {
    const w = Math.fround(weights[t] as number);
    for (let j = t * width; j < (t + 1) * width; j++) {
      z[j] = Math.fround((z[j] as number) * w);
      after += z[j] as number;
    }
  }
  after /= z.length;
  const ratio = Math.fround(before / after);
  // A zero mean (all weights 0) leaves nothing to restore; A1111 would make NaNs.
  if (!Number.isFinite(ratio)) return;
  for (let i = 0; i < z.length; i++) z[i] = Math.fround((z[i] as number) * ratio);
}
