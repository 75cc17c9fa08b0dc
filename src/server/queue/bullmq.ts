/**
 * The shared JobQueue: BullMQ on Redis. Every API node adds jobs; every worker process (and an
 * all-in-one server) takes them, `concurrency` at a time. A job's id is its prediction's id, so
 * adding one twice (two nodes recovering at once) makes one job. A worker holds a lock on each
 * job it runs and renews it while running; when a worker dies its locks lapse, BullMQ's stalled
 * check moves the job back to waiting, and another worker runs it again (the store's attempt
 * count fences the old run out, so the prediction completes once).
 */
import { Queue, WaitingError, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { JobConsumer, JobHandler, JobQueue } from "./queue.js";

const QUEUE_NAME = "predictions";

export interface BullMqQueueOptions {
  url: string;
  /** Prefix of the queue's Redis keys. */
  prefix: string;
  /** ms a worker's lock on a running job lasts unrenewed; also how often stalled jobs are looked for. */
  lockMs: number;
  log?: (line: string) => void;
}

/** A Redis connection as BullMQ wants one: commands wait through reconnects instead of failing. */
export function redisConnection(url: string, log?: (line: string) => void): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true });
  redis.on("error", (err: Error) => log?.(`redis: ${err.message}`));
  return redis;
}

export class BullMqJobQueue implements JobQueue {
  readonly shared = true;
  private readonly connection: Redis;
  private readonly queue: Queue;
  private readonly workers = new Set<Worker>();

  constructor(private readonly opts: BullMqQueueOptions) {
    this.connection = redisConnection(opts.url, opts.log);
    this.queue = new Queue(QUEUE_NAME, { connection: this.connection, prefix: opts.prefix });
    this.queue.on("error", (err: Error) => opts.log?.(`queue: ${err.message}`));
  }

  async enqueue(id: string): Promise<void> {
    // Retries are the predictions service's business (it fails or reruns by the store's record).
    await this.queue.add("predict", { id }, { jobId: id, attempts: 1, removeOnComplete: true, removeOnFail: true });
  }

  async remove(id: string): Promise<boolean> {
    // A job in a worker's hands is locked: remove() leaves it, and says so.
    return (await this.queue.remove(id)) === 1;
  }

  async has(id: string): Promise<boolean> {
    const state = await this.queue.getJobState(id);
    return state !== "unknown" && state !== "completed" && state !== "failed";
  }

  async waitingCount(): Promise<number> {
    const counts = await this.queue.getJobCounts("waiting", "prioritized", "delayed");
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }

  consume(handler: JobHandler, concurrency: number): JobConsumer {
    const worker = new Worker<{ id: string }>(
      QUEUE_NAME,
      async (job, token) => {
        const outcome = await handler(job.data.id);
        if (outcome === "requeue") {
          // Back to waiting at once, for another worker: this one is stopping.
          await job.moveToWait(token);
          throw new WaitingError();
        }
      },
      {
        connection: this.connection,
        prefix: this.opts.prefix,
        concurrency,
        lockDuration: this.opts.lockMs,
        stalledInterval: this.opts.lockMs,
        // The service decides what a rerun after a crash becomes (it fails a prediction that died twice),
        // so BullMQ never fails a job for stalling.
        maxStalledCount: 1000,
      },
    );
    worker.on("error", (err: Error) => this.opts.log?.(`worker queue: ${err.message}`));
    this.workers.add(worker);
    return {
      stop: async () => {
        await worker.close();
        this.workers.delete(worker);
      },
    };
  }

  async close(): Promise<void> {
    for (const w of this.workers) await w.close();
    this.workers.clear();
    await this.queue.close();
    await this.connection.quit().catch(() => undefined);
  }
}
