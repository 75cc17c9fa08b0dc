/**
 * The predictions service: create, read, list, cancel and wait, and the lifecycle the worker
 * drives (begin → log → succeed | fail). Every change is written to the store first and
 * announced after, so whatever a subscriber sees can be read back.
 */
import type { FileStore, StoredFile } from "../files/file-store.js";
import { invalidVersion, notFound, throttled, validationFailed } from "../http/problem.js";
import { type InvalidField, type JsonSchema, validate } from "../models/json-schema.js";
import { isVersionOf, type ModelAdapter, type OutputFile, type PredictionPreview } from "../models/model.js";
import type { JobQueue } from "../queue/queue.js";
import type { ListPosition, PredictionStore, WebhookDelivery } from "../store/store.js";
import { checkWebhookUrl } from "../webhooks/targets.js";
import type { PredictionEvents } from "./events.js";
import { formatMicros, newCapabilityKey, newPredictionId, parseMicros, timestamp } from "./ids.js";
import {
  isTerminal,
  type PredictionRecord,
  type PredictionStatus,
  UNFINISHED_STATUSES,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from "./prediction.js";
import type { UrlBase } from "./serialize.js";

export interface ServiceLimits {
  queueMax: number;
  /** Most unfinished predictions of one account. */
  queueMaxPerToken: number;
  /** ms after completion; null keeps outputs forever. */
  outputRetentionMs: number | null;
  /** ms after creation; null: no server-side limit. */
  maxRunTimeMs: number | null;
  /** Accept webhooks to loopback and private addresses. */
  webhookAllowPrivate: boolean;
}

export interface CreateInput {
  /** The request body, already parsed (an object). */
  body: Record<string, unknown>;
  /** Set for POST /models/{owner}/{name}/predictions; then the body has no version. */
  model?: ModelAdapter;
  /** Cancel-After, in ms. */
  cancelAfterMs?: number;
  idempotencyKey?: string;
}

export interface ListInput {
  cursor?: string;
  pageSize: number;
  status?: PredictionStatus;
  model?: string;
  version?: string;
  createdAfter?: string;
  createdBefore?: string;
}

export interface ListPage {
  results: PredictionRecord[];
  next: string | null;
  previous: string | null;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** How often a worker on a shared queue checks that the prediction it runs is still its own to run. */
const WATCH_MS = 2000;
/** A prediction unfinished this long with no job in the shared queue lost its job: it is queued again. */
const LOST_JOB_MS = 60_000;
/** How long an Idempotency-Key keeps returning its prediction (as payment APIs do: a day). */
const IDEMPOTENCY_KEY_MS = 24 * 3_600_000;

/** Longest webhook URL accepted: browsers' and proxies' practical limit; the URL is stored and sent. */
const MAX_WEBHOOK_URL_LENGTH = 2048;

const requestProperties: Record<string, JsonSchema> = {
  input: { type: "object" },
  webhook: { type: "string", maxLength: MAX_WEBHOOK_URL_LENGTH },
  webhook_events_filter: { type: "array", items: { type: "string", enum: WEBHOOK_EVENTS } },
  // Deprecated by Replicate, still sent by python's stream(): accepted and ignored (urls.stream is always given).
  stream: { type: "boolean" },
  // The older python client's name for a completed-only webhook.
  webhook_completed: { type: "string", maxLength: MAX_WEBHOOK_URL_LENGTH },
};

/** The body of POST /predictions, as the published request schema has it (additionalProperties: false). */
const VERSION_REQUEST: JsonSchema = {
  type: "object",
  required: ["version", "input"],
  additionalProperties: false,
  properties: { version: { type: "string" }, ...requestProperties },
};

/** POST /models/{owner}/{name}/predictions: the same minus version. */
const MODEL_REQUEST: JsonSchema = {
  type: "object",
  required: ["input"],
  additionalProperties: false,
  properties: requestProperties,
};

function encodeCursor(direction: "next" | "previous", p: ListPosition): string {
  return Buffer.from(JSON.stringify({ d: direction === "next" ? "n" : "p", c: p.createdAt, i: p.id })).toString(
    "base64url",
  );
}

function decodeCursor(cursor: string): { direction: "next" | "previous"; position: ListPosition } | undefined {
  try {
    const v = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as {
      d?: unknown;
      c?: unknown;
      i?: unknown;
    };
    if ((v.d !== "n" && v.d !== "p") || typeof v.c !== "string" || typeof v.i !== "string") return undefined;
    return { direction: v.d === "n" ? "next" : "previous", position: { createdAt: v.c, id: v.i } };
  } catch {
    return undefined;
  }
}

/** A run of a prediction in this process. */
interface Run {
  controller: AbortController;
  /** The prediction's attempt count this run set when it began: only this run may finish it. */
  attempt: number;
  watch: NodeJS.Timeout | undefined;
}

export class PredictionService {
  private readonly running = new Map<string, Run>();
  private readonly deadlines = new Map<string, NodeJS.Timeout>();
  private readonly closing = new AbortController();
  private readonly stopFollowing: () => void;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: PredictionStore,
    private readonly queue: JobQueue,
    private readonly files: FileStore,
    readonly events: PredictionEvents,
    readonly models: readonly ModelAdapter[],
    private readonly limits: ServiceLimits,
    private readonly log: (line: string) => void = () => {},
  ) {
    // A cancel made on another node reaches the run here through the events.
    this.stopFollowing = this.events.subscribeAll((change) => {
      if (change.type !== "status" || !isTerminal(change.prediction.status)) return;
      this.running.get(change.prediction.id)?.controller.abort("canceled");
    });
  }

  findModel(owner: string, name: string): ModelAdapter | undefined {
    return this.models.find((m) => m.model.owner === owner && m.model.name === name);
  }

  /** A version reference: a 64-hex id, owner/name:<id>, or owner/name (the model's latest version). */
  resolveVersion(ref: string): ModelAdapter | undefined {
    const colon = ref.lastIndexOf(":");
    if (colon >= 0) {
      const name = ref.slice(0, colon);
      const id = ref.slice(colon + 1);
      const m = HEX64.test(id) ? this.models.find((a) => isVersionOf(a, id)) : undefined;
      return m && name === `${m.model.owner}/${m.model.name}` ? m : undefined;
    }
    if (HEX64.test(ref)) return this.models.find((a) => isVersionOf(a, ref));
    const [owner, name, extra] = ref.split("/");
    return owner && name && extra === undefined ? this.findModel(owner, name) : undefined;
  }

  async create(account: string, req: CreateInput, base: UrlBase): Promise<PredictionRecord> {
    const { body } = req;
    // Every violation is reported at once, the body's and the input's, as Replicate's validator does.
    const errors: InvalidField[] = validate(req.model ? MODEL_REQUEST : VERSION_REQUEST, body);
    const version = body["version"];
    const adapter = req.model ?? (typeof version === "string" ? this.resolveVersion(version) : undefined);
    const input = body["input"] as Record<string, unknown>;
    const inputIsObject = typeof input === "object" && input !== null && !Array.isArray(input);
    if (adapter && inputIsObject) errors.push(...adapter.validateInput(input));
    let webhook = (body["webhook"] as string | undefined) ?? null;
    let filter = (body["webhook_events_filter"] as WebhookEvent[] | undefined) ?? null;
    if (!webhook && typeof body["webhook_completed"] === "string") {
      webhook = body["webhook_completed"];
      filter ??= ["completed"];
    }
    const webhookField = body["webhook"] === undefined ? "webhook_completed" : "webhook";
    if (webhook !== null && !isHttpUrl(webhook)) {
      errors.push({
        type: "format",
        field: webhookField,
        description: "Does not match format 'uri': an absolute http or https URL is required",
      });
    } else if (webhook !== null) {
      try {
        checkWebhookUrl(new URL(webhook), this.limits.webhookAllowPrivate);
      } catch (err) {
        errors.push({ type: "webhook_target", field: webhookField, description: (err as Error).message });
      }
    }
    if (errors.length > 0) throw validationFailed(errors);
    if (!adapter) throw invalidVersion();
    if (filter) filter = WEBHOOK_EVENTS.filter((e) => filter?.includes(e));

    if (req.idempotencyKey) {
      const earlier = await this.store.findByIdempotencyKey(account, req.idempotencyKey);
      if (earlier) return earlier;
    }

    const unfinished = await this.store.countUnfinished();
    if (unfinished >= this.limits.queueMax) {
      throw throttled(10, `The queue is full (${unfinished} predictions waiting or running). Try again in ~10s.`);
    }
    const mine = await this.store.countUnfinished(account);
    if (mine >= this.limits.queueMaxPerToken) {
      throw throttled(
        10,
        `This token already has ${mine} predictions waiting or running, the most one token may have (SDSERVE_QUEUE_MAX_PER_TOKEN). Try again when one has finished.`,
      );
    }

    // Unknown input keys are accepted and ignored (spec §3.1): not stored, so they cost nothing later.
    const known = (adapter.schemas["Input"] as JsonSchema | undefined)?.properties ?? {};
    const storedInput = Object.fromEntries(Object.entries(input).filter(([key]) => Object.hasOwn(known, key)));
    const createdAt = timestamp();
    const lifetimes = [req.cancelAfterMs, this.limits.maxRunTimeMs ?? undefined].filter(
      (v): v is number => v !== undefined,
    );
    const deadline = lifetimes.length > 0 ? formatMicros(parseMicros(createdAt) + Math.min(...lifetimes) * 1000) : null;
    const prediction: PredictionRecord = {
      id: newPredictionId(),
      account,
      model: `${adapter.model.owner}/${adapter.model.name}`,
      version: adapter.version.id,
      input: storedInput,
      logs: "",
      output: null,
      error: null,
      status: "starting",
      dataRemoved: false,
      createdAt,
      startedAt: null,
      completedAt: null,
      webhook,
      webhookEventsFilter: webhook ? filter : null,
      deadline,
      apiBase: base.api,
      origin: base.origin,
      filesKey: newCapabilityKey(),
      streamKey: newCapabilityKey(),
      attempts: 0,
    };
    const inserted = await this.store.insert(prediction, req.idempotencyKey);
    // The same key won by a concurrent create: that prediction is the answer, this one never existed.
    if (inserted.id !== prediction.id) return inserted;
    await this.queue.enqueue(prediction.id);
    this.armDeadline(prediction);
    this.events.publish({ type: "status", prediction });
    return prediction;
  }

  /** The prediction if `account` owns it; another account's id is as unknown as a made-up one. */
  async get(account: string, id: string): Promise<PredictionRecord> {
    const p = await this.store.get(id);
    if (!p || p.account !== account) throw notFound();
    return p;
  }

  async list(account: string, q: ListInput): Promise<ListPage> {
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    if (q.cursor !== undefined && !cursor) {
      throw validationFailed([{ type: "invalid_cursor", field: "cursor", description: "cursor is not valid" }]);
    }
    const filters = {
      account,
      status: q.status,
      model: q.model,
      version: q.version,
      createdAfter: q.createdAfter,
      createdBefore: q.createdBefore,
    };
    const limit = q.pageSize;
    const rows = await this.store.list({
      ...filters,
      limit: limit + 1,
      after: cursor?.direction === "next" ? cursor.position : undefined,
      before: cursor?.direction === "previous" ? cursor.position : undefined,
    });
    const position = (p: PredictionRecord): ListPosition => ({ createdAt: p.createdAt, id: p.id });
    let results: PredictionRecord[];
    let hasNewer: boolean;
    let hasOlder: boolean;
    if (cursor?.direction === "previous") {
      // Rows just newer than the boundary, newest first; an extra one at the front means more beyond.
      hasNewer = rows.length > limit;
      results = hasNewer ? rows.slice(1) : rows;
      hasOlder = true;
    } else {
      hasOlder = rows.length > limit;
      results = rows.slice(0, limit);
      hasNewer = cursor !== undefined;
    }
    const first = results[0];
    const last = results[results.length - 1];
    return {
      results,
      next: hasOlder && last ? encodeCursor("next", position(last)) : null,
      previous: hasNewer && first ? encodeCursor("previous", position(first)) : null,
    };
  }

  /** Cancel: idempotent; a prediction already finished comes back unchanged (spec §2.6). */
  async cancel(account: string, id: string): Promise<PredictionRecord> {
    const p = await this.get(account, id);
    if (isTerminal(p.status)) return p;
    return (await this.cancelNow(id, undefined)) ?? (await this.get(account, id));
  }

  private async cancelNow(id: string, reason: string | undefined): Promise<PredictionRecord | undefined> {
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
   * Resolves with the prediction once it is terminal, or at `untilMs` (epoch ms; Infinity for
   * no limit) with what it is then, or at once when the server shuts down.
   */
  waitForCompletion(id: string, untilMs: number): Promise<PredictionRecord | undefined> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        unsubscribe();
        clearTimeout(timer);
        this.closing.signal.removeEventListener("abort", finish);
        this.store.get(id).then(resolve, () => resolve(undefined));
      };
      const unsubscribe = this.events.subscribe(id, (change) => {
        if (change.type === "status" && isTerminal(change.prediction.status)) finish();
      });
      // No deadline (Infinity): wait for the end, or for shutdown.
      const timer = Number.isFinite(untilMs) ? setTimeout(finish, Math.max(0, untilMs - Date.now())) : undefined;
      this.closing.signal.addEventListener("abort", finish);
      // It may have finished before the subscription began.
      this.store.get(id).then((p) => {
        if (!p || isTerminal(p.status)) finish();
      }, finish);
    });
  }

  /** How many predictions this model has had (the model object's run_count). */
  runCount(model: ModelAdapter): Promise<number> {
    return this.store.countByModel(`${model.model.owner}/${model.model.name}`);
  }

  async webhookDeliveries(account: string, id: string): Promise<WebhookDelivery[]> {
    await this.get(account, id);
    return this.store.webhookDeliveries(id);
  }

  /** An output file of a prediction in hand (for responses that inline the bytes). */
  async outputFile(p: PredictionRecord, name: string): Promise<StoredFile | undefined> {
    if (!p.output?.includes(name) || p.dataRemoved || this.expired(p)) return undefined;
    return this.files.get(p.id, name);
  }

  /**
   * An output file, by its capability key: the file, or where to fetch it (a presigned URL, valid
   * for at most an hour and never past retention); "gone" once retention removed it.
   */
  async file(filesKey: string, name: string): Promise<StoredFile | { redirect: string } | "gone" | undefined> {
    const p = await this.store.findByFilesKey(filesKey);
    if (!p?.output?.includes(name)) return p?.dataRemoved ? "gone" : undefined;
    if (p.dataRemoved || this.expired(p)) return "gone";
    if (this.files.url) {
      const keep = this.limits.outputRetentionMs;
      const left =
        keep === null || p.completedAt === null ? 3600 : (parseMicros(p.completedAt) / 1000 + keep - Date.now()) / 1000;
      const url = await this.files.url(p.id, name, Math.min(3600, left));
      if (url) return { redirect: url };
    }
    return this.files.get(p.id, name);
  }

  findByStreamKey(key: string): Promise<PredictionRecord | undefined> {
    return this.store.findByStreamKey(key);
  }

  private expired(p: PredictionRecord): boolean {
    const keep = this.limits.outputRetentionMs;
    return keep !== null && p.completedAt !== null && parseMicros(p.completedAt) / 1000 + keep <= Date.now();
  }

  // ---- lifecycle, driven by the worker -------------------------------------------------

  /**
   * Marks a queued prediction processing; undefined if it is no longer to be run (canceled
   * meanwhile, or begun by another worker). A prediction found processing was running when its
   * process died: it runs again once, and fails with a clear error if it was already a rerun.
   */
  async begin(id: string): Promise<{ prediction: PredictionRecord; signal: AbortSignal; attempt: number } | undefined> {
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

  /** Forgets a run of this process; true if it was the run that holds the prediction. */
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

  // ---- start, background work, shutdown ------------------------------------------------

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
      if (p.createdAt > youngest) continue;
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

  /** Starts the sweeper: retention, and old idempotency keys. */
  startBackground(): void {
    const keep = this.limits.outputRetentionMs;
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
    const keep = this.limits.outputRetentionMs;
    if (keep === null) return 0;
    const ids = await this.store.completedBefore(formatMicros((Date.now() - keep) * 1000));
    for (const id of ids) {
      await this.files.removeAll(id);
      // Not announced: nothing follows a finished prediction (its webhook sent `completed` already).
      await this.store.update(id, { dataRemoved: true, input: {}, output: null, logs: "" });
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
        this.cancelNow(
          p.id,
          "Prediction canceled: it reached its deadline (Cancel-After or the server's maximum run time).",
        ).catch((err: unknown) => this.log(`deadline cancel of ${p.id} failed: ${String(err)}`));
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

  get closingSignal(): AbortSignal {
    return this.closing.signal;
  }
}

const LOCAL_RERUN = "sdserve restarted while this prediction was running; running it again.";
const SHARED_RERUN = "The worker running this prediction stopped before it finished; running it again.";
const LOCAL_TWICE = "sdserve stopped twice while this prediction was running, so it was not run a third time.";
const SHARED_TWICE =
  "The workers running this prediction stopped twice before it finished, so it was not run a third time.";
const LOCAL_STOPPED = "sdserve stopped before this prediction finished; it runs again when sdserve restarts.";
const SHARED_STOPPED =
  "The worker running this prediction stopped before it finished; it runs again on another worker.";

function isHttpUrl(text: string): boolean {
  // The URL parser quietly percent-encodes control characters and spaces; the webhook is kept
  // and echoed as sent, so such a string is refused rather than stored (PostgreSQL rejects a NUL).
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
  }
  try {
    const u = new URL(text);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}
