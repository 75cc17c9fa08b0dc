/**
 * Replicate's predictions API: create (also through /models/{owner}/{name}/predictions), get,
 * list and cancel. Registered under /v1 and /replicate/v1; the token's account is on the request.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  MAX_CANCEL_AFTER_MS,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseCancelAfter,
  parsePreferWait,
  urlBaseOf,
} from "../http/headers.js";
import { badJson, HttpProblem, notFound, validationFailed } from "../http/problem.js";
import type { InvalidField } from "../models/json-schema.js";
import type { ModelAdapter } from "../models/model.js";
import { normalizeTimestamp } from "../predictions/ids.js";
import { isTerminal, type PredictionStatus } from "../predictions/prediction.js";
import { toApiPrediction, type UrlBase } from "../predictions/serialize.js";
import type { ListInput, PredictionService } from "../predictions/service.js";

export interface PredictionRoutesOptions {
  /** /v1 or /replicate/v1: the URLs in responses keep the prefix of the request. */
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  maxWaitSeconds: number;
}

const STATUSES: readonly PredictionStatus[] = ["starting", "processing", "succeeded", "failed", "canceled"];
const PAGE_SIZE = 100;

export async function predictionRoutes(app: FastifyInstance, opts: PredictionRoutesOptions): Promise<void> {
  const { service } = opts;
  const base = (req: FastifyRequest): UrlBase => urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);

  async function create(req: FastifyRequest, reply: FastifyReply, model: ModelAdapter | undefined) {
    // Python times out at N + 0.5 s: count the wait from the request's arrival, not from the insert.
    const arrived = Date.now();
    const body = req.body ?? {};
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw badJson();
    const cancelAfter = parseCancelAfter(req.headers["cancel-after"]);
    if (Number.isNaN(cancelAfter)) {
      throw new HttpProblem(
        422,
        "Invalid Cancel-After header",
        `Cancel-After must be a duration from 5s to ${MAX_CANCEL_AFTER_MS / 3_600_000}h, such as 90s, 5m or 1h30m45s`,
      );
    }
    const idempotencyKey = req.headers["idempotency-key"];
    if (typeof idempotencyKey === "string" && idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw new HttpProblem(
        422,
        "Invalid Idempotency-Key header",
        `Idempotency-Key must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
      );
    }
    const wait = parsePreferWait(req.headers.prefer, opts.maxWaitSeconds);
    const urls = base(req);
    let prediction = await service.create(
      req.account,
      {
        body: body as Record<string, unknown>,
        model,
        cancelAfterMs: cancelAfter,
        idempotencyKey: typeof idempotencyKey === "string" && idempotencyKey ? idempotencyKey : undefined,
      },
      urls,
    );
    let asStarting = false;
    if (wait) {
      reply.header("Preference-Applied", wait.applied);
      prediction = (await service.waitForCompletion(prediction.id, arrived + wait.seconds * 1000 - 50)) ?? prediction;
      asStarting = !isTerminal(prediction.status);
    }
    const json = toApiPrediction(prediction, urls, { asStarting });
    return reply.code(201).header("Location", json.urls.get).send(json);
  }

  app.post("/predictions", (req, reply) => create(req, reply, undefined));

  app.post<{ Params: { owner: string; name: string } }>("/models/:owner/:name/predictions", (req, reply) => {
    const model = service.findModel(req.params.owner, req.params.name);
    if (!model) throw notFound();
    return create(req, reply, model);
  });

  app.get<{ Params: { id: string } }>("/predictions/:id", async (req) => {
    return toApiPrediction(await service.get(req.account, req.params.id), base(req));
  });

  app.post<{ Params: { id: string } }>("/predictions/:id/cancel", async (req) => {
    return toApiPrediction(await service.cancel(req.account, req.params.id), base(req));
  });

  app.get<{ Querystring: Record<string, string | string[] | undefined> }>("/predictions", async (req) => {
    const q = req.query;
    const one = (key: string): string | undefined => {
      const v = q[key];
      return Array.isArray(v) ? v[0] : v;
    };
    const errors: InvalidField[] = [];
    const input: ListInput = { pageSize: PAGE_SIZE, cursor: one("cursor") };
    const pageSize = one("page_size");
    if (pageSize !== undefined) {
      if (/^\d+$/.test(pageSize) && Number(pageSize) >= 1 && Number(pageSize) <= PAGE_SIZE) {
        input.pageSize = Number(pageSize);
      } else {
        errors.push({
          type: "number_lte",
          field: "page_size",
          description: `Must be an integer from 1 to ${PAGE_SIZE}`,
        });
      }
    }
    const status = one("status");
    if (status !== undefined) {
      if ((STATUSES as readonly string[]).includes(status)) input.status = status as PredictionStatus;
      else
        errors.push({
          type: "enum",
          field: "status",
          description: `status must be one of the following: ${STATUSES.map((s) => `"${s}"`).join(", ")}`,
        });
    }
    input.model = one("model");
    input.version = one("version");
    for (const [key, field] of [
      ["created_after", "createdAfter"],
      ["created_before", "createdBefore"],
    ] as const) {
      const v = one(key);
      if (v === undefined) continue;
      const ts = normalizeTimestamp(v);
      if (ts) input[field] = ts;
      else
        errors.push({
          type: "format",
          field: key,
          description: `${key} must be an RFC 3339 timestamp such as 2025-03-02T10:15:30Z`,
        });
    }
    if (errors.length > 0) throw validationFailed(errors);

    const page = await service.list(req.account, input);
    const urls = base(req);
    // next/previous keep the route's prefix and every filter (spec §0.1, §2.5).
    const pageUrl = (cursor: string | null) => {
      if (!cursor) return null;
      const params = new URLSearchParams();
      for (const key of ["status", "model", "version", "created_after", "created_before", "page_size"]) {
        const v = one(key);
        if (v !== undefined) params.set(key, v);
      }
      params.set("cursor", cursor);
      return `${urls.api}/predictions?${params}`;
    };
    return {
      previous: pageUrl(page.previous),
      next: pageUrl(page.next),
      results: page.results.map((p) => toApiPrediction(p, urls)),
    };
  });
}
