/**
 * PredictionStore: where predictions live. SQLite (sqlite.ts) is the default; a scale-out
 * store implements the same interface. Every method is async so that a networked store fits.
 */
import type { A1111Settings } from "../models/model.js";
import type { PredictionRecord, PredictionStatus, WebhookEvent } from "../predictions/prediction.js";

/** A position in the newest-first order: (created_at, id) of a boundary row. */
export interface ListPosition {
  createdAt: string;
  id: string;
}

export interface ListQuery {
  account: string;
  limit: number;
  /** Rows strictly older than this position (the next page). */
  after?: ListPosition;
  /** Rows strictly newer than this position (the previous page), still returned newest first. */
  before?: ListPosition;
  status?: PredictionStatus;
  model?: string;
  version?: string;
  /** Inclusive. */
  createdAfter?: string;
  /** Exclusive. */
  createdBefore?: string;
}

/**
 * What a progress poll reads of a prediction made by an A1111 call (kept with A1111 settings):
 * never its input (an img2img call's pictures), output or logs.
 */
export interface A1111Mark {
  id: string;
  status: PredictionStatus;
  createdAt: string;
  startedAt: string | null;
  a1111: A1111Settings;
}

/** An unfinished one's mark and the end of its logs (the last LOG_TAIL characters: its latest step line). */
export interface A1111Glance extends A1111Mark {
  logTail: string;
}

/** How much of the end of a prediction's logs a glance carries. */
export const LOG_TAIL = 2000;

/** One attempt to deliver a webhook. */
export interface WebhookDelivery {
  /** The message id (webhook-id header), the same on every retry of one message. */
  webhookId: string;
  event: WebhookEvent;
  /** 1 for the first try. */
  attempt: number;
  at: string;
  /** The receiver's HTTP status, or null when no response came. */
  statusCode: number | null;
  /** Why the attempt failed (connection refused, timed out, internal target), or null. */
  error: string | null;
  delivered: boolean;
  /** No further try follows this one (delivered, refused, or the last retry). */
  final: boolean;
}

export type PredictionPatch = Partial<
  Pick<
    PredictionRecord,
    | "status"
    | "output"
    | "error"
    | "startedAt"
    | "completedAt"
    | "attempts"
    | "logs"
    | "input"
    | "dataRemoved"
    | "deadline"
  >
>;

/** A file uploaded through the Files API (POST /v1/files); its bytes are in the FileStore. */
export interface UploadRecord {
  id: string;
  /** The token that uploaded it; no other sees it. */
  account: string;
  name: string;
  contentType: string;
  size: number;
  /** Hex. */
  sha256: string;
  /** The client's metadata, any JSON value (stored as given). */
  metadata: unknown;
  createdAt: string;
  expiresAt: string;
}

export interface PredictionStore {
  /**
   * Stores a new prediction. With an idempotency key, atomically: if the account already used
   * the key, nothing is stored and the earlier prediction is returned instead.
   */
  insert(p: PredictionRecord, idempotencyKey?: string): Promise<PredictionRecord>;
  findByIdempotencyKey(account: string, key: string): Promise<PredictionRecord | undefined>;
  /** Forgets idempotency keys used before `before`. */
  forgetIdempotencyKeys(before: string): Promise<void>;
  get(id: string): Promise<PredictionRecord | undefined>;
  findByFilesKey(key: string): Promise<PredictionRecord | undefined>;
  findByStreamKey(key: string): Promise<PredictionRecord | undefined>;
  list(q: ListQuery): Promise<PredictionRecord[]>;
  /**
   * Applies `patch` if the prediction's status is one of `whenStatus` (any status when absent)
   * and its attempt count is `whenAttempts` (any when absent); returns the updated record, or
   * undefined when the condition did not hold. This is how a transition wins or loses a race
   * (cancel against completion, a run against its rerun on another worker) without locks.
   */
  update(
    id: string,
    patch: PredictionPatch,
    whenStatus?: readonly PredictionStatus[],
    whenAttempts?: number,
  ): Promise<PredictionRecord | undefined>;
  /** Appends one line (a newline is added) to the logs of an unfinished prediction; logs of a finished one never change. */
  appendLog(id: string, line: string): Promise<void>;
  /** The account's unfinished predictions kept with A1111 settings, oldest first, at most `limit`. */
  openA1111Glances(account: string, limit: number): Promise<A1111Glance[]>;
  /** The marks of the account's predictions kept with A1111 settings created at or after `createdFrom`, oldest first, at most `limit`. */
  a1111MarksSince(account: string, createdFrom: string, limit: number): Promise<A1111Mark[]>;
  /** Predictions still starting or processing, oldest first. */
  unfinished(): Promise<PredictionRecord[]>;
  /** Predictions waiting or running: all of them, or one account's. */
  countUnfinished(account?: string): Promise<number>;
  /** Predictions of a model (owner/name), every account's. */
  countByModel(model: string): Promise<number>;
  /** Ids of completed predictions whose data is still kept and that completed before `completedBefore`. */
  completedBefore(completedBefore: string): Promise<string[]>;
  recordWebhookDelivery(predictionId: string, delivery: WebhookDelivery): Promise<void>;
  /** Finished predictions with a webhook that completed at or after `since` (to resume deliveries after a restart). */
  finishedWithWebhookSince(since: string): Promise<PredictionRecord[]>;
  /** The prediction's webhook attempts, oldest first. */
  webhookDeliveries(predictionId: string): Promise<WebhookDelivery[]>;
  insertUpload(u: UploadRecord): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | undefined>;
  /** The account's uploads newest first, strictly older than `after` when given. */
  listUploads(account: string, limit: number, after?: ListPosition): Promise<UploadRecord[]>;
  /** Whether it was there. */
  deleteUpload(id: string): Promise<boolean>;
  /** Ids of uploads whose expiry is at or before `now`. */
  expiredUploads(now: string): Promise<string[]>;
  /** A small key–value table for server state (webhook secrets, …). */
  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;
  /**
   * Stores `value` unless `key` already has one, and returns the value kept: when several
   * processes race to make the same thing (an account's webhook secret), all get the first one.
   */
  setSettingIfAbsent(key: string, value: string): Promise<string>;
  close(): Promise<void>;
}
