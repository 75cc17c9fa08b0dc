/**
 * Weights inputs: an input that names LoRA weights by URL — Replicate SDXL's `replicate_weights`,
 * a `.safetensors` LoRA or a `.tar` holding `lora.safetensors` as Replicate's LoRA trainers
 * publish them, with the trained tokens beside it (cog-sdxl: `embeddings.pti`, the vectors of
 * `<s0>`, `<s1>`… for each text encoder, and `special_params.json`, what a prompt writes for
 * them, e.g. {"TOK": "<s0><s1>"}). They are fetched under the
 * file-input rules (file-inputs.ts: the SSRF guard, timeouts; data: URIs and Files API uploads
 * too) with a larger size limit, unpacked here, and kept on disk by the SHA-256 of what was
 * fetched, so that the engine reads a plain file and a LoRA asked for again is not fetched or
 * unpacked again. The cache is bounded: the least recently used files go first.
 *
 * Whether the LoRA fits the model is the engine's to say (lora.ts), naming what is wrong.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { FileInputError, type FileInputOptions, ownFileId, resolveFileInput } from "./file-inputs.js";
import { isUnsafeName, looksLikeTar, readTar, TarError } from "./tar.js";

/** 1 GiB: an SDXL LoRA of rank 128 is about 900 MB in float16 (most are 20–400 MB). */
export const MAX_WEIGHTS_BYTES = 1024 * 1024 * 1024;
/** A LoRA may take a while to come (an image input gets 30 s); the prediction's own deadline still applies. */
export const WEIGHTS_FETCH_TIMEOUT_MS = 5 * 60_000;
/** What the cache keeps on disk before it evicts. */
export const WEIGHTS_CACHE_BYTES = 8 * 1024 * 1024 * 1024;
/** URLs remembered with the hash of what they gave (Replicate's weights URLs do not change). */
const MAX_REMEMBERED_URLS = 256;

/** special_params.json: at most this many entries, each side at most this many characters. */
export const MAX_SPECIAL_PARAMS = 64;
export const MAX_SPECIAL_PARAM_LENGTH = 1000;

/** A tar's trained tokens (cog-sdxl), ready for the engine. */
export interface TrainedTokensFile {
  /** `embeddings.pti` on disk, named by the SHA-256 of the fetched bytes. */
  path: string;
  /** special_params.json in its order: each key is replaced by its value in the prompt. */
  tokenMap: readonly (readonly [string, string])[];
}

/** A weights input ready for the engine. */
export interface WeightsFile {
  /** The LoRA's `.safetensors` on disk, named by the SHA-256 of the fetched bytes. */
  path: string;
  sha256: string;
  /** What the input held that is not applied, said to the prediction's logs. */
  notes: string[];
  trainedTokens?: TrainedTokensFile;
}

/** What unpackWeights finds in a weights input. */
export interface UnpackedWeights {
  lora: Uint8Array;
  notes: string[];
  trainedTokens?: { embeddings: Uint8Array; tokenMap: [string, string][] };
}

/** Whether the bytes begin as a safetensors file does: a little-endian header length, then "{". */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  return length >= 2 && length <= bytes.length - 8 && bytes[8] === 0x7b;
}

/**
 * The LoRA in a weights input's bytes: the bytes themselves when they are a safetensors file, or
 * the `lora.safetensors` of a tar archive. Throws a FileInputError naming the input and what is
 * wrong.
 */
export function unpackWeights(bytes: Uint8Array, field: string): UnpackedWeights {
  if (looksLikeSafetensors(bytes)) return { lora: bytes, notes: [] };
  if (!looksLikeTar(bytes)) {
    throw new FileInputError(field, "is neither a .safetensors LoRA nor a .tar archive holding lora.safetensors");
  }
  let members: ReturnType<typeof readTar>;
  try {
    members = readTar(bytes);
  } catch (err) {
    if (err instanceof TarError) throw new FileInputError(field, `is a broken tar archive: ${err.message}`);
    throw err;
  }
  const unsafe = members.find((m) => isUnsafeName(m.name));
  if (unsafe) {
    throw new FileInputError(
      field,
      `the tar archive has a member with an unsafe path (${JSON.stringify(unsafe.name)})`,
    );
  }
  const files = members.filter((m) => m.kind === "file");
  // As tar itself unpacks: a later member of the same name replaces an earlier one.
  const lora = files.findLast((m) => m.name === "lora.safetensors");
  if (!lora) {
    if (files.some((m) => m.name === "unet.safetensors")) {
      throw new FileInputError(
        field,
        "holds unet.safetensors (a fully fine-tuned UNet), not lora.safetensors; only LoRA weights are supported",
      );
    }
    const names = files.slice(0, 5).map((m) => m.name);
    throw new FileInputError(
      field,
      `the tar archive holds no lora.safetensors (${names.length > 0 ? `it has ${names.join(", ")}${files.length > 5 ? ", …" : ""}` : "it has no files"})`,
    );
  }
  if (!looksLikeSafetensors(lora.data)) {
    throw new FileInputError(field, "lora.safetensors in the tar archive is not a safetensors file");
  }
  const pti = files.findLast((m) => m.name === "embeddings.pti");
  const params = files.findLast((m) => m.name === "special_params.json");
  if (!pti && !params) return { lora: lora.data, notes: [] };
  // cog-sdxl reads both or fails: the tokens' vectors without their names in prompts, or names without vectors.
  if (!pti || !params) {
    throw new FileInputError(
      field,
      pti
        ? 'the tar archive holds embeddings.pti but no special_params.json (what prompts write for the trained tokens, e.g. {"TOK": "<s0><s1>"})'
        : "the tar archive holds special_params.json but no embeddings.pti (the trained tokens' vectors)",
    );
  }
  if (!looksLikeSafetensors(pti.data)) {
    throw new FileInputError(field, "embeddings.pti in the tar archive is not a safetensors file");
  }
  return {
    lora: lora.data,
    notes: [],
    trainedTokens: { embeddings: pti.data, tokenMap: readSpecialParams(params.data, field) },
  };
}

/** special_params.json: a JSON object of strings, what a prompt writes → the trained tokens it stands for. */
export function readSpecialParams(bytes: Uint8Array, field: string): [string, string][] {
  const bad = (what: string) => new FileInputError(field, `special_params.json in the tar archive ${what}`);
  if (bytes.length > MAX_SPECIAL_PARAMS * (2 * MAX_SPECIAL_PARAM_LENGTH + 16) + 2) throw bad("is too large");
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw bad('is not JSON (expected an object such as {"TOK": "<s0><s1>"})');
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad('is not a JSON object (expected one such as {"TOK": "<s0><s1>"})');
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_SPECIAL_PARAMS) throw bad(`has ${entries.length} entries; at most ${MAX_SPECIAL_PARAMS}`);
  const out: [string, string][] = [];
  for (const [k, v] of entries) {
    if (typeof v !== "string") throw bad(`maps ${JSON.stringify(k.slice(0, 40))} to a ${typeof v}, not a string`);
    if (k === "") throw bad("has an empty key");
    if (k.length > MAX_SPECIAL_PARAM_LENGTH || v.length > MAX_SPECIAL_PARAM_LENGTH) {
      throw bad(`has a key or value longer than ${MAX_SPECIAL_PARAM_LENGTH} characters`);
    }
    out.push([k, v]);
  }
  return out;
}

/** The on-disk cache of weights inputs of one worker. */
export class WeightsCache {
  private readonly byUrl = new Map<
    string,
    { sha256: string; notes: string[]; tokenMap?: readonly (readonly [string, string])[] }
  >();
  /** When each file was last handed out by this process (files from before fall back to mtime). */
  private readonly lastUsed = new Map<string, number>();
  private clock = 0;

  constructor(
    readonly dir: string,
    private readonly maxBytes = WEIGHTS_CACHE_BYTES,
    private readonly maxFetchBytes = MAX_WEIGHTS_BYTES,
    private readonly fetchTimeoutMs = WEIGHTS_FETCH_TIMEOUT_MS,
  ) {}

  /** The weights input's LoRA on disk: fetched, unpacked and written when not already there. */
  async resolve(
    value: string,
    field: string,
    account: string,
    opts: FileInputOptions,
    signal?: AbortSignal,
  ): Promise<WeightsFile> {
    const remembered = this.rememberable(value) ? this.byUrl.get(value) : undefined;
    if (remembered) {
      const { sha256, notes, tokenMap } = remembered;
      const file = this.fileOf(sha256);
      const pti = tokenMap && this.fileOf(sha256, ".pti");
      if ((await exists(file)) && (!pti || (await exists(pti)))) {
        return this.used({
          path: file,
          sha256,
          notes,
          ...(pti && tokenMap ? { trainedTokens: { path: pti, tokenMap } } : {}),
        });
      }
    }
    const bytes = await resolveFileInput(
      value,
      field,
      account,
      { ...opts, maxBytes: this.maxFetchBytes, timeoutMs: this.fetchTimeoutMs },
      signal,
    );
    const sha256 = await hashOf(bytes);
    const { lora, notes, trainedTokens } = unpackWeights(bytes, field);
    const file = this.fileOf(sha256);
    await this.write(file, lora);
    const pti = trainedTokens && this.fileOf(sha256, ".pti");
    if (pti && trainedTokens) await this.write(pti, trainedTokens.embeddings);
    const tokenMap = trainedTokens?.tokenMap;
    if (this.rememberable(value)) {
      this.byUrl.delete(value);
      this.byUrl.set(value, { sha256, notes, ...(tokenMap ? { tokenMap } : {}) });
      for (const key of this.byUrl.keys()) {
        if (this.byUrl.size <= MAX_REMEMBERED_URLS) break;
        this.byUrl.delete(key);
      }
    }
    const out = this.used({
      path: file,
      sha256,
      notes,
      ...(pti && tokenMap ? { trainedTokens: { path: pti, tokenMap } } : {}),
    });
    await this.evict(pti ? [file, pti] : [file]).catch(() => undefined);
    return out;
  }

  /** Writes a cache file whole or not at all (another worker may be reading it). */
  private async write(file: string, bytes: Uint8Array): Promise<void> {
    if (await exists(file)) return;
    await mkdir(this.dir, { recursive: true });
    const partial = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.partial`;
    try {
      await writeFile(partial, bytes);
      await rename(partial, file);
    } finally {
      await rm(partial, { force: true });
    }
  }

  /** http(s) URLs other than this server's own uploads (whose reading is checked per token every time). */
  private rememberable(value: string): boolean {
    if (!/^https?:/i.test(value)) return false;
    try {
      return ownFileId(new URL(value)) === undefined;
    } catch {
      return false;
    }
  }

  private fileOf(sha256: string, ext = ".safetensors"): string {
    return path.join(this.dir, `${sha256}${ext}`);
  }

  private used(file: WeightsFile): WeightsFile {
    // Strictly increasing, so uses within one millisecond keep their order.
    this.clock = Math.max(Date.now(), this.clock + 0.001);
    this.lastUsed.set(file.path, this.clock);
    if (file.trainedTokens) this.lastUsed.set(file.trainedTokens.path, this.clock);
    return file;
  }

  /** Removes the least recently used files until the cache fits its budget; `keep` stays. */
  private async evict(keep: readonly string[]): Promise<void> {
    const entries: { file: string; size: number; used: number }[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(".safetensors") && !name.endsWith(".pti")) continue;
      const file = path.join(this.dir, name);
      const st = await stat(file).catch(() => undefined);
      if (st?.isFile()) entries.push({ file, size: st.size, used: this.lastUsed.get(file) ?? st.mtimeMs });
    }
    let total = entries.reduce((a, e) => a + e.size, 0);
    entries.sort((a, b) => a.used - b.used);
    for (const e of entries) {
      if (total <= this.maxBytes) break;
      if (keep.includes(e.file)) continue;
      await rm(e.file, { force: true });
      this.lastUsed.delete(e.file);
      total -= e.size;
    }
  }
}

/** SHA-256 in slices, yielding between them: a file of a gigabyte would hold the event loop for a second. */
async function hashOf(bytes: Uint8Array): Promise<string> {
  const hash = createHash("sha256");
  const slice = 16 * 1024 * 1024;
  for (let i = 0; i < bytes.length; i += slice) {
    hash.update(bytes.subarray(i, i + slice));
    if (i + slice < bytes.length) await new Promise((resolve) => setImmediate(resolve));
  }
  return hash.digest("hex");
}

async function exists(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() === true;
}
