/**
 * The predictions service, as the API sees it: create, get, list, cancel and wait. Version
 * references are resolved in versions.ts; running predictions is lifecycle.ts's; output files are
 * output-files.ts's; an account's settings are accounts.ts's. Refusals are domain errors
 * (errors.ts), made into HTTP problems at the edge.
 */
import type { A1111Settings, ModelAdapter } from "../models/model.js";
import type { InvalidField, JsonSchema } from "../schemas/json-schema.js";
import type { ListPosition, PredictionStore, WebhookDelivery } from "../store/store.js";
import { checkWebhookUrl, isWebhookUrl } from "../webhooks/targets.js";
import { AccountState } from "./accounts.js";
import { decodeCursor, encodeCursor } from "./cursors.js";
import {
  InvalidInputError,
  NotFoundError,
  QueueFullError,
  TokenQueueFullError,
  UnknownVersionError,
} from "./errors.js";
import type { PredictionEvents } from "./events.js";
import { formatMicros, newCapabilityKey, newPredictionId, parseMicros, timestamp } from "./ids.js";
import type { PredictionLifecycle } from "./lifecycle.js";
import type { OutputFiles } from "./output-files.js";
import {
  isTerminal,
  type PredictionRecord,
  type PredictionStatus,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from "./prediction.js";
import type { UrlBase } from "./serialize.js";
import type { SettledPredictionCache } from "./settled-cache.js";
import { findModel, resolveVersion } from "./versions.js";

export interface ServiceLimits {
  queueMax: number;
  /** Most unfinished predictions of one account. */
  queueMaxPerToken: number;
  /** ms after creation; null: no server-side limit. */
  maxRunTimeMs: number | null;
  /** Accept webhooks to loopback and private addresses. */
  webhookAllowPrivate: boolean;
}

export interface CreateInput {
  /** The request body (POST /predictions' fields), as parsed. */
  body: Record<string, unknown>;
  /** What the route's request schema found wrong with `body`: reported with the input's violations, all at once. */
  invalid?: readonly InvalidField[];
  /** Set for POST /models/{owner}/{name}/predictions; then the body has no version. */
  model?: ModelAdapter;
  /** Cancel-After, in ms. */
  cancelAfterMs?: number;
  idempotencyKey?: string;
  /** The prompt syntax the API calls for (A1111's on /sdapi/v1); kept with the prediction. */
  promptSyntax?: "a1111";
  /** A1111's settings of an /sdapi/v1 call (hires fix, clip skip); kept with the prediction. */
  a1111?: A1111Settings;
}

export interface ListInput {
  cursor?: string;
  pageSize: number;
  status?: PredictionStatus;
  model?: string;
  version?: string;
  /** Stored timestamps (ids.ts normalizeTimestamp). */
  createdAfter?: string;
  createdBefore?: string;
}

export interface ListPage {
  results: PredictionRecord[];
  next: string | null;
  previous: string | null;
}

export class PredictionService {
  /** The account's settings and its A1111 calls' predictions at a glance. */
  readonly accounts: AccountState;

  constructor(
    private readonly store: PredictionStore,
    readonly lifecycle: PredictionLifecycle,
    readonly outputs: OutputFiles,
    readonly events: PredictionEvents,
    readonly models: readonly ModelAdapter[],
    private readonly limits: ServiceLimits,
    /** The served JSON of finished predictions, for the read path; absent: every read goes to the store. */
    readonly settled?: SettledPredictionCache,
  ) {
    this.accounts = new AccountState(store);
  }

  findModel(owner: string, name: string): ModelAdapter | undefined {
    return findModel(this.models, owner, name);
  }

  async create(account: string, req: CreateInput, base: UrlBase): Promise<PredictionRecord> {
    const { body } = req;
    // Every violation is reported at once, the body's and the input's, as Replicate's validator does.
    const errors: InvalidField[] = [...(req.invalid ?? [])];
    const version = body["version"];
    const adapter = req.model ?? (typeof version === "string" ? resolveVersion(this.models, version) : undefined);
    const input = body["input"] as Record<string, unknown>;
    const inputIsObject = typeof input === "object" && input !== null && !Array.isArray(input);
    if (adapter && inputIsObject) errors.push(...adapter.validateInput(input));
    const webhookGiven = typeof body["webhook"] === "string";
    let webhook = webhookGiven ? (body["webhook"] as string) : null;
    let filter = Array.isArray(body["webhook_events_filter"])
      ? (body["webhook_events_filter"] as WebhookEvent[])
      : null;
    if (!webhook && typeof body["webhook_completed"] === "string") {
      webhook = body["webhook_completed"];
      filter ??= ["completed"];
    }
    const webhookField = body["webhook"] === undefined ? "webhook_completed" : "webhook";
    if (webhook !== null && !isWebhookUrl(webhook)) {
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
    if (errors.length > 0) throw new InvalidInputError(errors);
    if (!adapter) throw new UnknownVersionError("The specified version does not exist");
    if (filter) filter = WEBHOOK_EVENTS.filter((e) => filter?.includes(e));

    if (req.idempotencyKey) {
      const earlier = await this.store.findByIdempotencyKey(account, req.idempotencyKey);
      if (earlier) return earlier;
    }

    const unfinished = await this.store.countUnfinished();
    if (unfinished >= this.limits.queueMax) throw new QueueFullError(unfinished);
    const mine = await this.store.countUnfinished(account);
    if (mine >= this.limits.queueMaxPerToken) throw new TokenQueueFullError(mine);

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
      ...(req.promptSyntax ? { promptSyntax: req.promptSyntax } : {}),
      ...(req.a1111 ? { a1111: req.a1111 } : {}),
    };
    const inserted = await this.store.insert(prediction, req.idempotencyKey);
    // The same key won by a concurrent create: that prediction is the answer, this one never existed.
    if (inserted.id !== prediction.id) return inserted;
    await this.lifecycle.accepted(prediction);
    return prediction;
  }

  /** The prediction if `account` owns it; another account's id is as unknown as a made-up one. */
  async get(account: string, id: string): Promise<PredictionRecord> {
    const p = await this.store.get(id);
    if (!p || p.account !== account) throw new NotFoundError(`No prediction ${id}`);
    return p;
  }

  async list(account: string, q: ListInput): Promise<ListPage> {
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    if (q.cursor !== undefined && !cursor) {
      throw new InvalidInputError([{ type: "invalid_cursor", field: "cursor", description: "cursor is not valid" }]);
    }
    const limit = q.pageSize;
    const rows = await this.store.list({
      account,
      status: q.status,
      model: q.model,
      version: q.version,
      createdAfter: q.createdAfter,
      createdBefore: q.createdBefore,
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
    return (await this.lifecycle.cancel(id)) ?? (await this.get(account, id));
  }

  /**
   * Resolves with the prediction once it is terminal, or at `untilMs` (epoch ms; Infinity for
   * no limit) with what it is then, or at once when the server shuts down.
   */
  waitForCompletion(id: string, untilMs: number): Promise<PredictionRecord | undefined> {
    const closing = this.lifecycle.closingSignal;
    return new Promise((resolve) => {
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        unsubscribe();
        clearTimeout(timer);
        closing.removeEventListener("abort", finish);
        this.store.get(id).then(resolve, () => resolve(undefined));
      };
      const unsubscribe = this.events.subscribe(id, (change) => {
        if (change.type === "status" && isTerminal(change.prediction.status)) finish();
      });
      // No deadline (Infinity): wait for the end, or for shutdown.
      const timer = Number.isFinite(untilMs) ? setTimeout(finish, Math.max(0, untilMs - Date.now())) : undefined;
      closing.addEventListener("abort", finish);
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

  findByStreamKey(key: string): Promise<PredictionRecord | undefined> {
    return this.store.findByStreamKey(key);
  }

  /** Aborted when the server shuts down. */
  get closingSignal(): AbortSignal {
    return this.lifecycle.closingSignal;
  }
}
