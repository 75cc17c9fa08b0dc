/**
 * Webhook delivery (spec §5). For each prediction with a webhook: `start` when it is created,
 * `logs` and `output` as they change (logs at most one per 500 ms), `completed` once at the end;
 * only the events in its filter; in order, and nothing after `completed`. The body is the
 * prediction exactly as GET returns it, compact, signed with the account's secret. Only
 * `completed` is retried (with backoff, the last try about a minute after completion). A webhook
 * never changes the prediction: every failure ends in the delivery log, nowhere else.
 *
 * Each process sends the webhooks of the changes it makes (with many processes: `start` from the
 * API node that took the create, the rest from the worker that ran it). With a shared queue the
 * tries of `completed` are a durable job (webhooks/jobs.ts): they go on after a restart, on
 * whichever process is up.
 */
import http from "node:http";
import https from "node:https";
import type { PredictionChange, PredictionEvents } from "../predictions/events.js";
import { formatMicros, timestamp } from "../predictions/ids.js";
import { isTerminal, type PredictionRecord, type WebhookEvent } from "../predictions/prediction.js";
import { toApiPrediction } from "../predictions/serialize.js";
import type { PredictionStore, WebhookDelivery } from "../store/store.js";
import { completedWebhookId, newWebhookId, newWebhookSecret, signWebhook } from "./signing.js";
import { checkWebhookUrl, guardedLookup } from "./targets.js";

/** Replicate's documented default: new outputs, and the end. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEvent[] = ["output", "completed"];

/** Where the tries of `completed` are scheduled when they must outlive this process. */
export interface CompletedDeliveries {
  /** Schedules the tries of prediction `id`'s `completed` message (once per prediction). */
  schedule(id: string, webhookId: string): Promise<void>;
}

export interface WebhookOptions {
  allowPrivate: boolean;
  /** A durable queue for `completed` (shared queues); absent: the tries run in this process. */
  durable?: CompletedDeliveries;
  /** Waits before each retry of `completed`; their sum is about a minute. */
  retryDelaysMs?: readonly number[];
  /**
   * One deadline for the whole of each attempt (resolving, connecting, sending, the response's
   * headers and body), not an idle timeout: a receiver that trickles a byte at a time cannot
   * hold a delivery, or the queue of deliveries behind it, open for long.
   */
  timeoutMs?: number;
  log?: (line: string) => void;
  userAgent?: string;
  /** Told of every attempt, after it is recorded (for /metrics). */
  onDelivery?: (delivery: WebhookDelivery) => void;
}

export const RETRY_DELAYS_MS: readonly number[] = [1000, 2000, 4000, 8000, 15_000, 30_000];
const LOGS_INTERVAL_MS = 500;
/** How long after completion an undelivered `completed` is still sent after a restart. */
const RESUME_WINDOW_MS = 15 * 60_000;

interface Tracked {
  /** Deliveries for one prediction go out one after another. */
  chain: Promise<void>;
  logsTimer: NodeJS.Timeout | undefined;
  lastLogsAt: number;
  started: boolean;
  completed: boolean;
}

export class WebhookDispatcher {
  private readonly tracked = new Map<string, Tracked>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly stopping = new AbortController();
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly store: PredictionStore,
    private readonly events: PredictionEvents,
    private readonly opts: WebhookOptions,
  ) {}

  start(): void {
    this.unsubscribe ??= this.events.subscribeLocal((change) => this.onChange(change));
  }

  /**
   * After a restart: `completed` messages of recently finished predictions that were neither
   * delivered nor given up on are sent again, with the same webhook-id, continuing the retries.
   */
  async resume(): Promise<number> {
    // Durable tries are still in their queue.
    if (this.opts.durable) return 0;
    const since = formatMicros((Date.now() - RESUME_WINDOW_MS) * 1000);
    let resumed = 0;
    for (const p of await this.store.finishedWithWebhookSince(since)) {
      if (this.tracked.has(p.id) || !(p.webhookEventsFilter ?? DEFAULT_WEBHOOK_EVENTS).includes("completed")) continue;
      const tries = (await this.store.webhookDeliveries(p.id)).filter((d) => d.event === "completed");
      if (tries.some((d) => d.delivered || d.final)) continue;
      const last = tries[tries.length - 1];
      const t: Tracked = {
        chain: Promise.resolve(),
        logsTimer: undefined,
        lastLogsAt: 0,
        started: true,
        completed: true,
      };
      this.tracked.set(p.id, t);
      t.chain = t.chain.then(async () => {
        await this.deliver(p, "completed", {
          webhookId: last?.webhookId ?? completedWebhookId(p.id),
          attempt: (last?.attempt ?? 0) + 1,
        }).catch((err: unknown) => this.opts.log?.(`webhook for ${p.id}: ${String(err)}`));
        this.tracked.delete(p.id);
      });
      resumed++;
    }
    return resumed;
  }

  /** The account's signing secret, made on first use and kept in the store across restarts. */
  async secretFor(account: string): Promise<string> {
    const key = `webhook-secret:${account}`;
    // Two processes (or requests) making it at once keep one: the first stored.
    return (await this.store.getSetting(key)) ?? (await this.store.setSettingIfAbsent(key, newWebhookSecret()));
  }

  private onChange(change: PredictionChange): void {
    if (this.stopping.signal.aborted) return;
    if (change.type === "log") {
      const t = this.tracked.get(change.id);
      if (t && !t.completed) this.scheduleLogs(change.id, t);
      return;
    }
    const p = change.prediction;
    if (!p.webhook) return;
    const wants = (e: WebhookEvent) => (p.webhookEventsFilter ?? DEFAULT_WEBHOOK_EVENTS).includes(e);
    let t = this.tracked.get(p.id);
    if (!t) {
      t = { chain: Promise.resolve(), logsTimer: undefined, lastLogsAt: 0, started: false, completed: false };
      this.tracked.set(p.id, t);
      // A worker's first change of a prediction another process created: `start` is that
      // process's to send, and goes first; wait (a while) until it has been tried.
      if (this.opts.durable && wants("start") && !(p.status === "starting" && p.attempts === 0)) {
        t.chain = this.startTried(p.id);
      }
    }
    if (t.completed) return;
    if (!t.started && p.status === "starting" && p.attempts === 0) {
      t.started = true;
      if (wants("start")) this.enqueue(t, p.id, "start", p);
    }
    if (isTerminal(p.status)) {
      t.completed = true;
      clearTimeout(t.logsTimer);
      if (p.status === "succeeded" && p.output?.length && wants("output")) this.enqueue(t, p.id, "output", p);
      if (wants("completed")) this.enqueue(t, p.id, "completed", p);
      t.chain = t.chain.then(() => {
        this.tracked.delete(p.id);
      });
    }
  }

  /** Resolves once the prediction's `start` message has been tried (or after 10 s, or at stop). */
  private async startTried(id: string): Promise<void> {
    for (let i = 0; i < 100 && !this.stopping.signal.aborted; i++) {
      const tries = await this.store.webhookDeliveries(id).catch(() => []);
      if (tries.some((d) => d.event === "start")) return;
      await this.sleep(100);
    }
  }

  private scheduleLogs(id: string, t: Tracked): void {
    if (t.logsTimer) return;
    const wait = Math.max(0, t.lastLogsAt + LOGS_INTERVAL_MS - Date.now());
    t.logsTimer = setTimeout(() => {
      t.logsTimer = undefined;
      t.lastLogsAt = Date.now();
      if (!t.completed) this.enqueue(t, id, "logs");
    }, wait);
  }

  /**
   * Queues one message. Its body is `snapshot` (the state the event is about: `start` shows
   * the prediction starting), or for `logs` the stored prediction when its turn comes.
   */
  private enqueue(t: Tracked, id: string, event: WebhookEvent, snapshot?: PredictionRecord): void {
    t.chain = t.chain.then(async () => {
      const p = snapshot ?? (await this.store.get(id));
      if (!p?.webhook) return;
      if (event === "logs" && !(p.webhookEventsFilter ?? DEFAULT_WEBHOOK_EVENTS).includes("logs")) return;
      // Finished meanwhile: the `completed` message right behind carries every line.
      if (event === "logs" && isTerminal(p.status)) return;
      await this.deliver(p, event).catch((err: unknown) => this.opts.log?.(`webhook for ${id}: ${String(err)}`));
    });
  }

  /**
   * One try of a durable `completed` message (from its job): sends the prediction as stored now,
   * records the attempt, and says whether it was the last (delivered, refused, or out of tries).
   */
  async tryCompleted(id: string, webhookId: string, queueAttempt: number): Promise<boolean> {
    const p = await this.store.get(id);
    if (!p?.webhook) return true;
    // The queue counts a try only once its job gives up on it: a process killed between recording
    // a try and that leaves the count behind, and the job runs again. The log of tries is the truth.
    const recorded = (await this.store.webhookDeliveries(id)).filter((d) => d.webhookId === webhookId).length;
    const attempt = Math.max(queueAttempt, recorded + 1);
    const body = JSON.stringify(toApiPrediction(p, { api: p.apiBase, origin: p.origin }));
    const secret = await this.secretFor(p.account);
    const { refused, ...result } = await this.post(p.webhook, webhookId, body, secret);
    const final = result.delivered || Boolean(refused) || attempt > this.retryDelays.length;
    const delivery: WebhookDelivery = { webhookId, event: "completed", attempt, at: timestamp(), ...result, final };
    await this.store.recordWebhookDelivery(p.id, delivery);
    this.opts.onDelivery?.(delivery);
    return final;
  }

  /** Waits before each retry of `completed`. */
  get retryDelays(): readonly number[] {
    return this.opts.retryDelaysMs ?? RETRY_DELAYS_MS;
  }

  /** Sends one message, retrying `completed`; `from` continues the tries of a message begun before a restart. */
  private async deliver(
    p: PredictionRecord,
    event: WebhookEvent,
    from?: { webhookId: string; attempt: number },
  ): Promise<void> {
    if (event === "completed" && this.opts.durable && !from) {
      await this.opts.durable.schedule(p.id, completedWebhookId(p.id));
      return;
    }
    const body = JSON.stringify(toApiPrediction(p, { api: p.apiBase, origin: p.origin }));
    const secret = await this.secretFor(p.account);
    const webhookId = from?.webhookId ?? (event === "completed" ? completedWebhookId(p.id) : newWebhookId());
    const delays = event === "completed" ? this.retryDelays : [];
    for (let attempt = from?.attempt ?? 1; attempt <= delays.length + 1; attempt++) {
      if (this.stopping.signal.aborted) return;
      const { refused, ...result } = await this.post(p.webhook as string, webhookId, body, secret);
      const final = result.delivered || Boolean(refused) || attempt > delays.length;
      const delivery: WebhookDelivery = { webhookId, event, attempt, at: timestamp(), ...result, final };
      await this.store.recordWebhookDelivery(p.id, delivery);
      this.opts.onDelivery?.(delivery);
      if (final) return;
      await this.sleep(delays[attempt - 1] as number);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }

  /** One signed POST; no redirects followed; 2xx is delivered. */
  private post(
    target: string,
    webhookId: string,
    body: string,
    secret: string,
  ): Promise<{ statusCode: number | null; error: string | null; delivered: boolean; refused?: boolean }> {
    const url = new URL(target);
    try {
      checkWebhookUrl(url, this.opts.allowPrivate);
    } catch (err) {
      return Promise.resolve({ statusCode: null, error: (err as Error).message, delivered: false, refused: true });
    }
    const ts = Math.floor(Date.now() / 1000);
    const client = url.protocol === "https:" ? https : http;
    return new Promise((resolve) => {
      let status: number | undefined;
      let failure: Error | undefined;
      const req = client.request(
        url,
        {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            "Content-Length": Buffer.byteLength(body),
            "User-Agent": this.opts.userAgent ?? "sdserve",
            "webhook-id": webhookId,
            "webhook-timestamp": String(ts),
            "webhook-signature": signWebhook(secret, webhookId, ts, body),
          },
          lookup: guardedLookup(this.opts.allowPrivate),
          signal: this.stopping.signal,
        },
        (res) => {
          status = res.statusCode ?? 0;
          // The answer is its status; the body is read and dropped, within the same deadline.
          res.on("error", () => undefined);
          res.resume();
        },
      );
      const deadline = setTimeout(() => {
        failure = new Error("timed out");
        req.destroy(failure);
      }, this.opts.timeoutMs ?? 5000);
      req.on("error", (err) => {
        failure ??= err;
      });
      // Settled once the exchange is over (answered, failed, or cut at the deadline).
      req.on("close", () => {
        clearTimeout(deadline);
        if (failure || status === undefined) {
          const err = failure ?? new Error("connection closed before an answer");
          resolve({
            statusCode: null,
            error: err.message,
            delivered: false,
            refused: err.name === "WebhookTargetError",
          });
          return;
        }
        const delivered = status >= 200 && status < 300;
        resolve({ statusCode: status, error: delivered ? null : `HTTP ${status}`, delivered });
      });
      req.end(body);
    });
  }

  /** Stops sending: pending retries and throttled logs are dropped, requests in flight aborted. */
  stop(): void {
    this.stopping.abort();
    this.unsubscribe?.();
    for (const t of this.timers) clearTimeout(t);
    for (const t of this.tracked.values()) clearTimeout(t.logsTimer);
  }
}
