/**
 * Starts `sdserve serve` from a Config: the HTTP API and, unless --no-worker, a worker in this
 * process. With nothing configured it is the whole service on the embedded parts (SQLite,
 * in-process queue and events, outputs on local disk); DATABASE_URL and REDIS_URL move those
 * parts onto shared services (backends.ts), so that several such nodes and `sdserve worker`
 * processes serve together. close() is the graceful shutdown: it stops taking work, puts a
 * running prediction back in the queue's state (it runs again on the next start, or on another
 * worker), answers open waits, and closes the store last.
 */

import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Config } from "../config.js";
import { SDSERVE_VERSION } from "../engine/version.js";
import { buildApp } from "./app.js";
import { resolveApiTokens, TokenAuth } from "./auth.js";
import { type Backends, openBackends } from "./backends.js";
import type { FileInputOptions } from "./files/file-inputs.js";
import { Uploads } from "./files/uploads.js";
import { type Logger, lineLogger } from "./log.js";
import { Metrics } from "./metrics.js";
import type { ModelAdapter } from "./models/model.js";
import { StableDiffusionAdapter } from "./models/stable-diffusion.js";
import { PredictionLog } from "./prediction-log.js";
import { PredictionLifecycle } from "./predictions/lifecycle.js";
import { OutputFiles } from "./predictions/output-files.js";
import { PredictionService } from "./predictions/service.js";
import { SettledPredictionCache } from "./predictions/settled-cache.js";
import { RETRY_DELAYS_MS, WebhookDispatcher } from "./webhooks/dispatcher.js";
import { BullMqCompletedDeliveries } from "./webhooks/jobs.js";
import { Worker } from "./worker.js";

export { SDSERVE_VERSION };

/** Where the server and worker processes log (log.ts: pino, Fastify's logger). */
export type ServerOutput = Logger;

/**
 * The API token made on first start, shown to the person who started the server. It is the one
 * secret printed on purpose, so it never goes through the log: to the terminal only, and only
 * where standard error is one; elsewhere the log names the file that holds it.
 */
function showNewToken(token: string, file: string): void {
  if (!process.stderr.isTTY) return;
  process.stderr.write(`API token (saved in ${file}): ${token}\nUse it as: Authorization: Bearer ${token}\n`);
}

export interface RunningServer {
  /** http://host:port, as bound. */
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

export interface ServerParts {
  /** The models to serve instead of config.models (benchmarks of the HTTP layer). */
  models?: ModelAdapter[];
}

export async function startServer(config: Config, out: ServerOutput, parts: ServerParts = {}): Promise<RunningServer> {
  const backends = await openBackends(config, lineLogger(out.child({ component: "backends" }), "warn"));
  const { queue } = backends;
  const models: ModelAdapter[] = parts.models ?? modelAdapters(config, out);
  const service = newService(config, backends, models, out);
  const metrics = new Metrics({ queue, store: backends.store, role: config.runWorker ? "all" : "api" });
  metrics.follow(backends.events);
  const predictionLog = new PredictionLog(out);
  predictionLog.follow(backends.events);

  const { dispatcher: webhooks, close: closeWebhooks } = startWebhooks(config, backends, out, metrics);

  const tokens = await resolveApiTokens(config.apiTokens, config.dataDir);
  if (tokens.created) {
    out.info({ file: tokens.file }, "No SDSERVE_API_TOKENS given: created an API token and saved it in the file named");
    showNewToken(tokens.created, tokens.file as string);
  } else if (tokens.file) {
    out.info({ file: tokens.file }, "API token: the one saved in the file named");
  }

  const uploads = uploadsOf(config, backends);
  const app = buildApp({
    service,
    uploads,
    webhooks,
    auth: new TokenAuth(tokens.tokens, config.apiAuth),
    bodyLimit: config.bodyLimit,
    a1111BodyLimit: config.a1111BodyLimit,
    publicBaseUrl: config.publicBaseUrl,
    trustProxy: config.trustProxy,
    maxWaitSeconds: config.maxWaitSeconds,
    streamKeepaliveMs: config.streamKeepaliveMs,
    streamsPerPrediction: config.streamsPerPrediction,
    streamsPerClient: config.streamsPerClient,
    corsOrigins: config.corsOrigins,
    rateLimit: config.rateLimit,
    provider: config.provider,
    version: SDSERVE_VERSION,
    modelsRunElsewhere: !config.runWorker,
    metrics,
    logger: out,
  });

  const recovered = await service.lifecycle.recover();
  if (recovered.requeued + recovered.failed > 0) {
    out.info(
      recovered,
      `Recovered ${recovered.requeued} unfinished prediction(s) into the queue; ${recovered.failed} failed.`,
    );
  }
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  service.lifecycle.startBackground();
  uploads.start((err) => out.error({ err }, "Removing expired uploads failed"));
  webhooks.resume().then(
    (n) => n > 0 && out.info({ webhooks: n }, `Resumed ${n} undelivered completed webhook(s).`),
    (err: unknown) => out.error({ err }, "Resuming webhooks failed"),
  );
  let worker: Worker | undefined;
  if (config.runWorker) {
    setupModels(models, out);
    // The in-process worker runs one prediction at a time; on a shared queue, as many as configured.
    worker = new Worker(
      service.lifecycle,
      models,
      queue,
      lineLogger(out.child({ component: "worker" }), "error"),
      queue.shared ? config.workerConcurrency : 1,
      (s) => metrics.step(s),
      fileInputOptions(config, backends),
    );
    worker.start();
  }
  out.info({ url }, `sdserve listening on ${url}`);

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    close: () => {
      closing ??= (async () => {
        service.lifecycle.shutdown();
        uploads.stop();
        await worker?.stop();
        await closeWebhooks();
        await app.close();
        metrics.close();
        predictionLog.close();
        for (const m of models) await m.close();
        await backends.close();
      })();
      return closing;
    },
  };
}

export function modelAdapters(config: Config, out: ServerOutput): ModelAdapter[] {
  const byName = new Map<string, StableDiffusionAdapter>();
  return config.models.map((spec) => {
    const adapter = new StableDiffusionAdapter({
      spec,
      shareEngineWith: spec.sharesWeightsOf ? byName.get(spec.sharesWeightsOf) : undefined,
      hub: config.hub,
      cacheDir: config.cacheDir,
      optimizedCache: config.optimizedCache,
      threads: config.threads,
      provider: config.provider,
      previewSize: config.previewSize,
      log: lineLogger(out.child({ component: "setup", model: spec.name }), "info"),
    });
    byName.set(spec.name, adapter);
    return adapter;
  });
}

export function newService(
  config: Config,
  backends: Backends,
  models: readonly ModelAdapter[],
  out: ServerOutput,
): PredictionService {
  const { store, queue, files, events } = backends;
  const settled =
    config.readCacheBytes > 0
      ? new SettledPredictionCache({ maxBytes: config.readCacheBytes, retentionMs: config.outputRetentionMs })
      : undefined;
  const lifecycle = new PredictionLifecycle(
    store,
    queue,
    files,
    events,
    config.outputRetentionMs,
    lineLogger(out.child({ component: "predictions" }), "error"),
    settled,
  );
  return new PredictionService(
    store,
    lifecycle,
    new OutputFiles(store, files, config.outputRetentionMs),
    events,
    models,
    {
      queueMax: config.queueMax,
      queueMaxPerToken: config.queueMaxPerToken,
      maxRunTimeMs: config.maxRunTimeMs,
      webhookAllowPrivate: config.webhookAllowPrivate,
    },
    settled,
  );
}

/** How the worker fetches file inputs: the SSRF rules, and this server's uploads read inside. */
export function fileInputOptions(config: Config, backends: Backends): FileInputOptions {
  return {
    allowPrivate: config.allowPrivateUrls,
    allowHosts: config.allowedUrlHosts,
    ownFile: uploadsOf(config, backends).reader,
    weightsCacheDir: path.join(config.cacheDir, "lora-weights"),
  };
}

/** The Files API's uploads, on the store and file store of these backends. */
export function uploadsOf(config: Config, backends: Backends): Uploads {
  return new Uploads(backends.store, backends.files, config.fileRetentionMs);
}

/**
 * Loads the models one at a time: downloads do not compete for bandwidth, nor loads for memory.
 * A prediction for a model still waiting starts that model's setup at once.
 */
export function setupModels(models: readonly ModelAdapter[], out: ServerOutput): void {
  const loadStart = performance.now();
  void models
    .filter((m) => !m.setupOnDemand)
    .reduce<Promise<unknown>>(
      (previous, m) =>
        previous.then(() =>
          m.setup().then(
            () => {
              const seconds = Math.round(performance.now() - loadStart) / 1000;
              out.info(
                { component: "setup", model: `${m.model.owner}/${m.model.name}`, setup_time_s: seconds },
                `Model ready: ${m.model.owner}/${m.model.name} in ${seconds.toFixed(1)}s`,
              );
            },
            (err: unknown) =>
              out.error(
                { component: "setup", model: `${m.model.owner}/${m.model.name}` },
                `${m.model.owner}/${m.model.name} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
              ),
          ),
        ),
      Promise.resolve(),
    );
}

/** The webhook dispatcher of this process; with a shared queue, `completed` tries are durable jobs that it also runs. */
export function startWebhooks(
  config: Config,
  backends: Backends,
  out: ServerOutput,
  metrics: Metrics,
): { dispatcher: WebhookDispatcher; close(): Promise<void> } {
  const durable = config.redisUrl
    ? new BullMqCompletedDeliveries(
        config.redisUrl,
        config.redisPrefix,
        RETRY_DELAYS_MS,
        lineLogger(out.child({ component: "webhooks" }), "warn"),
      )
    : undefined;
  const dispatcher = new WebhookDispatcher(backends.store, backends.events, {
    allowPrivate: config.webhookAllowPrivate,
    log: lineLogger(out.child({ component: "webhooks" }), "warn"),
    userAgent: `sdserve/${SDSERVE_VERSION}`,
    durable,
    onDelivery: (d) => metrics.webhookDelivery(d),
  });
  dispatcher.start();
  durable?.start(dispatcher);
  return {
    dispatcher,
    close: async () => {
      dispatcher.stop();
      await durable?.close();
    },
  };
}
