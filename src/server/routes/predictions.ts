/**
 * Replicate's predictions API: create (also through /models/{owner}/{name}/predictions), get,
 * list and cancel. Registered under /v1 and /replicate/v1; the token's account is on the request.
 * Each route's schema is declared here, from schemas/definitions.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  MAX_CANCEL_AFTER_MS,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  parseCancelAfter,
  parsePreferWait,
  urlBaseOf,
} from "../http/headers.js";
import { HttpProblem } from "../http/problem.js";
import type { ModelAdapter } from "../models/model.js";
import { InvalidInputError, NotFoundError } from "../predictions/errors.js";
import { normalizeTimestamp } from "../predictions/ids.js";
import { isTerminal, type PredictionStatus } from "../predictions/prediction.js";
import { type ApiPrediction, toApiPrediction, type UrlBase } from "../predictions/serialize.js";
import type { PredictionService } from "../predictions/service.js";
import {
  AUTH_ERRORS,
  CREATE_HEADERS,
  createBodiesFor,
  MODEL_PARAMS,
  PREDICTION,
  PREDICTION_ID_PARAMS,
  PREDICTION_PAGE,
  PROBLEM,
  STATUS,
} from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";

export interface PredictionRoutesOptions {
  /** /v1 or /replicate/v1: the URLs in responses keep the prefix of the request. */
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  maxWaitSeconds: number;
}

const PAGE_SIZE = 100;

/** The Content-Type Fastify gives a JSON reply, set by hand where the JSON is sent as text. */
const JSON_TYPE = "application/json; charset=utf-8";

const LIST_QUERY = {
  type: "object",
  properties: {
    cursor: { type: "string", description: "From a page's next or previous URL" },
    page_size: { type: "integer", minimum: 1, maximum: PAGE_SIZE, default: PAGE_SIZE },
    status: STATUS,
    model: { type: "string", description: "owner/name" },
    version: { type: "string" },
    created_after: { type: "string", format: "date-time" },
    created_before: { type: "string", format: "date-time" },
  },
} as const;

/** The list's filters, carried into its next and previous URLs. */
const LIST_FILTERS = ["status", "model", "version", "created_after", "created_before", "page_size"] as const;

interface ListQuery {
  cursor?: string;
  page_size?: number;
  status?: PredictionStatus;
  model?: string;
  version?: string;
  created_after?: string;
  created_before?: string;
}

export async function predictionRoutes(app: FastifyInstance, opts: PredictionRoutesOptions): Promise<void> {
  const { service } = opts;
  const base = (req: FastifyRequest): UrlBase => urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
  const bodies = createBodiesFor(service.models);
  const createResponses = { 201: PREDICTION, ...AUTH_ERRORS, 400: PROBLEM, 413: PROBLEM, 422: PROBLEM };

  async function create(req: FastifyRequest, reply: FastifyReply, model: ModelAdapter | undefined) {
    // Python times out at N + 0.5 s: count the wait from the request's arrival, not from the insert.
    const arrived = Date.now();
    // The body schema's violations are reported with the input's (attachValidation), all at once.
    const invalid = req.validationError;
    if (invalid && !(invalid instanceof InvalidInputError)) throw invalid;
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
        body: (req.body ?? {}) as Record<string, unknown>,
        invalid: invalid?.fields,
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

  const createSchema: RouteSchema = {
    summary: "Create a prediction",
    headers: CREATE_HEADERS,
    body: bodies.version,
    response: createResponses,
  };
  app.post("/predictions", { schema: createSchema, attachValidation: true }, (req, reply) =>
    create(req, reply, undefined),
  );

  const modelCreateSchema: RouteSchema = {
    summary: "Create a prediction with a model's latest version",
    params: MODEL_PARAMS,
    headers: CREATE_HEADERS,
    body: bodies.model,
    response: { ...createResponses, 404: PROBLEM },
  };
  app.post<{ Params: { model_owner: string; model_name: string } }>(
    "/models/:model_owner/:model_name/predictions",
    { schema: modelCreateSchema, attachValidation: true },
    (req, reply) => {
      const model = service.findModel(req.params.model_owner, req.params.model_name);
      if (!model) throw new NotFoundError("No such model");
      return create(req, reply, model);
    },
  );

  const getSchema: RouteSchema = {
    summary: "Get a prediction",
    params: PREDICTION_ID_PARAMS,
    response: { 200: PREDICTION, ...AUTH_ERRORS, 404: PROBLEM },
  };
  // The read path: a finished prediction is served again as the JSON sent last time (settled-cache.ts),
  // with no store read and no serialisation; not an async handler, so a hit makes no promise.
  const settled = service.settled;
  app.get<{ Params: { prediction_id: string } }>(
    "/predictions/:prediction_id",
    { schema: getSchema },
    (req, reply): Promise<ApiPrediction | FastifyReply> | undefined => {
      const urls = base(req);
      const id = req.params.prediction_id;
      const kept = settled?.get(id, req.account, urls);
      if (kept !== undefined) {
        reply.type(JSON_TYPE).send(kept);
        return undefined;
      }
      return service.get(req.account, id).then((p) => {
        const json = toApiPrediction(p, urls);
        if (!settled || !isTerminal(p.status)) return json;
        // The route's own serialiser (its response schema), as Fastify would have used.
        const text = reply.serialize(json);
        if (typeof text !== "string") return json;
        settled.keep(p, urls, text);
        return reply.type(JSON_TYPE).send(text);
      });
    },
  );

  const cancelSchema: RouteSchema = {
    summary: "Cancel a prediction (a finished one comes back unchanged)",
    params: PREDICTION_ID_PARAMS,
    response: { 200: PREDICTION, ...AUTH_ERRORS, 404: PROBLEM },
  };
  app.post<{ Params: { prediction_id: string } }>(
    "/predictions/:prediction_id/cancel",
    { schema: cancelSchema },
    async (req) => toApiPrediction(await service.cancel(req.account, req.params.prediction_id), base(req)),
  );

  const listSchema: RouteSchema = {
    summary: "List the token's predictions, newest first",
    querystring: LIST_QUERY,
    response: { 200: PREDICTION_PAGE, ...AUTH_ERRORS, 422: PROBLEM },
  };
  app.get<{ Querystring: ListQuery }>("/predictions", { schema: listSchema }, async (req) => {
    const q = req.query;
    const timestamp = (v: string | undefined) => (v === undefined ? undefined : normalizeTimestamp(v));
    const page = await service.list(req.account, {
      cursor: q.cursor,
      pageSize: q.page_size ?? PAGE_SIZE,
      status: q.status,
      model: q.model,
      version: q.version,
      createdAfter: timestamp(q.created_after),
      createdBefore: timestamp(q.created_before),
    });
    const urls = base(req);
    // next/previous keep the route's prefix and every filter (spec §0.1, §2.5).
    const pageUrl = (cursor: string | null) => {
      if (!cursor) return null;
      const params = new URLSearchParams();
      for (const key of LIST_FILTERS) {
        const v = q[key];
        if (v !== undefined) params.set(key, String(v));
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
