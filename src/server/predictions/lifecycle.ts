/**
 * The run lifecycle of predictions: what a worker talks to. begin → log/preview → succeed | fail
 * | interrupted, each fenced by the attempt begin() handed out, so a run that lost its
 * prediction (canceled, or rerun elsewhere after a stall) writes nothing. Also the deadlines
 * (Cancel-After, maximum run time), recovery after a crash or restart, and the watches that keep
 * a run on a shared queue honest. Every change is written to the store first and announced after.
 */
import type { FileStore } from "../files/file-store.js";
import type { OutputFile, PredictionPreview } from "../models/model.js";
import type { JobQueue } from "../queue/queue.js";
import type { PredictionStore } from "../store/store.js";
import type { PredictionEvents } from "./events.js";
import { formatMicros, parseMicros, timestamp } from "./ids.js";
import { isTerminal, type PredictionRecord, UNFINISHED_STATUSES } from "./prediction.js";
import type { SettledPredictionCache } from "./settled-cache.js";

/** How often a worker on a shared queue checks that the prediction it runs is still its own to run. */
const WATCH_MS = 2000;
/** A prediction unfinished this long with no job in the shared queue lost its job: it is queued again. */
const LOST_JOB_MS = 60_000;
/** How long an Idempotency-Key keeps returning its prediction (as payment APIs do: a day). */
const IDEMPOTENCY_KEY_MS = 24 * 3_600_000;

const DEADLINE_REACHED =
  "Prediction canceled: it reached its deadline (Cancel-After or the server's maximum run time).";
const LOCAL_RERUN = "sdserve restarted while this prediction was running; running it again.";
const SHARED_RERUN = "The worker running this prediction stopped before it finished; running it again.";
const LOCAL_TWICE = "sdserve stopped twice while this prediction was running, so it was not run a third time.";
const SHARED_TWICE =
  "The workers running this prediction stopped twice before it finished, so it was not run a third time.";
const LOCAL_STOPPED = "sdserve stopped before this prediction finished; it runs again when sdserve restarts.";
const SHARED_STOPPED =
  "The worker running this prediction stopped before it finished; it runs again on another worker.";

/** A run of a prediction in this process. */
interface Run {
  controller: AbortController;
  /** The prediction's attempt count this run set when it began: only this run may finish it. */
  attempt: number;
  watch: NodeJS.Timeout | undefined;
}

/** What begin() hands the worker. */
export interface RunTicket {
  prediction: PredictionRecord;
  /** Aborted with "canceled" (cancel, deadline, lost to another run) or "shutdown". */
  signal: AbortSignal;
  attempt: number;
}

export class PredictionLifecycle {
  private readonly running = new Map<string, Run>();
  private readonly deadlines = new Map<string, NodeJS.Timeout>();
  private readonly closing = new AbortController();
  private readonly stopFollowing: () => void;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: PredictionStore,
    private readonly queue: JobQueue,
    private readonly files: FileStore,
    private readonly events: PredictionEvents,
    /** ms after completion; null keeps outputs forever. */
    private readonly outputRetentionMs: number | null,
    private readonly log: (line: string) => void = () => {},
    /** The served JSON of finished predictions: what retention rewrites is dropped from it. */
    private readonly settled?: SettledPredictionCache,
  ) {
    // A cancel made on another node reaches the run here through the events.
    this.stopFollowing = this.events.subscribeAll((change) => {
      if (change.type !== "status" || !isTerminal(change.prediction.status)) return;
      this.running.get(change.prediction.id)?.controller.abort("canceled");
    });
  }

  /** Aborted when the server shuts down: waits end, streams close. */
  get closingSignal(): AbortSignal {
    return this.closing.signal;
  }

  /** A new prediction, already stored: queue it and announce it. */
  async accepted(prediction: PredictionRecord): Promise<void> {
    await this.queue.enqueue(prediction.id);
    this.armDeadline(prediction);
    this.events.publish({ type: "status", prediction });
  }

  /** Cancels an unfinished prediction; undefined if it had finished already. */
  async cancel(id: string, reason?: string): Promise<PredictionRecord | undefined> {
    if (reason) await this.store.appendLog(id, reason);
    const canceled = await this.store.update(id, { status: "canceled", completedAt: timestamp() }, UNFINISHED_STATUSES);
    if (!canceled) return undefined;
    this.clearDeadline(id);
    await this.queue.remove(id);
    this.running.get(id)?.controller.abort("canceled");
    this.events.publish({ type: "status", prediction: canceled });
    return canceled;
  }

  /**
   * Marks a queued prediction processing; undefined if it is no longer to be run (canceled
   * meanwhile, or begun by another worker). A prediction found processing was running when its
   * process died: it runs again once, and fails with a clear error if it was already a rerun.
   */
  async begin(id: string): Promise<RunTicket | undefined> {
    const current = await this.store.get(id);
    if (!current || isTerminal(current.status)) return undefined;
    if (current.status === "processing") {
      if (current.attempts >= 2) {
        await this.fail(id, this.queue.shared ? SHARED_TWICE : LOCAL_TWICE);
        return undefined;
      }
      await this.appendLog(id, this.queue.shared ? SHARED_RERUN : LOCAL_RERUN);
    }
    const attempt = current.attempts + 1;
    const prediction = await this.store.update(
      id,
      { status: "processing", startedAt: timestamp(), attempts: attempt },
      UNFINISHED_STATUSES,
      current.attempts,
    );
    if (!prediction) return undefined;
    const controller = new AbortController();
    const run: Run = { controller, attempt, watch: undefined };
    this.running.set(id, run);
    if (this.queue.shared) {
      // The cancel event may be missed (a dropped connection) and a stalled job may be rerun
      // elsewhere while this run goes on: the store says which run holds the prediction.
      run.watch = setInterval(() => {
        this.store.get(id).then(
          (p) => {
            if (p?.status !== "processing" || p.attempts !== attempt) controller.abort("canceled");
          },
          () => undefined,
        );
      }, WATCH_MS);
      run.watch.unref();
      this.armDeadline(prediction);
    }
    this.events.publish({ type: "status", prediction });
    return { prediction, signal: controller.signal, attempt };
  }

  /** Forgets a run of this process, if it is run `attempt` (any run when undefined). */
  private endRun(id: string, attempt: number | undefined): void {
    const run = this.running.get(id);
    if (!run || (attempt !== undefined && run.attempt !== attempt)) return;
    clearInterval(run.watch);
    this.running.delete(id);
  }

  async appendLog(id: string, line: string): Promise<void> {
    await this.store.appendLog(id, line);
    this.events.publish({ type: "log", id, line });
  }

  /** Passes a preview of a running prediction to its followers (nothing is stored). */
  preview(id: string, preview: PredictionPreview): void {
    if (this.running.get(id)?.controller.signal.aborted === false) this.events.publishPreview(id, preview);
  }

  /** Records the outputs of run `attempt` (the one begin() returned), if that run still holds the prediction. */
  async succeed(id: string, outputs: OutputFile[], attempt?: number): Promise<void> {
    this.endRun(id, attempt);
    if (attempt !== undefined) {
      // A run that lost the prediction (rerun elsewhere after a stall) must not write over the files of the one that holds it.
      const current = await this.store.get(id);
      if (current?.status !== "processing" || current.attempts !== attempt) return;
    }
    for (const f of outputs) await this.files.put(id, f.name, f.data, f.contentType);
    const done = await this.store.update(
      id,
      { status: "succeeded", output: outputs.map((f) => f.name), completedAt: timestamp() },
      ["processing"],
      attempt,
    );
    if (!done) {
      // Canceled while the files were written: a canceled prediction has no output.
      if ((await this.store.get(id))?.status === "canceled") await this.files.removeAll(id);
      return;
    }
    this.clearDeadline(id);
    this.events.publish({ type: "status", prediction: done });
  }

  async fail(id: string, error: string, attempt?: number): Promise<void> {
    this.endRun(id, attempt);
    const done = await this.store.update(
      id,
      { status: "failed", error, completedAt: timestamp() },
      attempt === undefined ? UNFINISHED_STATUSES : ["processing"],
      attempt,
    );
    if (!done) return;
    this.clearDeadline(id);
    this.events.publish({ type: "status", prediction: done });
  }

  /**
   * The run stopped because its signal was aborted: by cancel (already recorded) or by shutdown.
   * After a shutdown the prediction is put back in the queue's state: it runs again when the
   * server starts, or at once on another worker of a shared queue.
   */
  async interrupted(id: string, reason: unknown, attempt?: number): Promise<void> {
    this.endRun(id, attempt);
    if (reason !== "shutdown") return;
    const p = await this.store.get(id);
    if (p?.status !== "processing" || (attempt !== undefined && p.attempts !== attempt)) return;
    await this.store.appendLog(id, this.queue.shared ? SHARED_STOPPED : LOCAL_STOPPED);
    await this.store.update(
      id,
      { status: "starting", startedAt: null, attempts: Math.max(0, p.attempts - 1) },
      ["processing"],
      p.attempts,
    );
  }

  /**
   * After a restart: what was queued is queued again, in order; what was running when the
   * process died runs again once (begin() says so in its logs), and fails with a clear error if
   * it was already a rerun. On a shared queue only predictions whose job is gone are queued
   * again (the others are waiting, or running on a worker), and only those older than
   * `minAgeMs` (a create may be between its insert and its enqueue).
   */
  async recover(minAgeMs = 0): Promise<{ requeued: number; failed: number }> {
    let requeued = 0;
    let failed = 0;
    const youngest = formatMicros((Date.now() - minAgeMs) * 1000);
    for (const p of await this.store.unfinished()) {
      // Only the sweeper asks for an age; at start everything counts, even a prediction stamped
      // ahead of this clock (another node's clock, or several creates within one millisecond).
      if (minAgeMs > 0 && p.createdAt > youngest) continue;
      if (this.queue.shared && (await this.queue.has(p.id))) continue;
      if (p.status === "processing" && p.attempts >= 2) {
        await this.fail(p.id, this.queue.shared ? SHARED_TWICE : LOCAL_TWICE);
        failed++;
        continue;
      }
      await this.queue.enqueue(p.id);
      this.armDeadline(p);
      requeued++;
    }
    return { requeued, failed };
  }

  /** Starts the sweeper: retention, old idempotency keys, and (shared queue) lost jobs. */
  startBackground(): void {
    const keep = this.outputRetentionMs;
    const every = keep === null ? 60_000 : Math.min(60_000, Math.max(1000, Math.floor(keep / 4)));
    const sweep = () => {
      this.removeExpiredData().catch((err: unknown) => this.log(`retention sweep failed: ${String(err)}`));
      if (this.queue.shared) {
        this.recover(LOST_JOB_MS).then(
          (r) => r.requeued + r.failed > 0 && this.log(`Requeued ${r.requeued} prediction(s) whose job was lost.`),
          (err: unknown) => this.log(`lost-job sweep failed: ${String(err)}`),
        );
      }
    };
    this.sweeper = setInterval(sweep, every);
    this.sweeper.unref();
    sweep();
  }

  /** Removes inputs, logs and outputs of predictions completed longer ago than the retention period. */
  async removeExpiredData(): Promise<number> {
    await this.store.forgetIdempotencyKeys(formatMicros((Date.now() - IDEMPOTENCY_KEY_MS) * 1000));
    const keep = this.outputRetentionMs;
    if (keep === null) return 0;
    const ids = await this.store.completedBefore(formatMicros((Date.now() - keep) * 1000));
    for (const id of ids) {
      await this.files.removeAll(id);
      // Not announced: nothing follows a finished prediction (its webhook sent `completed` already).
      await this.store.update(id, { dataRemoved: true, input: {}, output: null, logs: "" });
      this.settled?.forget(id);
    }
    return ids.length;
  }

  private armDeadline(p: PredictionRecord): void {
    if (!p.deadline) return;
    this.clearDeadline(p.id);
    const ms = parseMicros(p.deadline) / 1000 - Date.now();
    const timer = setTimeout(
      () => {
        this.deadlines.delete(p.id);
        this.cancel(p.id, DEADLINE_REACHED).catch((err: unknown) =>
          this.log(`deadline cancel of ${p.id} failed: ${String(err)}`),
        );
      },
      Math.max(0, Math.min(ms, 2 ** 31 - 1)),
    );
    timer.unref();
    this.deadlines.set(p.id, timer);
  }

  private clearDeadline(id: string): void {
    clearTimeout(this.deadlines.get(id));
    this.deadlines.delete(id);
  }

  /** Ends waits, stops timers and interrupts running predictions (they run again after a restart). */
  shutdown(): void {
    this.closing.abort();
    clearInterval(this.sweeper);
    for (const t of this.deadlines.values()) clearTimeout(t);
    this.deadlines.clear();
    this.stopFollowing();
    for (const run of this.running.values()) {
      clearInterval(run.watch);
      run.controller.abort("shutdown");
    }
  }
}
