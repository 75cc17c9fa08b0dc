/**
 * The worker: takes prediction ids from the queue, one at a time, and runs them through their
 * model adapter. It records nothing itself; the predictions service does, in order.
 */
import type { ModelAdapter } from "./models/model.js";
import { isVersionOf, PredictionError } from "./models/model.js";
import type { PredictionService } from "./predictions/service.js";
import type { JobQueue } from "./queue/queue.js";

export class Worker {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly service: PredictionService,
    private readonly queue: JobQueue,
    private readonly log: (line: string) => void = () => {},
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    for (;;) {
      const id = await this.queue.take(this.stopping.signal);
      if (id === undefined) return;
      try {
        await this.runOne(id);
      } catch (err) {
        // A fault of the server (the store, the disk), not of the prediction: say so and go on.
        this.log(`worker: prediction ${id}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        await this.service.fail(id, "Internal error while running the prediction.").catch(() => undefined);
      }
    }
  }

  private async runOne(id: string): Promise<void> {
    const job = await this.service.begin(id);
    if (!job) return;
    const adapter = this.adapterFor(job.prediction.version);
    if (!adapter) {
      await this.service.fail(id, `No model serves version ${job.prediction.version} on this server.`);
      return;
    }
    // Log lines are written in order, and all of them before the prediction completes.
    let logs: Promise<void> = Promise.resolve();
    const appendLog = (line: string) => {
      logs = logs.then(() => this.service.appendLog(id, line)).catch(() => undefined);
    };
    try {
      await adapter.setup().catch((err: unknown) => {
        throw new PredictionError(`The model could not be loaded: ${err instanceof Error ? err.message : String(err)}`);
      });
      const outputs = await adapter.predict(job.prediction.input, {
        log: appendLog,
        preview: (preview) => this.service.preview(id, preview),
        signal: job.signal,
      });
      await logs;
      if (job.signal.aborted) await this.service.interrupted(id, job.signal.reason);
      else await this.service.succeed(id, outputs);
    } catch (err) {
      await logs;
      if (job.signal.aborted) {
        await this.service.interrupted(id, job.signal.reason);
      } else if (err instanceof PredictionError) {
        await this.service.fail(id, err.message);
      } else {
        this.log(`worker: prediction ${id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        await this.service.fail(id, err instanceof Error ? err.message : String(err));
      }
    }
  }

  private adapterFor(version: string): ModelAdapter | undefined {
    return this.service.models.find((m) => isVersionOf(m, version));
  }

  /** Stops taking jobs; the running one is interrupted by the service's shutdown. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }
}
