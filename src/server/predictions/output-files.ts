/**
 * Output files of predictions: by the prediction in hand (responses that inline the bytes), or by
 * the capability key of their URL, where object storage may answer instead with a presigned URL
 * that never outlives retention.
 */
import type { FileStore, StoredFile } from "../files/file-store.js";
import type { PredictionStore } from "../store/store.js";
import { GoneError } from "./errors.js";
import { parseMicros } from "./ids.js";
import type { PredictionRecord } from "./prediction.js";

/** A presigned URL is valid for at most this long (seconds). */
const PRESIGN_MAX_S = 3600;

export class OutputFiles {
  constructor(
    private readonly store: PredictionStore,
    private readonly files: FileStore,
    /** ms after completion; null keeps outputs forever. */
    private readonly retentionMs: number | null,
  ) {}

  /** An output file of a prediction in hand; undefined when it has none of that name or retention removed it. */
  async ofPrediction(p: PredictionRecord, name: string): Promise<StoredFile | undefined> {
    if (!p.output?.includes(name) || p.dataRemoved || this.expired(p)) return undefined;
    return this.files.get(p.id, name);
  }

  /**
   * An output file by its capability key: the file, or where to fetch it (a presigned URL).
   * Throws GoneError once retention removed it; undefined when there is no such file.
   */
  async byKey(filesKey: string, name: string): Promise<StoredFile | { redirect: string } | undefined> {
    const p = await this.store.findByFilesKey(filesKey);
    if (!p?.output?.includes(name)) {
      if (p?.dataRemoved) throw new GoneError("This output was removed when its retention period ended.");
      return undefined;
    }
    if (p.dataRemoved || this.expired(p))
      throw new GoneError("This output was removed when its retention period ended.");
    if (this.files.url) {
      const url = await this.files.url(p.id, name, Math.min(PRESIGN_MAX_S, this.secondsLeft(p)));
      if (url) return { redirect: url };
    }
    return this.files.get(p.id, name);
  }

  private secondsLeft(p: PredictionRecord): number {
    const keep = this.retentionMs;
    if (keep === null || p.completedAt === null) return PRESIGN_MAX_S;
    return (parseMicros(p.completedAt) / 1000 + keep - Date.now()) / 1000;
  }

  private expired(p: PredictionRecord): boolean {
    const keep = this.retentionMs;
    return keep !== null && p.completedAt !== null && parseMicros(p.completedAt) / 1000 + keep <= Date.now();
  }
}
