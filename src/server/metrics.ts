/**
 * /metrics in Prometheus's text format, on API nodes and workers alike. Each process counts what
 * it does (the predictions whose status it changed, the steps it ran, the webhooks it failed to
 * deliver), so Prometheus sums a fleet correctly; the queue depth and the unfinished predictions
 * are read from the shared queue and store at each scrape.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { PredictionChange, PredictionEvents } from "./predictions/events.js";
import { secondsBetween } from "./predictions/ids.js";
import type { JobQueue } from "./queue/queue.js";
import type { PredictionStore, WebhookDelivery } from "./store/store.js";

export class Metrics {
  readonly registry = new Registry();
  private readonly predictions: Counter<"status">;
  private readonly predictTime: Histogram;
  private readonly stepTime: Histogram;
  private readonly webhookFailures: Counter<"event">;
  private unfollow: (() => void) | undefined;

  constructor(opts: { queue: JobQueue; store: PredictionStore; role: "api" | "worker" | "all" }) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ role: opts.role });
    collectDefaultMetrics({ register: this.registry, prefix: "sdserve_" });
    new Gauge({
      name: "sdserve_queue_depth",
      help: "Predictions waiting in the queue for a worker.",
      registers,
      async collect() {
        this.set(await opts.queue.waitingCount());
      },
    });
    new Gauge({
      name: "sdserve_predictions_unfinished",
      help: "Predictions starting or processing, in the whole store.",
      registers,
      async collect() {
        this.set(await opts.store.countUnfinished());
      },
    });
    this.predictions = new Counter({
      name: "sdserve_predictions_total",
      help: "Predictions by the status this process gave them (starting: created here).",
      labelNames: ["status"],
      registers,
    });
    this.predictTime = new Histogram({
      name: "sdserve_predict_time_seconds",
      help: "predict_time of the predictions that succeeded here (started to completed).",
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers,
    });
    this.stepTime = new Histogram({
      name: "sdserve_step_seconds",
      help: "Time of one denoising step run here.",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.webhookFailures = new Counter({
      name: "sdserve_webhook_failures_total",
      help: "Webhook delivery attempts that failed (no answer, or not 2xx), by event.",
      labelNames: ["event"],
      registers,
    });
  }

  /** Open event streams, and the bytes written to them that their clients have not taken yet. */
  observeStreams(streams: { count: number; bufferedBytes(): number }): void {
    new Gauge({
      name: "sdserve_streams_open",
      help: "Event streams open in this process.",
      registers: [this.registry],
      collect() {
        this.set(streams.count);
      },
    });
    new Gauge({
      name: "sdserve_stream_buffered_bytes",
      help: "Bytes written to open event streams and not yet taken by their clients (in this process's memory).",
      registers: [this.registry],
      collect() {
        this.set(streams.bufferedBytes());
      },
    });
  }

  /** Counts the changes this process makes. */
  follow(events: PredictionEvents): void {
    this.unfollow ??= events.subscribeLocal((change) => this.onChange(change));
  }

  private onChange(change: PredictionChange): void {
    if (change.type !== "status") return;
    const p = change.prediction;
    if (p.status === "starting" && p.attempts > 0) return;
    this.predictions.inc({ status: p.status });
    if (p.status === "succeeded" && p.startedAt && p.completedAt) {
      this.predictTime.observe(secondsBetween(p.startedAt, p.completedAt));
    }
  }

  step(seconds: number): void {
    this.stepTime.observe(seconds);
  }

  webhookDelivery(d: WebhookDelivery): void {
    if (!d.delivered) this.webhookFailures.inc({ event: d.event });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  close(): void {
    this.unfollow?.();
  }
}
