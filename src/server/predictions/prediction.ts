import type { A1111Settings } from "../models/model.js";

/** A prediction as the server keeps it (the API's JSON is made from it by serialize.ts). */

/** Replicate's five states, exactly; nothing else is ever stored or sent (spec §2.3, §10.3). */
export const PREDICTION_STATUSES = ["starting", "processing", "succeeded", "failed", "canceled"] as const;
export type PredictionStatus = (typeof PREDICTION_STATUSES)[number];

export const TERMINAL_STATUSES: readonly PredictionStatus[] = ["succeeded", "failed", "canceled"];
export const UNFINISHED_STATUSES: readonly PredictionStatus[] = ["starting", "processing"];

export function isTerminal(status: PredictionStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** The events a webhook may ask for (webhook_events_filter), in the order they happen. */
export const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface PredictionRecord {
  id: string;
  /** The account (API token) that created it; others never see it. */
  account: string;
  /** owner/name */
  model: string;
  version: string;
  /** As the caller sent it (defaults are not filled into the echo). */
  input: Record<string, unknown>;
  logs: string;
  /** Output file names (out-0.png, …) once succeeded; URLs are made when it is served. */
  output: string[] | null;
  error: string | null;
  status: PredictionStatus;
  dataRemoved: boolean;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  webhook: string | null;
  webhookEventsFilter: WebhookEvent[] | null;
  /** Set by Cancel-After or the server's maximum run time: past it the prediction is canceled. */
  deadline: string | null;
  /** Origin and prefix of the create request (http://host:port/v1), for URLs sent when no request is in hand (webhooks). */
  apiBase: string;
  /** Origin of the create request, for output file URLs sent in webhooks. */
  origin: string;
  /** Capability keys: the unguessable path parts of the output file URLs and of urls.stream. */
  filesKey: string;
  streamKey: string;
  /** How many times a worker has started it (a restart while it ran makes 2). */
  attempts: number;
  /**
   * How its prompts are read, chosen by the API it came through (/sdapi/v1 reads A1111's
   * syntax); absent: the model's own setting. Never an input key, so Replicate's schema stays as is.
   */
  promptSyntax?: "a1111";
  /** The settings of an /sdapi/v1 call that are not inputs (hires fix, clip skip); kept with the prediction. */
  a1111?: A1111Settings;
}
