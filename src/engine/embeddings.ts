/**
 * Textual-inversion embeddings: learned token vectors that a prompt calls by name. The name is
 * found in the prompt as AUTOMATIC1111 finds it, on token ids: the prompt is tokenized as usual,
 * and wherever the tokens of an embedding's name appear (longest name first) they are replaced by
 * the embedding's vectors, then the sequence is cut to the tokenizer's length as usual. The
 * vectors reach the text encoder through its `extra_token_rows` input: ids from vocab_size on
 * pick those rows instead of the token embedding table (clip.ts), so the encoder computes exactly
 * what it would for tokens whose table rows held those vectors.
 *
 * Files (`.safetensors` only): AUTOMATIC1111's layout (`emb_params` [n, width]) or diffusers'
 * (one tensor named after its token, [width] or [n, width]). The name is the file's name without
 * `.safetensors` (A1111), and also the diffusers token when that differs. SDXL's two-encoder form
 * (`clip_l` [n, 768] for CLIP ViT-L and `clip_g` [n, 1280] for OpenCLIP bigG, as A1111 and
 * diffusers' SDXL textual inversion write them) is loaded once per encoder (`part`): each encoder
 * gets its own vectors at the same places. A file of the other form, or vectors of another width,
 * is an error naming the file.
 */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { ModelError } from "./errors.js";
import type { Feeds } from "./runtime.js";
import type { ClipTokenizer } from "./tokenizer/clip.js";
import { PICKLE_EXTENSIONS } from "./weights/model-folder.js";
import { readSafetensors, readTensor, type TensorInfo } from "./weights/safetensors.js";

export interface Embedding {
  /** The names a prompt may call it by. */
  names: string[];
  file: string;
  /** count × width vectors, row-major. */
  vectors: Float32Array;
  count: number;
}

/** At most this many vectors per embedding (A1111 trains 1–75; more could not fit a prompt). */
const MAX_VECTORS = 75;

/** SDXL's two-encoder embeddings: the tensor for each text encoder, in the pipeline's order. */
export const SDXL_EMBEDDING_PARTS = ["clip_l", "clip_g"] as const;
export type EmbeddingPart = (typeof SDXL_EMBEDDING_PARTS)[number];

/** Loads one embedding for a text encoder `width` wide; `part`: the SDXL tensor for that encoder. */
export async function loadEmbedding(file: string, width: number, part?: EmbeddingPart): Promise<Embedding> {
  if (PICKLE_EXTENSIONS.some((e) => file.toLowerCase().endsWith(e))) {
    throw new ModelError(
      "is a PyTorch pickle embedding, which sdserve does not read (loading a pickle can run arbitrary code); " +
        "use the embedding's .safetensors download",
      { file },
    );
  }
  const { key, tensor: t, count, width: wide } = await embeddingTensor(file, part);
  if (wide !== width) {
    throw new ModelError(
      part
        ? `holds ${part} vectors ${wide} wide, but this model's ${part === "clip_l" ? "CLIP ViT-L" : "OpenCLIP"} text encoder takes ${width} (an embedding for another model family)`
        : `holds vectors ${wide} wide, but this model's text encoder takes ${width} (an embedding for another model family)`,
      { file },
    );
  }
  const vectors = await readTensor(t);
  if (!vectors.every(Number.isFinite)) throw new ModelError("holds NaN or infinite values", { file });
  const stem = path.basename(file).replace(/\.safetensors$/i, "");
  const names = part || key === "emb_params" || key === stem ? [stem] : [stem, key];
  return { names, file, vectors, count };
}

/** An embedding tensor's vector count and width, or an error naming the file. */
function vectorShape(file: string, key: string, t: TensorInfo): { count: number; width: number } {
  const shape = t.shape.length === 1 ? [1, t.shape[0] as number] : t.shape;
  if (shape.length !== 2 || (shape[0] as number) < 1 || (shape[0] as number) > MAX_VECTORS) {
    throw new ModelError(`${key} has shape [${t.shape.join(", ")}]; expected [vectors (1–${MAX_VECTORS}), width]`, {
      file,
    });
  }
  return { count: shape[0] as number, width: shape[1] as number };
}

/**
 * The tensor of an embedding file, from its header alone (nothing else is read): SD 1.x / 2.x's
 * one tensor, or with `part` that tensor of SDXL's pair (whose vector counts must agree).
 */
async function embeddingTensor(
  file: string,
  part?: EmbeddingPart,
): Promise<{ key: string; tensor: TensorInfo; count: number; width: number }> {
  const st = await readSafetensors(file);
  const keys = [...st.tensors.keys()];
  const sdxl = SDXL_EMBEDDING_PARTS.some((p) => keys.includes(p));
  if (part !== undefined) {
    const [l, g] = SDXL_EMBEDDING_PARTS.map((p) => st.tensors.get(p));
    if (!l || !g) {
      throw new ModelError(
        sdxl
          ? `is an SDXL embedding with only ${l ? "clip_l" : "clip_g"}: SDXL takes vectors for both text encoders (clip_l and clip_g)`
          : "is a one-encoder (SD 1.x / 2.x) embedding; an SDXL model needs SDXL's two-encoder form (clip_l and clip_g vectors)",
        { file },
      );
    }
    const [cl, cg] = [vectorShape(file, "clip_l", l), vectorShape(file, "clip_g", g)];
    if (cl.count !== cg.count) {
      throw new ModelError(`has ${cl.count} clip_l vectors but ${cg.count} clip_g vectors; they must be pairs`, {
        file,
      });
    }
    return part === "clip_l" ? { key: part, tensor: l, ...cl } : { key: part, tensor: g, ...cg };
  }
  if (sdxl) {
    throw new ModelError("is an SDXL embedding (clip_l / clip_g vectors); this model has one text encoder", { file });
  }
  const key = keys.includes("emb_params") ? "emb_params" : keys.length === 1 ? (keys[0] as string) : undefined;
  if (key === undefined) {
    throw new ModelError(
      `is not a textual-inversion embedding: expected one tensor (emb_params, or a token name), found ${keys.length}` +
        (keys.length > 0 ? ` (${keys.slice(0, 3).join(", ")})` : ""),
      { file },
    );
  }
  const t = st.tensors.get(key)!;
  return { key, tensor: t, ...vectorShape(file, key, t) };
}

export interface EmbeddingFile {
  /** What a prompt calls it by (the file's name without `.safetensors`). */
  name: string;
  file: string;
  vectors: number;
  /** The vectors' width (SDXL's two-encoder form: clip_g's, the last encoder's). */
  width: number;
  /** SDXL's two-encoder form: clip_l's width. */
  clipLWidth?: number;
}

/**
 * The embedding files of a folder, from their headers (for listings): those that are not
 * embeddings, or cannot be read, are left out; a missing folder lists none.
 */
export async function listEmbeddingFiles(dir: string): Promise<EmbeddingFile[]> {
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((n) => n.toLowerCase().endsWith(".safetensors"))
    .sort();
  const out: EmbeddingFile[] = [];
  for (const n of names) {
    const file = path.join(dir, n);
    const name = n.slice(0, -".safetensors".length);
    const e = await embeddingTensor(file).catch(() => undefined);
    if (e) {
      out.push({ name, file, vectors: e.count, width: e.width });
      continue;
    }
    const [l, g] = await Promise.all(SDXL_EMBEDDING_PARTS.map((p) => embeddingTensor(file, p).catch(() => undefined)));
    if (l && g) out.push({ name, file, vectors: g.count, width: g.width, clipLWidth: l.width });
  }
  return out;
}

/**
 * Loads embedding files, and every `.safetensors` file in the folders given. A file that cannot
 * be used is an error naming it; two embeddings under one name are too.
 */
export async function loadEmbeddings(
  sources: readonly string[],
  width: number,
  part?: EmbeddingPart,
): Promise<Embedding[]> {
  const files: string[] = [];
  for (const source of sources) {
    const st = await stat(source).catch(() => undefined);
    if (!st) throw new ModelError("embedding file or folder not found", { file: source });
    if (st.isDirectory()) {
      const names = (await readdir(source)).filter((n) => n.toLowerCase().endsWith(".safetensors")).sort();
      files.push(...names.map((n) => path.join(source, n)));
    } else files.push(source);
  }
  const out: Embedding[] = [];
  const seen = new Map<string, string>();
  for (const file of files) {
    const e = await loadEmbedding(file, width, part);
    for (const name of e.names) {
      const other = seen.get(name);
      if (other) throw new ModelError(`embedding name "${name}" is also the name of ${other}`, { file });
      seen.set(name, file);
    }
    out.push(e);
  }
  return out;
}

/**
 * Places the embeddings a batch of prompts names: token ids (ids ≥ vocabSize point at rows of
 * the returned `extra_token_rows`: a request's trained tokens first, one row each, then one row
 * per embedding vector used) and the feeds for that input and `added_token_rows`.
 */
export class EmbeddingPlacer {
  private readonly patterns: { ids: number[]; embedding: Embedding }[];

  constructor(
    private readonly tokenizer: ClipTokenizer,
    private readonly embeddings: readonly Embedding[],
    private readonly vocabSize: number,
    private readonly width: number,
  ) {
    this.patterns = [];
    for (const embedding of embeddings) {
      for (const name of embedding.names) {
        const ids = this.content(name);
        if (ids.length > 0) this.patterns.push({ ids, embedding });
      }
    }
    this.patterns.sort((a, b) => b.ids.length - a.ids.length);
  }

  private content(text: string): number[] {
    return this.tokenizer.encode(text, { padding: false, truncation: false }).inputIds.slice(1, -1);
  }

  /**
   * `trained`: tokens added for this request (Replicate's trained tokens, `trainedTokenNames`):
   * found in the text before it is tokenized, as transformers finds added special tokens, so
   * "<s0><s1>" is two tokens whatever stands around them; the text between is tokenized as usual.
   * They take the first rows, one each, so token k has the id transformers gives the k-th added
   * token (vocabSize + k), and the encoder pools as transformers does with them (clip.ts).
   */
  encode(prompts: readonly string[], trained?: TrainedTokens): { ids: number[][]; feeds: Feeds; rows: number } {
    const added = trained?.names.length ?? 0;
    const rows: Float32Array[] = [];
    for (let k = 0; k < added; k++) {
      rows.push((trained as TrainedTokens).vectors.subarray(k * this.width, (k + 1) * this.width));
    }
    const max = this.tokenizer.modelMaxLength;
    const ids = prompts.map((prompt) => {
      const placed: number[] = [];
      for (const piece of splitOnTokens(prompt, trained?.names ?? [])) {
        if (placed.length >= max - 2) break;
        if (typeof piece === "number") placed.push(this.vocabSize + piece);
        else this.place(this.content(piece), placed, rows);
      }
      const out = [this.tokenizer.bosTokenId, ...placed.slice(0, max - 2), this.tokenizer.eosTokenId];
      while (out.length < max) out.push(this.tokenizer.padTokenId);
      return out;
    });
    return { ids, rows: rows.length, feeds: this.rowsFeed(rows, added) };
  }

  /** Appends `content`'s ids to `placed`, with the embeddings it names as rows. */
  private place(content: readonly number[], placed: number[], rows: Float32Array[]): void {
    const max = this.tokenizer.modelMaxLength;
    // Past the cut nothing is placed, so a prompt naming an embedding again and again cannot grow the rows.
    for (let i = 0; i < content.length && placed.length < max - 2; ) {
      const hit = this.patterns.find((p) => p.ids.every((id, k) => content[i + k] === id));
      if (!hit) {
        placed.push(content[i] as number);
        i++;
        continue;
      }
      const e = hit.embedding;
      for (let v = 0; v < e.count; v++) {
        placed.push(this.vocabSize + rows.length);
        rows.push(e.vectors.subarray(v * this.width, (v + 1) * this.width));
      }
      i += hit.ids.length;
    }
  }

  /** The embedding whose name's tokens start at `position` of `content` (longest name first). */
  at(content: readonly number[], position: number): { length: number; embedding: Embedding } | undefined {
    const hit = this.patterns.find((p) => p.ids.every((id, k) => content[position + k] === id));
    return hit && { length: hit.ids.length, embedding: hit.embedding };
  }

  /**
   * The `extra_token_rows` feed for vectors gathered elsewhere (AUTOMATIC1111 prompts): rows
   * numbered from 0, called by ids vocabSize + row; the first `added` of them are added tokens
   * (`added_token_rows`: they pool as transformers pools added tokens), the rest embeddings.
   */
  rowsFeed(rows: readonly Float32Array[], added = 0): Feeds {
    // The input needs at least one row even when no prompt names an embedding.
    const table = new Float32Array(Math.max(1, rows.length) * this.width);
    rows.forEach((r, i) => {
      table.set(r, i * this.width);
    });
    return {
      extra_token_rows: new ort.Tensor("float32", table, [Math.max(1, rows.length), this.width]),
      added_token_rows: new ort.Tensor("int64", BigInt64Array.of(BigInt(added)), []),
    };
  }

  /** The embeddings' names, for listing. */
  get names(): string[] {
    return this.embeddings.flatMap((e) => e.names);
  }
}

/**
 * Tokens one request adds to a text encoder's tokenizer, with their vectors: Replicate's trained
 * tokens (cog-sdxl's `embeddings.pti`: `<s0>`, `<s1>`…).
 */
export interface TrainedTokens {
  names: readonly string[];
  /** names.length × width vectors, row-major. */
  vectors: Float32Array;
}

/** The tokens cog-sdxl's TokenEmbeddingsHandler adds for n trained vectors. */
export function trainedTokenNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `<s${i}>`);
}

/** At most this many trained tokens (cog-sdxl trains 2; more could not fit a prompt). */
const MAX_TRAINED_TOKENS = 75;

/**
 * The vectors of a cog-sdxl `embeddings.pti` for one text encoder: `text_encoders_0` for CLIP
 * ViT-L, `text_encoders_1` for OpenCLIP bigG, each [n, width], the rows of `<s0>`…`<s(n-1)>`.
 * A file that does not fit is an error naming it (the caller says what it is to the user).
 */
export async function loadTrainedTokens(file: string, part: EmbeddingPart, width: number): Promise<TrainedTokens> {
  let st: Awaited<ReturnType<typeof readSafetensors>>;
  try {
    st = await readSafetensors(file);
  } catch (err) {
    throw new ModelError(`is not a readable safetensors file (${err instanceof Error ? err.message : String(err)})`, {
      file,
    });
  }
  const keys = ["text_encoders_0", "text_encoders_1"] as const;
  const shapes = keys.map((k) => {
    const t = st.tensors.get(k);
    if (!t) throw new ModelError(`has no ${k} tensor (the trained tokens' vectors for each text encoder)`, { file });
    if (t.shape.length !== 2 || (t.shape[0] as number) < 1 || (t.shape[0] as number) > MAX_TRAINED_TOKENS) {
      throw new ModelError(
        `${k} has shape [${t.shape.join(", ")}]; expected [tokens (1–${MAX_TRAINED_TOKENS}), width]`,
        {
          file,
        },
      );
    }
    return t;
  });
  const [t0, t1] = shapes as [TensorInfo, TensorInfo];
  if (t0.shape[0] !== t1.shape[0]) {
    throw new ModelError(`has ${t0.shape[0]} text_encoders_0 vectors but ${t1.shape[0]} text_encoders_1 vectors`, {
      file,
    });
  }
  const key = part === "clip_l" ? "text_encoders_0" : "text_encoders_1";
  const t = part === "clip_l" ? t0 : t1;
  if (t.shape[1] !== width) {
    throw new ModelError(
      `${key} holds vectors ${t.shape[1]} wide, but this model's ${part === "clip_l" ? "CLIP ViT-L" : "OpenCLIP"} text encoder takes ${width} (trained for another model)`,
      { file },
    );
  }
  const vectors = await readTensor(t);
  if (!vectors.every(Number.isFinite)) throw new ModelError(`${key} holds NaN or infinite values`, { file });
  return { names: trainedTokenNames(t.shape[0] as number), vectors };
}

/**
 * The text cut at each occurrence of a token (leftmost first, the longest at a place, as
 * transformers' added-tokens trie splits it): text pieces and token indices, in order.
 */
export function splitOnTokens(text: string, tokens: readonly string[]): (string | number)[] {
  if (tokens.length === 0) return [text];
  const order = tokens.map((t, i) => ({ t, i })).sort((a, b) => b.t.length - a.t.length);
  const out: (string | number)[] = [];
  let from = 0;
  for (let at = text.indexOf("<", from); at !== -1 && tokens.length > 0; ) {
    const hit = order.find(({ t }) => t !== "" && text.startsWith(t, at));
    if (!hit) {
      at = text.indexOf("<", at + 1);
      continue;
    }
    if (at > from) out.push(text.slice(from, at));
    out.push(hit.i);
    from = at + hit.t.length;
    at = text.indexOf("<", from);
  }
  if (from < text.length) out.push(text.slice(from));
  return out;
}
