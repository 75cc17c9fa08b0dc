/**
 * The served JSON of finished predictions, kept in memory so that reading one again costs no
 * store read and no serialisation (the read path: GET /v1/predictions/{id}).
 *
 * Only what can no longer change is kept. A prediction that is starting or processing changes
 * at any moment, on any node, so it is never kept. A finished one (succeeded, failed, canceled)
 * changes once more at most: when retention removes its data, completed_at + retention after it
 * finished (lifecycle.ts removeExpiredData; every node sharing a store sweeps with the same
 * SDSERVE_OUTPUT_RETENTION). So an entry is served only until then, less a margin for the
 * clocks of other nodes, and forgotten at once when this process rewrites the prediction. A
 * prediction whose data was removed never changes again and is kept until evicted.
 *
 * Bounded by size (two bytes a character, what a string may take in memory at most, plus a
 * little per entry), least recently read evicted first.
 */
import { parseMicros } from "./ids.js";
import { isTerminal, type PredictionRecord } from "./prediction.js";
import type { UrlBase } from "./serialize.js";

/** Another node's clock may run this far ahead of ours: its sweep may come that much earlier. */
export const CLOCK_MARGIN_MS = 60_000;
/** What an entry costs besides its strings (the maps and the entry itself), in bytes. */
const ENTRY_OVERHEAD = 200;

interface Entry {
  account: string;
  /** Epoch ms after which the entry is not served (Infinity: it can no longer change). */
  until: number;
  /** The JSON by the base its URLs were made from (`api origin`). */
  bodies: Map<string, string>;
  size: number;
}

export interface SettledCacheOptions {
  /** Most bytes kept, all entries together; 0 keeps nothing. */
  maxBytes: number;
  /** The retention of outputs (ms after completion); null keeps them forever. */
  retentionMs: number | null;
  /** Default CLOCK_MARGIN_MS. */
  clockMarginMs?: number;
  /** For tests: epoch ms now. */
  now?: () => number;
}

export class SettledPredictionCache {
  private readonly entries = new Map<string, Entry>();
  private size = 0;
  private readonly now: () => number;
  private readonly margin: number;

  constructor(private readonly opts: SettledCacheOptions) {
    this.now = opts.now ?? Date.now;
    this.margin = opts.clockMarginMs ?? CLOCK_MARGIN_MS;
  }

  /** The JSON kept for prediction `id` as `account` sees it from `base`, if any and still true. */
  get(id: string, account: string, base: UrlBase): string | undefined {
    const entry = this.entries.get(id);
    if (!entry || entry.account !== account) return undefined;
    if (entry.until <= this.now()) {
      this.forget(id);
      return undefined;
    }
    const body = entry.bodies.get(baseKey(base));
    if (body === undefined) return undefined;
    // Most recently read last: Map keeps insertion order, so the first entry is the one to evict.
    this.entries.delete(id);
    this.entries.set(id, entry);
    return body;
  }

  /** Keeps `json`, the prediction as served from `base`, if the prediction can no longer change before retention. */
  keep(p: PredictionRecord, base: UrlBase, json: string): void {
    if (!isTerminal(p.status) || p.completedAt === null) return;
    const until = this.validUntil(p);
    if (until <= this.now()) return;
    const key = baseKey(base);
    const cost = costOf(key, json);
    if (cost > this.opts.maxBytes) return;
    let entry = this.entries.get(p.id);
    if (entry && (entry.account !== p.account || entry.until !== until)) {
      // Another state of the prediction than the one kept (its data removed meanwhile): start again.
      this.forget(p.id);
      entry = undefined;
    }
    if (!entry) {
      entry = { account: p.account, until, bodies: new Map(), size: 0 };
      this.entries.set(p.id, entry);
    }
    const previous = entry.bodies.get(key);
    if (previous !== undefined) {
      const freed = costOf(key, previous);
      entry.size -= freed;
      this.size -= freed;
    }
    entry.bodies.set(key, json);
    entry.size += cost;
    this.size += cost;
    for (const [id, oldest] of this.entries) {
      if (this.size <= this.opts.maxBytes) break;
      this.entries.delete(id);
      this.size -= oldest.size;
    }
  }

  /** Drops what is kept of prediction `id` (this process changed it). */
  forget(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    this.size -= entry.size;
  }

  /** Bytes kept, all entries together, as counted against maxBytes. */
  get keptBytes(): number {
    return this.size;
  }

  /** When a finished prediction's served JSON may change next: its retention, less the clock margin. */
  private validUntil(p: PredictionRecord): number {
    const keep = this.opts.retentionMs;
    if (p.dataRemoved || keep === null) return Number.POSITIVE_INFINITY;
    return parseMicros(p.completedAt as string) / 1000 + keep - this.margin;
  }
}

function costOf(key: string, json: string): number {
  return 2 * (key.length + json.length) + ENTRY_OVERHEAD;
}

function baseKey(base: UrlBase): string {
  return `${base.api} ${base.origin}`;
}
