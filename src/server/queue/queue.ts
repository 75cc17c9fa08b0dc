/**
 * JobQueue: prediction ids waiting for a worker, oldest first. The in-process queue
 * (local.ts) is the default; a shared queue implements the same interface.
 * The queue holds ids only: the store is the record, so a lost queue is rebuilt from it.
 */
export interface JobQueue {
  enqueue(id: string): Promise<void>;
  /** The next id, waiting for one if the queue is empty; undefined once `signal` aborts. */
  take(signal: AbortSignal): Promise<string | undefined>;
  /** Drops a waiting id (a prediction canceled before it started); false if it was not waiting. */
  remove(id: string): Promise<boolean>;
  close(): Promise<void>;
}
