/**
 * The prediction object of Replicate's API, made from a stored prediction for one response.
 * Key order and presence are stable: null rather than absent (spec §2.1).
 */
import { secondsBetween } from "./ids.js";
import type { PredictionRecord } from "./prediction.js";

/** Where the response is seen from: URLs are absolute and keep the request's prefix (spec §0.1). */
export interface UrlBase {
  /** scheme://host[:port][/path] + /v1 or /replicate/v1 */
  api: string;
  /** scheme://host[:port][/path]: files, pages */
  origin: string;
}

export interface ApiPrediction {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
  logs: string;
  output: string[] | null;
  data_removed: boolean;
  error: string | null;
  status: string;
  source: "api";
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  webhook?: string;
  webhook_events_filter?: string[];
  deadline?: string;
  metrics: Record<string, number>;
  urls: { get: string; cancel: string; stream: string; web: string };
}

export function fileUrl(base: UrlBase, p: PredictionRecord, name: string): string {
  return `${base.origin}/files/${p.filesKey}/${name}`;
}

export function streamUrl(base: UrlBase, p: PredictionRecord): string {
  return `${base.api}/streams/${p.streamKey}`;
}

function metrics(p: PredictionRecord): Record<string, number> {
  if (!p.completedAt) return {};
  const m: Record<string, number> = {};
  if (p.startedAt) m["predict_time"] = round(secondsBetween(p.startedAt, p.completedAt));
  m["total_time"] = round(secondsBetween(p.createdAt, p.completedAt));
  if (p.status === "succeeded" && p.output) m["image_count"] = p.output.length;
  return m;
}

function round(seconds: number): number {
  return Math.round(Math.max(0, seconds) * 1e6) / 1e6;
}

/**
 * `asStarting`: the snapshot a `Prefer: wait` answers with when its time runs out — status
 * "starting" and no output, whatever the worker is doing, because both clients' run() treat any
 * other status as final (spec §1.4, pitfall 1).
 */
export function toApiPrediction(
  p: PredictionRecord,
  base: UrlBase,
  opts: { asStarting?: boolean } = {},
): ApiPrediction {
  const starting = opts.asStarting && p.status !== "starting";
  // Built in the order Replicate's objects have (optional fields, then metrics and urls last).
  const out: ApiPrediction = {
    id: p.id,
    model: p.model,
    version: p.version,
    input: p.input,
    logs: p.logs,
    output: p.output && !starting ? p.output.map((name) => fileUrl(base, p, name)) : null,
    data_removed: p.dataRemoved,
    error: starting ? null : p.error,
    status: opts.asStarting ? "starting" : p.status,
    source: "api",
    created_at: p.createdAt,
    started_at: p.startedAt,
    completed_at: starting ? null : p.completedAt,
  } as ApiPrediction;
  if (p.webhook) out.webhook = p.webhook;
  if (p.webhookEventsFilter) out.webhook_events_filter = p.webhookEventsFilter;
  if (p.deadline) out.deadline = p.deadline;
  out.metrics = starting ? {} : metrics(p);
  out.urls = {
    get: `${base.api}/predictions/${p.id}`,
    cancel: `${base.api}/predictions/${p.id}/cancel`,
    stream: streamUrl(base, p),
    // The page is a capability URL, like the stream: it opens in a browser without a token.
    web: `${base.origin}/p/${p.streamKey}`,
  };
  return out;
}
