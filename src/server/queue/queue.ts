/**
 * JobQueue: prediction ids waiting for a worker, oldest first. The in-process queue (local.ts)
 * is the default; BullMQ on Redis (bullmq.ts) is the shared one, for many API nodes and workers.
 * The queue holds ids only: the store is the record, so a lost queue is rebuilt from it.
 */

/** What became of a job: run to its end (whatever the prediction's outcome), or handed back to the queue. */
export type JobOutcome = "done" | "requeue";

/** Runs a prediction; resolves when the run is over. */
export type JobHandler = (id: string) => Promise<JobOutcome>;

export interface JobConsumer {
  /** Takes no more jobs; resolves once the jobs in hand have ended. */
  stop(): Promise<void>;
}

export interface JobQueue {
  /**
   * Whether jobs live outside this process (a shared queue): a job then outlives a crash of the
   * process that ran it, and another process may run it again.
   */
  readonly shared: boolean;
  enqueue(id: string): Promise<void>;
  /** Drops a waiting id (a prediction canceled before it started); false if it was not waiting. */
  remove(id: string): Promise<boolean>;
  /** Whether a job for `id` is waiting or running. */
  has(id: string): Promise<boolean>;
  /** Jobs waiting for a worker. */
  waitingCount(): Promise<number>;
  /** Hands each job to `handler`, up to `concurrency` at once, until the consumer stops. */
  consume(handler: JobHandler, concurrency: number): JobConsumer;
  close(): Promise<void>;
}
