/**
 * Assembles the Fastify app: body parsing, problem+json errors, CORS, auth and rate limits,
 * and the routes, served under /v1 and again under /replicate/v1 (the aggregator layout).
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { TokenAuth } from "./auth.js";
import type { Uploads } from "./files/uploads.js";
import { jsonNestsDeeperThan, MAX_JSON_DEPTH } from "./http/json-depth.js";
import { badJson, HttpProblem, notFound, problemOf, throttled, unauthenticated } from "./http/problem.js";
import { RateLimiter } from "./http/rate-limit.js";
import { fastifyLogging, type Logger, loggableUrl, silentLogger } from "./log.js";
import type { Metrics } from "./metrics.js";
import type { PredictionService } from "./predictions/service.js";
import { a1111Routes } from "./routes/a1111.js";
import { fileRoutes } from "./routes/files.js";
import { healthRoutes } from "./routes/health.js";
import { metricsRoutes } from "./routes/metrics.js";
import { modelRoutes } from "./routes/models.js";
import { openAiImageRoutes } from "./routes/openai-images.js";
import { predictionRoutes } from "./routes/predictions.js";
import { OpenStreams, streamRoutes } from "./routes/streams.js";
import { uploadRoutes } from "./routes/uploads.js";
import { webRoutes } from "./routes/web.js";
import { webhookRoutes } from "./routes/webhooks.js";
import { BEARER_AUTH, collectRoutes, openApiDocument, type RouteSchema } from "./schemas/openapi.js";
import { validatorCompiler } from "./schemas/validation.js";
import type { WebhookDispatcher } from "./webhooks/dispatcher.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The account of the request's token (set on authenticated routes). */
    account: string;
  }
}

export interface AppOptions {
  /** The Files API (POST /v1/files …); absent: not served. */
  uploads?: Uploads;
  service: PredictionService;
  webhooks: WebhookDispatcher;
  auth: TokenAuth;
  bodyLimit: number;
  /** /sdapi/v1/img2img's (its pictures come in the JSON); default bodyLimit. */
  a1111BodyLimit?: number;
  publicBaseUrl: string | undefined;
  /** Proxies whose X-Forwarded-Host/-Proto are believed (Fastify's trustProxy); none: ignored. */
  trustProxy?: readonly string[];
  maxWaitSeconds: number;
  /** Interval of the `: ping` comments on open event streams (default 10 s). */
  streamKeepaliveMs?: number;
  /** Caps on open event streams (SDSERVE_STREAMS_PER_PREDICTION, SDSERVE_STREAMS_PER_CLIENT). */
  streamsPerPrediction?: number;
  streamsPerClient?: number;
  corsOrigins: readonly string[];
  rateLimit: { max: number; windowMs: number } | null;
  /** For GET /v1/hardware. */
  provider: "cpu" | "cuda";
  /** The server's version, in its OpenAPI document. */
  version: string;
  /** An API-only node (--no-worker): the models are loaded by the workers, not here. */
  modelsRunElsewhere?: boolean;
  /** Served at GET /metrics (Prometheus text format, no token, as /health-check). */
  metrics?: Metrics;
  /** The log (log.ts); default: none. */
  logger?: Logger;
}

/** Probes that answer many times a minute: their request records are debug. */
const QUIET_ROUTES = new Set(["/health-check", "/metrics"]);

export const API_PREFIXES = ["/v1", "/replicate/v1"] as const;

function sendProblem(reply: FastifyReply, problem: HttpProblem): FastifyReply {
  for (const [k, v] of Object.entries(problem.headers)) reply.header(k, v);
  return reply.code(problem.status).type("application/problem+json").send(JSON.stringify(problem.body()));
}

export function buildApp(opts: AppOptions): FastifyInstance {
  const logger = opts.logger ?? silentLogger();
  const app = Fastify({
    bodyLimit: opts.bodyLimit,
    ...fastifyLogging(logger),
    return503OnClosing: false,
    // request.host and request.protocol read X-Forwarded-* only from these peers.
    trustProxy: opts.trustProxy?.length ? [...opts.trustProxy] : false,
  }) as unknown as FastifyInstance;
  app.decorateRequest("account", "");
  // Every route's schema is checked by one validator, in Replicate's words (schemas/validation.ts).
  app.setValidatorCompiler(validatorCompiler);
  const routes = collectRoutes(app);
  // A callback hook that asks the level first: it runs on every request (the read path's profile),
  // and req.routeOptions builds a new object on each read.
  app.addHook("onResponse", (req, reply, done) => {
    if (!logger.isLevelEnabled("debug") && !logger.isLevelEnabled("info")) return done();
    const route = req.routeOptions.url;
    const level = route && QUIET_ROUTES.has(route) ? "debug" : "info";
    if (!logger.isLevelEnabled(level)) return done();
    // Through the app's logger, with the id request.log would add: request.log is made on first use (log.ts).
    logger[level](
      {
        reqId: req.id,
        method: req.method,
        route: route ?? null,
        url: loggableUrl(req.url),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      "request",
    );
    done();
  });

  // Bodies are JSON whatever the Content-Type says (curl -d sends form encoding), and an
  // empty body is no body: the JS client sends Content-Type: application/json on a bodyless cancel.
  // Fastify's own JSON parser does the parsing, with its guard against __proto__ poisoning.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (req, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, undefined);
    if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) {
      return done(
        new HttpProblem(
          400,
          "Bad request",
          `Request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`,
        ),
        undefined,
      );
    }
    parseJson(req, text, (err: Error | null, value?: unknown) =>
      err ? done(badJson(), undefined) : done(null, value),
    );
  });

  // Domain errors of the service become problem+json here, and nowhere else.
  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    const problem = problemOf(err);
    if (problem) return sendProblem(reply, problem);
    const code = (err as FastifyError).statusCode;
    const status = typeof code === "number" && code >= 400 ? code : 500;
    if (status === 413) {
      return sendProblem(
        reply,
        new HttpProblem(413, "Payload Too Large", `Request body is larger than ${opts.bodyLimit} bytes`),
      );
    }
    if (status >= 500) {
      req.log.error({ err, url: loggableUrl(req.url) }, "request failed");
      return sendProblem(
        reply,
        new HttpProblem(500, "Internal Server Error", "The server failed to handle this request."),
      );
    }
    return sendProblem(reply, new HttpProblem(status, "Bad request", err.message));
  });
  app.setNotFoundHandler((_req, reply) => sendProblem(reply, notFound()));

  if (opts.corsOrigins.length > 0) {
    const any = opts.corsOrigins.includes("*");
    app.addHook("onRequest", async (req, reply) => {
      const origin = req.headers.origin;
      if (!origin || !(any || opts.corsOrigins.includes(origin))) return;
      reply.header("Access-Control-Allow-Origin", any ? "*" : origin).header("Vary", "Origin");
      reply.header("Access-Control-Expose-Headers", "Location, Preference-Applied, Retry-After");
      if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
        return reply
          .code(204)
          .header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
          .header(
            "Access-Control-Allow-Headers",
            req.headers["access-control-request-headers"] ??
              "authorization, content-type, prefer, cancel-after, idempotency-key, user-agent, last-event-id",
          )
          .header("Access-Control-Max-Age", "600")
          .send();
      }
    });
  }

  const limiter = opts.rateLimit ? new RateLimiter(opts.rateLimit.max, opts.rateLimit.windowMs) : undefined;
  // A callback hook, not an async one: it runs on every API request, and a promise per request shows in the read path's profile.
  const authenticateBy =
    (check: (header: string | undefined) => string | undefined) =>
    (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
      const account = check(req.headers.authorization);
      if (!account) return done(unauthenticated());
      req.account = account;
      const wait = limiter?.hit(account);
      if (wait !== undefined) {
        const s = Math.max(1, Math.ceil(wait));
        return done(throttled(s, `Request was throttled. Your rate limit resets in ~${s}s.`));
      }
      done();
    };

  const requireTokenInDocument = (route: { schema?: RouteSchema }) => {
    route.schema = { ...route.schema, security: BEARER_AUTH };
  };
  const authenticate = authenticateBy((h) => opts.auth.authenticate(h));

  app.register(healthRoutes, { models: opts.service.models, runElsewhere: opts.modelsRunElsewhere ?? false });
  if (opts.metrics) app.register(metricsRoutes, { metrics: opts.metrics });
  let openapi: Record<string, unknown> | undefined;
  const openapiSchema: RouteSchema = {
    summary: "This document: every route and every served model's input and output",
    response: { 200: { type: "object", additionalProperties: true } },
  };
  // Made on first use, when every route has been registered.
  app.get("/openapi.json", { schema: openapiSchema }, async () => {
    openapi ??= openApiDocument(routes, opts.service.models, opts.version);
    return openapi;
  });
  app.register(fileRoutes, { service: opts.service });
  // AUTOMATIC1111's API: HTTP Basic (--api-auth, or a token as the password) besides Bearer tokens.
  app.register(a1111Routes, {
    prefix: "/sdapi/v1",
    service: opts.service,
    publicBaseUrl: opts.publicBaseUrl,
    authenticate: authenticateBy((h) => opts.auth.authenticateWithBasic(h)),
    version: opts.version,
    img2imgBodyLimit: opts.a1111BodyLimit ?? opts.bodyLimit,
  });
  app.register(webRoutes, { service: opts.service, publicBaseUrl: opts.publicBaseUrl });
  const streams = new OpenStreams(opts.streamsPerPrediction, opts.streamsPerClient);
  opts.metrics?.observeStreams(streams);
  for (const prefix of API_PREFIXES) {
    app.register(
      async (api) => {
        // onRequest: a request without a valid token is refused before its body is read.
        api.addHook("onRequest", authenticate);
        api.addHook("onRoute", requireTokenInDocument);
        await api.register(webhookRoutes, { service: opts.service, webhooks: opts.webhooks });
        if (opts.uploads) {
          await api.register(uploadRoutes, {
            apiPrefix: prefix,
            uploads: opts.uploads,
            publicBaseUrl: opts.publicBaseUrl,
          });
        }
        await api.register(modelRoutes, {
          apiPrefix: prefix,
          service: opts.service,
          publicBaseUrl: opts.publicBaseUrl,
          provider: opts.provider,
        });
        await api.register(predictionRoutes, {
          apiPrefix: prefix,
          service: opts.service,
          publicBaseUrl: opts.publicBaseUrl,
          maxWaitSeconds: opts.maxWaitSeconds,
        });
      },
      { prefix },
    );
    if (prefix === "/v1") {
      // OpenAI's layout: clients use baseURL http://host/v1. Its own error envelope, same tokens.
      app.register(openAiImageRoutes, {
        prefix,
        service: opts.service,
        uploads: opts.uploads,
        publicBaseUrl: opts.publicBaseUrl,
        authenticate,
        requireTokenInDocument,
      });
    }
    // The stream is a capability URL: outside the authenticated scope.
    app.register(streamRoutes, {
      prefix,
      apiPrefix: prefix,
      service: opts.service,
      publicBaseUrl: opts.publicBaseUrl,
      keepaliveMs: opts.streamKeepaliveMs,
      streams,
    });
  }
  return app;
}
