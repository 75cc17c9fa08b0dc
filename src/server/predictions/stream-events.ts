/**
 * The Server-Sent Events of a prediction (spec §4): one `logs` event per log line, one `output`
 * event per output file URL, `error` on failure, and `done` last. They are derived from the stored
 * prediction, whose logs only grow while it runs and whose outputs appear once, so the same
 * prediction always gives the same numbered events: a late subscriber gets a full replay and a
 * reconnecting one resumes after its Last-Event-ID, across restarts too.
 */
import type { PredictionPreview } from "../models/model.js";
import type { PredictionRecord } from "./prediction.js";
import { fileUrl, type UrlBase } from "./serialize.js";

/** Replicate's four event names, and no others: python's client rejects anything else. */
export type StreamEventName = "output" | "logs" | "error" | "done";

export interface StreamEvent {
  /** 0, 1, 2, … in order; sent as the SSE id. */
  id: number;
  event: StreamEventName;
  data: string;
}

export function streamEvents(p: PredictionRecord, base: UrlBase): StreamEvent[] {
  const events: StreamEvent[] = [];
  const push = (event: StreamEventName, data: string) => events.push({ id: events.length, event, data });
  const lines = p.logs.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) push("logs", line);
  for (const name of p.status === "succeeded" ? (p.output ?? []) : []) push("output", fileUrl(base, p, name));
  if (p.status === "failed") push("error", JSON.stringify({ detail: p.error ?? "Prediction failed" }));
  if (p.status === "succeeded") push("done", "{}");
  else if (p.status === "failed") push("done", JSON.stringify({ reason: "error" }));
  else if (p.status === "canceled") push("done", JSON.stringify({ reason: "canceled" }));
  return events;
}

/** One event in SSE framing: event and id lines always, one data line per line of the payload. */
export function formatStreamEvent(e: StreamEvent): string {
  const data = e.data
    .split("\n")
    .map((line) => `data: ${line}\n`)
    .join("");
  return `event: ${e.event}\nid: ${e.id}\n${data}\n`;
}

/**
 * A preview as an SSE event: `preview`, data {step, total, images: [PNG data URLs]}. Sent only
 * to streams that ask for previews (?preview=1), because python's client rejects any event name
 * beyond Replicate's four; without an id line, so Last-Event-ID keeps counting the numbered
 * events and a resumed stream replays no preview.
 */
export function formatPreviewEvent(p: PredictionPreview): string {
  const images = p.images.map((png) => `data:image/png;base64,${Buffer.from(png).toString("base64")}`);
  return `event: preview\ndata: ${JSON.stringify({ step: p.step, total: p.total, images })}\n\n`;
}
