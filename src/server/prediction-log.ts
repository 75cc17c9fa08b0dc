/**
 * Prediction lifecycle records for the operator's log: created, started, progress, and how each
 * ended, with the prediction id, the model and the timings. Follows the changes this process
 * makes (as metrics.ts does), so each record is written once across nodes and workers. Inputs,
 * webhook URLs and capability keys are never written; the error of a failed prediction is.
 */
import type { Logger } from "./log.js";
import type { PredictionChange, PredictionEvents } from "./predictions/events.js";

/** Progress records at most this often per prediction (each step is a debug record). */
export const PROGRESS_EVERY_MS = 5000;

/** tqdm's `done/total [` in the progress lines the adapters write to a prediction's logs. */
const PROGRESS = /\|\s*(\d+)\/(\d+) \[/;

function seconds(from: string | null, to: string | null): number | undefined {
  if (!from || !to) return undefined;
  return Math.round(Date.parse(to) - Date.parse(from)) / 1000;
}

export class PredictionLog {
  private readonly lastProgress = new Map<string, number>();
  private unfollow: (() => void) | undefined;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  follow(events: PredictionEvents): void {
    this.unfollow ??= events.subscribeLocal((change) => this.onChange(change));
  }

  close(): void {
    this.unfollow?.();
    this.lastProgress.clear();
  }

  onChange(change: PredictionChange): void {
    if (change.type === "log") {
      this.onLogLine(change.id, change.line);
      return;
    }
    const p = change.prediction;
    const fields = { prediction_id: p.id, model: p.model, version: p.version };
    switch (p.status) {
      case "starting":
        if (p.attempts === 0) this.log.info(fields, "prediction created");
        else this.log.info({ ...fields, attempt: p.attempts }, "prediction requeued");
        return;
      case "processing":
        this.log.info(
          { ...fields, attempt: p.attempts, queue_time_s: seconds(p.createdAt, p.startedAt) },
          "prediction started",
        );
        return;
      default:
        this.lastProgress.delete(p.id);
        this.log[p.status === "failed" ? "warn" : "info"](
          {
            ...fields,
            status: p.status,
            attempt: p.attempts,
            predict_time_s: seconds(p.startedAt, p.completedAt),
            total_time_s: seconds(p.createdAt, p.completedAt),
            ...(p.status === "succeeded" ? { outputs: p.output?.length ?? 0 } : {}),
            ...(p.error ? { error: p.error } : {}),
          },
          `prediction ${p.status}`,
        );
    }
  }

  private onLogLine(id: string, line: string): void {
    const m = PROGRESS.exec(line);
    if (!m) return;
    const step = Number(m[1]);
    const total = Number(m[2]);
    const record = { prediction_id: id, step, total };
    const t = this.now();
    const last = this.lastProgress.get(id);
    if (step === total || last === undefined || t - last >= PROGRESS_EVERY_MS) {
      if (step > 0) {
        this.lastProgress.set(id, t);
        this.log.info(record, "prediction progress");
        return;
      }
    }
    this.log.debug(record, "prediction step");
  }
}
