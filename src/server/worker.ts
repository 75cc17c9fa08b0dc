/**
 * The worker: takes prediction ids from the queue and runs them through their model adapter,
 * `concurrency` at a time. It records nothing itself; the prediction lifecycle does, in order,
 * fenced by the attempt that begin() handed out (so a run that lost its job to a rerun on
 * another worker writes nothing).
 */
import { FileInputError, type FileInputOptions, resolveFileInput } from "./files/file-inputs.js";
import { WeightsCache, type WeightsFile } from "./files/weights-inputs.js";
import type { ModelAdapter } from "./models/model.js";
import { isVersionOf, PredictionError } from "./models/model.js";
import type { PredictionLifecycle } from "./predictions/lifecycle.js";
import { publicErrorMessage } from "./public-error.js";
import type { JobConsumer, JobOutcome, JobQueue } from "./queue/queue.js";
import type { JsonSchema } from "./schemas/json-schema.js";

export class Worker {
  private consumer: JobConsumer | undefined;
  private weightsCache: WeightsCache | undefined;

  constructor(
    private readonly lifecycle: PredictionLifecycle,
    private readonly models: readonly ModelAdapter[],
    private readonly queue: JobQueue,
    private readonly log: (line: string) => void = () => {},
    private readonly concurrency = 1,
    /** Told the time of each denoising step (for /metrics). */
    private readonly onStepTime?: (seconds: number) => void,
    /** How file inputs (URLs, data: URIs, uploaded files) are fetched. */
    private readonly fileInputs: FileInputOptions = { allowPrivate: false },
  ) {}

  start(): void {
    this.consumer ??= this.queue.consume((id) => this.run(id), this.concurrency);
  }

  private async run(id: string): Promise<JobOutcome> {
    try {
      return await this.runOne(id);
    } catch (err) {
      // A fault of the server (the store, the disk), not of the prediction: say so and go on.
      const message = publicErrorMessage(err, "running the prediction", (line) => this.log(`worker: ${id}: ${line}`));
      await this.lifecycle.fail(id, message).catch(() => undefined);
      return "done";
    }
  }

  private async runOne(id: string): Promise<JobOutcome> {
    const job = await this.lifecycle.begin(id);
    if (!job) return "done";
    const { attempt, signal } = job;
    const adapter = this.adapterFor(job.prediction.version);
    if (!adapter) {
      await this.lifecycle.fail(id, `No model serves version ${job.prediction.version} on this server.`, attempt);
      return "done";
    }
    // Log lines are written in order, and all of them before the prediction completes.
    let logs: Promise<void> = Promise.resolve();
    const appendLog = (line: string) => {
      logs = logs.then(() => this.lifecycle.appendLog(id, line)).catch(() => undefined);
    };
    const interrupted = async (): Promise<JobOutcome> => {
      await this.lifecycle.interrupted(id, signal.reason, attempt);
      return signal.reason === "shutdown" ? "requeue" : "done";
    };
    try {
      await adapter.setup().catch((err: unknown) => {
        throw new PredictionError(
          `The model could not be loaded: ${publicErrorMessage(err, "loading the model", this.log)}`,
        );
      });
      const files = await this.resolveFiles(adapter, job.prediction.input, job.prediction.account, signal);
      const weights = await this.resolveWeights(adapter, job.prediction.input, job.prediction.account, signal);
      const outputs = await adapter.predict(job.prediction.input, {
        files,
        ...(weights ? { weights } : {}),
        log: appendLog,
        preview: (preview) => this.lifecycle.preview(id, preview),
        stepTime: this.onStepTime,
        signal,
        ...(job.prediction.promptSyntax ? { promptSyntax: job.prediction.promptSyntax } : {}),
        ...(job.prediction.a1111 ? { a1111: job.prediction.a1111 } : {}),
      });
      await logs;
      if (signal.aborted) return await interrupted();
      await this.lifecycle.succeed(id, outputs, attempt);
    } catch (err) {
      await logs;
      if (signal.aborted) return await interrupted();
      if (err instanceof PredictionError) {
        await this.lifecycle.fail(id, err.message, attempt);
      } else {
        const message = publicErrorMessage(err, "running the prediction", (line) => this.log(`worker: ${id}: ${line}`));
        await this.lifecycle.fail(id, message, attempt);
      }
    }
    return "done";
  }

  /** The file inputs' bytes, fetched once here, before the model runs: a bad one fails the prediction naming it. */
  private async resolveFiles(
    adapter: ModelAdapter,
    input: Record<string, unknown>,
    account: string,
    signal: AbortSignal,
  ): Promise<Record<string, Uint8Array>> {
    const props = ((adapter.schemas["Input"] as JsonSchema | undefined)?.properties ?? {}) as Record<
      string,
      JsonSchema
    >;
    const files: Record<string, Uint8Array> = {};
    for (const [name, schema] of Object.entries(props)) {
      const value = input[name];
      if (schema["format"] !== "uri" || value === undefined || value === null) continue;
      try {
        files[name] = await resolveFileInput(String(value), name, account, this.fileInputs, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        throw new PredictionError(err instanceof Error ? err.message : String(err));
      }
    }
    return files;
  }

  /** The weights inputs (LoRAs by URL), fetched and unpacked into the weights cache before the model runs. */
  private async resolveWeights(
    adapter: ModelAdapter,
    input: Record<string, unknown>,
    account: string,
    signal: AbortSignal,
  ): Promise<Record<string, WeightsFile> | undefined> {
    // An empty string names no weights (cog-sdxl's `if replicate_weights:`).
    const names = (adapter.weightsInputs ?? []).filter((name) => typeof input[name] === "string" && input[name] !== "");
    if (names.length === 0) return undefined;
    const dir = this.fileInputs.weightsCacheDir;
    if (!dir) throw new PredictionError(`${names[0]}: this server keeps no cache for LoRA weights`);
    this.weightsCache ??= new WeightsCache(dir);
    const out: Record<string, WeightsFile> = {};
    for (const name of names) {
      try {
        out[name] = await this.weightsCache.resolve(String(input[name]), name, account, this.fileInputs, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        if (err instanceof FileInputError) throw new PredictionError(err.message);
        throw err;
      }
    }
    return out;
  }

  private adapterFor(version: string): ModelAdapter | undefined {
    return this.models.find((m) => isVersionOf(m, version));
  }

  /** Stops taking jobs; the running ones are interrupted by the lifecycle's shutdown and handed back. */
  async stop(): Promise<void> {
    await this.consumer?.stop();
  }
}
