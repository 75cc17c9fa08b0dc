/**
 * Replicate's Files API behind the routes: uploaded files, each its token's own, kept in the
 * file store (disk or S3) beside the outputs and described by a row of the store, until they
 * expire. The worker reads them here when a prediction names one by its URL (never over HTTP).
 */
import { createHash } from "node:crypto";
import { formatMicros, newPredictionId, timestamp } from "../predictions/ids.js";
import type { ListPosition, PredictionStore, UploadRecord } from "../store/store.js";
import type { OwnFileReader } from "./file-inputs.js";
import type { FileStore } from "./file-store.js";

/** Where an upload's bytes live in the file store (one folder per upload, beside the outputs' folders). */
const folder = (id: string) => `upload-${id}`;
const CONTENT = "content";
/** Expired uploads are looked for this often. */
const SWEEP_MS = 60_000;

/** The picture formats by their first bytes, for uploads sent as application/octet-stream (the JS client's Buffers). */
export function sniffContentType(data: Uint8Array): string | undefined {
  const b = data;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "image/png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (b.length >= 12 && Buffer.from(b.subarray(0, 4)).toString("latin1") === "RIFF") {
    if (Buffer.from(b.subarray(8, 12)).toString("latin1") === "WEBP") return "image/webp";
  }
  return undefined;
}

export class Uploads {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: PredictionStore,
    private readonly files: FileStore,
    /** How long an upload is kept (Replicate: a day). */
    readonly retentionMs: number,
  ) {}

  async create(
    account: string,
    upload: { name: string; contentType: string; data: Uint8Array; metadata: unknown },
  ): Promise<UploadRecord> {
    const id = newPredictionId();
    const createdAt = timestamp();
    const record: UploadRecord = {
      id,
      account,
      name: upload.name,
      contentType: upload.contentType,
      size: upload.data.length,
      sha256: createHash("sha256").update(upload.data).digest("hex"),
      metadata: upload.metadata,
      createdAt,
      expiresAt: formatMicros((Date.now() + this.retentionMs) * 1000),
    };
    // Bytes first: a row never names a file that is not there.
    await this.files.put(folder(id), CONTENT, upload.data, upload.contentType);
    await this.store.insertUpload(record);
    return record;
  }

  /** The account's upload of that id; another token's, or an expired one, is not there. */
  async get(account: string, id: string): Promise<UploadRecord | undefined> {
    const u = await this.store.getUpload(id);
    return u && u.account === account && !this.expired(u) ? u : undefined;
  }

  list(account: string, limit: number, after?: ListPosition): Promise<UploadRecord[]> {
    return this.store.listUploads(account, limit, after);
  }

  async delete(account: string, id: string): Promise<boolean> {
    const u = await this.get(account, id);
    if (!u) return false;
    await this.store.deleteUpload(id);
    await this.files.removeAll(folder(id));
    return true;
  }

  async read(u: UploadRecord): Promise<Uint8Array | undefined> {
    const f = await this.files.get(folder(u.id), CONTENT);
    return f ? f.read() : undefined;
  }

  /** For the worker: an uploaded file named by a prediction's input. */
  readonly reader: OwnFileReader = async (id, account) => {
    const u = await this.store.getUpload(id);
    if (!u || this.expired(u)) return "missing";
    if (u.account !== account) return "foreign";
    return (await this.read(u)) ?? "missing";
  };

  private expired(u: UploadRecord): boolean {
    return u.expiresAt <= timestamp();
  }

  /** Removes expired uploads (rows and bytes). */
  async sweep(): Promise<number> {
    const ids = await this.store.expiredUploads(timestamp());
    for (const id of ids) {
      await this.files.removeAll(folder(id));
      await this.store.deleteUpload(id);
    }
    return ids.length;
  }

  start(onError: (err: unknown) => void): void {
    this.timer ??= setInterval(() => this.sweep().catch(onError), SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
