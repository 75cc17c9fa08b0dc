/**
 * Starts the whole service from a Config: by default with the embedded parts, SQLite store, in-process
 * queue and events, outputs on local disk, one worker in this process. close() is the graceful
 * shutdown: it stops taking work, puts a running prediction back in the queue's state (it runs
 * again on the next start), answers open waits, and closes the store last.
 */
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Config } from "../config.js";
import { buildApp } from "./app.js";
import { resolveApiTokens, TokenAuth } from "./auth.js";
import { DiskFileStore } from "./files/disk.js";
import type { ModelAdapter } from "./models/model.js";
import { StableDiffusionAdapter } from "./models/stable-diffusion.js";
import { LocalPredictionEvents } from "./predictions/events.js";
import { PredictionService } from "./predictions/service.js";
import { LocalJobQueue } from "./queue/local.js";
import { PostgresPredictionStore } from "./store/postgres.js";
import { SqlitePredictionStore } from "./store/sqlite.js";
import { WebhookDispatcher } from "./webhooks/dispatcher.js";
import { Worker } from "./worker.js";

export const SDSERVE_VERSION = "0.1.0";

export interface ServerOutput {
  /** Lines meant for the operator (the listening URL, a new token). */
  info(line: string): void;
  /** Faults and engine messages. */
  error(line: string): void;
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
  await mkdir(config.dataDir, { recursive: true });
  const store = config.databaseUrl
    ? await PostgresPredictionStore.open(config.databaseUrl, { log: out.error })
    : new SqlitePredictionStore(path.join(config.dataDir, "sdserve.db"));
  const queue = new LocalJobQueue();
  const files = new DiskFileStore(path.join(config.dataDir, "files"));
  const events = new LocalPredictionEvents();
  const models: ModelAdapter[] =
    parts.models ??
    config.models.map(
      (spec) =>
        new StableDiffusionAdapter({
          spec,
          hub: config.hub,
          threads: config.threads,
          provider: config.provider,
          log: out.error,
        }),
    );
  const service = new PredictionService(
    store,
    queue,
    files,
    events,
    models,
    {
      queueMax: config.queueMax,
      outputRetentionMs: config.outputRetentionMs,
      maxRunTimeMs: config.maxRunTimeMs,
      webhookAllowPrivate: config.webhookAllowPrivate,
    },
    out.error,
  );

  const webhooks = new WebhookDispatcher(store, events, {
    allowPrivate: config.webhookAllowPrivate,
    log: out.error,
    userAgent: `sdserve/${SDSERVE_VERSION}`,
  });
  webhooks.start();

  const tokens = await resolveApiTokens(config.apiTokens, config.dataDir);
  if (tokens.created) {
    out.info(`No SDSERVE_API_TOKENS given: created an API token and saved it in ${tokens.file}`);
    out.info(`API token: ${tokens.created}`);
    out.info(`Use it as: Authorization: Bearer ${tokens.created}`);
  } else if (tokens.file) {
    out.info(`API token: the one saved in ${tokens.file}`);
  }

  const app = buildApp({
    service,
    webhooks,
    auth: new TokenAuth(tokens.tokens),
    bodyLimit: config.bodyLimit,
    publicBaseUrl: config.publicBaseUrl,
    maxWaitSeconds: config.maxWaitSeconds,
    corsOrigins: config.corsOrigins,
    rateLimit: config.rateLimit,
    provider: config.provider,
    version: SDSERVE_VERSION,
    log: out.error,
  });

  const recovered = await service.recover();
  if (recovered.requeued + recovered.failed > 0) {
    out.info(`Recovered ${recovered.requeued} unfinished prediction(s) into the queue; ${recovered.failed} failed.`);
  }
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  service.startBackground();
  webhooks.resume().then(
    (n) => n > 0 && out.info(`Resumed ${n} undelivered completed webhook(s).`),
    (err: unknown) => out.error(`Resuming webhooks failed: ${String(err)}`),
  );
  // One model at a time: downloads do not compete for bandwidth, nor loads for memory. A
  // prediction for a model still waiting starts that model's setup at once.
  const loadStart = performance.now();
  void models.reduce<Promise<unknown>>(
    (previous, m) =>
      previous.then(() =>
        m.setup().then(
          () =>
            out.info(
              `Model ready: ${m.model.owner}/${m.model.name} in ${((performance.now() - loadStart) / 1000).toFixed(1)}s`,
            ),
          (err: unknown) =>
            out.error(
              `${m.model.owner}/${m.model.name} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
            ),
        ),
      ),
    Promise.resolve(),
  );
  const worker = new Worker(service, queue, out.error);
  worker.start();
  out.info(`sdserve listening on ${url}`);

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    close: () => {
      closing ??= (async () => {
        service.shutdown();
        webhooks.stop();
        await worker.stop();
        await app.close();
        await queue.close();
        for (const m of models) await m.close();
        await store.close();
      })();
      return closing;
    },
  };
}
