/**
 * The predictions table as both SQL stores keep it: the same columns, with JSON in text
 * columns; only how a boolean is stored differs (SQLite 0/1, PostgreSQL boolean).
 */
import type { A1111Settings } from "../models/model.js";
import type { PredictionRecord, PredictionStatus, WebhookEvent } from "../predictions/prediction.js";
import { type A1111Glance, type A1111Mark, LOG_TAIL, type PredictionPatch, type UploadRecord } from "./store.js";

export interface PredictionRow<Bool> {
  id: string;
  account: string;
  model: string;
  version: string;
  input: string;
  logs: string;
  output: string | null;
  error: string | null;
  status: string;
  data_removed: Bool;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  webhook: string | null;
  webhook_events_filter: string | null;
  deadline: string | null;
  api_base: string;
  origin: string;
  files_key: string;
  stream_key: string;
  attempts: number;
  prompt_syntax: string | null;
  /** JSON of A1111Settings, or null. */
  a1111_settings: string | null;
}

export function predictionFromRow<Bool>(r: PredictionRow<Bool>, toBool: (v: Bool) => boolean): PredictionRecord {
  return {
    id: r.id,
    account: r.account,
    model: r.model,
    version: r.version,
    input: JSON.parse(r.input) as Record<string, unknown>,
    logs: r.logs,
    output: r.output === null ? null : (JSON.parse(r.output) as string[]),
    error: r.error,
    status: r.status as PredictionStatus,
    dataRemoved: toBool(r.data_removed),
    createdAt: r.created_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    webhook: r.webhook,
    webhookEventsFilter:
      r.webhook_events_filter === null ? null : (JSON.parse(r.webhook_events_filter) as WebhookEvent[]),
    deadline: r.deadline,
    apiBase: r.api_base,
    origin: r.origin,
    filesKey: r.files_key,
    streamKey: r.stream_key,
    attempts: r.attempts,
    ...(r.prompt_syntax === "a1111" ? { promptSyntax: "a1111" as const } : {}),
    ...(r.a1111_settings ? { a1111: JSON.parse(r.a1111_settings) as A1111Settings } : {}),
  };
}

/** A mark's columns, as both stores select them. */
export const MARK_COLUMNS = "id, status, created_at, started_at, a1111_settings";

/** The end of the logs, as PostgreSQL's SQL takes it (SQLite keeps its running logs apart: sqlite.ts). */
export const POSTGRES_LOG_TAIL = `right(logs, ${LOG_TAIL})`;

export interface MarkRow {
  id: string;
  status: string;
  created_at: string;
  started_at: string | null;
  a1111_settings: string;
  log_tail?: string;
}

export function markFromRow(r: MarkRow): A1111Mark {
  return {
    id: r.id,
    status: r.status as PredictionStatus,
    createdAt: r.created_at,
    startedAt: r.started_at,
    a1111: JSON.parse(r.a1111_settings) as A1111Settings,
  };
}

export function glanceFromRow(r: MarkRow): A1111Glance {
  return { ...markFromRow(r), logTail: r.log_tail ?? "" };
}

/** Patch field → column, and how its value is stored. */
export function patchColumns(
  fromBool: (v: boolean) => unknown,
): Record<keyof PredictionPatch, [string, (v: never) => unknown]> {
  return {
    status: ["status", (v: string) => v],
    output: ["output", (v: string[] | null) => (v === null ? null : JSON.stringify(v))],
    error: ["error", (v: string | null) => v],
    startedAt: ["started_at", (v: string | null) => v],
    completedAt: ["completed_at", (v: string | null) => v],
    attempts: ["attempts", (v: number) => v],
    logs: ["logs", (v: string) => v],
    input: ["input", (v: Record<string, unknown>) => JSON.stringify(v)],
    dataRemoved: ["data_removed", (v: boolean) => fromBool(v)],
    deadline: ["deadline", (v: string | null) => v],
  };
}

/** An uploads row, as both stores return it. */
export interface UploadRow {
  id: string;
  account: string;
  name: string;
  content_type: string;
  size: number | string;
  sha256: string;
  metadata: string;
  created_at: string;
  expires_at: string;
}

export function uploadFromRow(r: UploadRow): UploadRecord {
  return {
    id: r.id,
    account: r.account,
    name: r.name,
    contentType: r.content_type,
    size: Number(r.size),
    sha256: r.sha256,
    metadata: JSON.parse(r.metadata),
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

/** The uploads table's columns, in the order of `uploadValues`: one list for both stores' inserts. */
export const UPLOAD_COLUMNS = "id, account, name, content_type, size, sha256, metadata, created_at, expires_at";

export function uploadValues(u: UploadRecord): (string | number)[] {
  return [
    u.id,
    u.account,
    u.name,
    u.contentType,
    u.size,
    u.sha256,
    JSON.stringify(u.metadata ?? null),
    u.createdAt,
    u.expiresAt,
  ];
}
