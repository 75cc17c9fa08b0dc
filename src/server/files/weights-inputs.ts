/**
 * Weights inputs: an input that names LoRA weights by URL — Replicate SDXL's `replicate_weights`,
 * a `.safetensors` LoRA or a `.tar` holding `lora.safetensors` as Replicate's LoRA trainers
 * publish them (beside `embeddings.pti` and `special_params.json`). They are fetched under the
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

/** A weights input ready for the engine. */
export interface WeightsFile {
  /** The LoRA's `.safetensors` on disk, named by the SHA-256 of the fetched bytes. */
  path: string;
  sha256: string;
  /** What the input held that is not applied, said to the prediction's logs. */
  notes: string[];
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
export function unpackWeights(bytes: Uint8Array, field: string): { lora: Uint8Array; notes: string[] } {
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
  const notes: string[] = [];
  if (files.some((m) => m.name === "embeddings.pti")) {
    notes.push(
      `${field}: embeddings.pti (the trained token embeddings) is not applied, as textual-inversion embeddings ` +
        "are not supported on SDXL here yet; the trained tokens of special_params.json are left in the prompt as written, " +
        "and only lora.safetensors is applied",
    );
  }
  return { lora: lora.data, notes };
}

/** The on-disk cache of weights inputs of one worker. */
export class WeightsCache {
  private readonly byUrl = new Map<string, { sha256: string; notes: string[] }>();
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
      const file = this.fileOf(remembered.sha256);
      if (await exists(file)) return this.used({ path: file, ...remembered });
    }
    const bytes = await resolveFileInput(
      value,
      field,
      account,
      { ...opts, maxBytes: this.maxFetchBytes, timeoutMs: this.fetchTimeoutMs },
      signal,
    );
    const sha256 = await hashOf(bytes);
    const { lora, notes } = unpackWeights(bytes, field);
    const file = this.fileOf(sha256);
    if (!(await exists(file))) {
      await mkdir(this.dir, { recursive: true });
      const partial = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.partial`;
      try {
        await writeFile(partial, lora);
        await rename(partial, file);
      } finally {
        await rm(partial, { force: true });
      }
    }
    if (this.rememberable(value)) {
      this.byUrl.delete(value);
      this.byUrl.set(value, { sha256, notes });
      for (const key of this.byUrl.keys()) {
        if (this.byUrl.size <= MAX_REMEMBERED_URLS) break;
        this.byUrl.delete(key);
      }
    }
    const out = this.used({ path: file, sha256, notes });
    await this.evict(file).catch(() => undefined);
    return out;
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

  private fileOf(sha256: string): string {
    return path.join(this.dir, `${sha256}.safetensors`);
  }

  private used(file: WeightsFile): WeightsFile {
    // Strictly increasing, so uses within one millisecond keep their order.
    this.clock = Math.max(Date.now(), this.clock + 0.001);
    this.lastUsed.set(file.path, this.clock);
    return file;
  }

  /** Removes the least recently used files until the cache fits its budget; `keep` stays. */
  private async evict(keep: string): Promise<void> {
    const entries: { file: string; size: number; used: number }[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(".safetensors")) continue;
      const file = path.join(this.dir, name);
      const st = await stat(file).catch(() => undefined);
      if (st?.isFile()) entries.push({ file, size: st.size, used: this.lastUsed.get(file) ?? st.mtimeMs });
    }
    let total = entries.reduce((a, e) => a + e.size, 0);
    entries.sort((a, b) => a.used - b.used);
    for (const e of entries) {
      if (total <= this.maxBytes) break;
      if (e.file === keep) continue;
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
