/**
 * The tries of a `completed` webhook as a BullMQ job (shared queues): scheduled once per
 * prediction, retried with the dispatcher's backoff, and kept in Redis, so that a restart or a
 * crash of the process that scheduled it loses no try: whichever process is up sends the next.
 */
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { redisConnection } from "../queue/bullmq.js";
import type { CompletedDeliveries, WebhookDispatcher } from "./dispatcher.js";

const QUEUE_NAME = "webhooks";
/** Webhook posts wait on receivers, not on this machine: several go at once. */
const CONCURRENCY = 8;

export class BullMqCompletedDeliveries implements CompletedDeliveries {
  private readonly connection: Redis;
  private readonly queue: Queue;
  private worker: Worker | undefined;

  constructor(
    url: string,
    private readonly prefix: string,
    private readonly retryDelays: readonly number[],
    private readonly log?: (line: string) => void,
  ) {
    this.connection = redisConnection(url, log);
    this.queue = new Queue(QUEUE_NAME, { connection: this.connection, prefix });
    this.queue.on("error", (err: Error) => log?.(`webhook queue: ${err.message}`));
  }

  async schedule(id: string, webhookId: string): Promise<void> {
    await this.queue.add(
      "completed",
      { id, webhookId },
      {
        // One `completed` per prediction, even if two processes schedule it.
        jobId: `completed-${id}`,
        attempts: this.retryDelays.length + 1,
        backoff: { type: "custom" },
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 86_400 },
      },
    );
  }

  /** Sends the tries that fall due, through `dispatcher`, until close(). */
  start(dispatcher: WebhookDispatcher): void {
    this.worker ??= new Worker<{ id: string; webhookId: string }>(
      QUEUE_NAME,
      async (job) => {
        const final = await dispatcher.tryCompleted(job.data.id, job.data.webhookId, job.attemptsMade + 1);
        // Throwing makes BullMQ schedule the next try after the backoff below.
        if (!final) throw new Error("webhook not delivered");
      },
      {
        connection: this.connection,
        prefix: this.prefix,
        concurrency: CONCURRENCY,
        settings: {
          backoffStrategy: (attemptsMade: number) =>
            this.retryDelays[attemptsMade - 1] ?? this.retryDelays[this.retryDelays.length - 1] ?? 1000,
        },
      },
    );
    this.worker.on("error", (err: Error) => this.log?.(`webhook queue: ${err.message}`));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
    await this.connection.quit().catch(() => undefined);
  }
}
