/**
 * PredictionStore: where predictions live. SQLite (sqlite.ts) is the default; a scale-out
 * store implements the same interface. Every method is async so that a networked store fits.
 */
import type { PredictionRecord, PredictionStatus } from "../predictions/prediction.js";

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

export interface PredictionStore {
  insert(p: PredictionRecord): Promise<void>;
  get(id: string): Promise<PredictionRecord | undefined>;
  findByFilesKey(key: string): Promise<PredictionRecord | undefined>;
  findByStreamKey(key: string): Promise<PredictionRecord | undefined>;
  list(q: ListQuery): Promise<PredictionRecord[]>;
  /**
   * Applies `patch` if the prediction's status is one of `whenStatus` (any status when absent);
   * returns the updated record, or undefined when the condition did not hold. This is how a
   * transition wins or loses a race (cancel against completion) without locks.
   */
  update(
    id: string,
    patch: PredictionPatch,
    whenStatus?: readonly PredictionStatus[],
  ): Promise<PredictionRecord | undefined>;
  /** Appends one line (a newline is added) to the logs of an unfinished prediction; logs of a finished one never change. */
  appendLog(id: string, line: string): Promise<void>;
  /** Predictions still starting or processing, oldest first. */
  unfinished(): Promise<PredictionRecord[]>;
  countUnfinished(): Promise<number>;
  /** Ids of completed predictions whose data is still kept and that completed before `completedBefore`. */
  completedBefore(completedBefore: string): Promise<string[]>;
  /** A small key–value table for server state (webhook secrets, …). */
  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}
