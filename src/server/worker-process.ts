/**
 * `sdserve worker`: a process that runs predictions from the shared queue and serves no API.
 * It loads the models, takes jobs from Redis `concurrency` at a time, records each run in the
 * shared store, sends the webhooks of the changes it makes, and answers /health-check (and
 * /metrics) on its own port. close() hands running predictions back to the queue, for another
 * worker to run at once.
 */
import type { AddressInfo } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import type { Config } from "../config.js";
import { openBackends } from "./backends.js";
import { fastifyLogging, lineLogger } from "./log.js";
import { Metrics } from "./metrics.js";
import { PredictionLog } from "./prediction-log.js";
import { healthRoutes } from "./routes/health.js";
import { metricsRoutes } from "./routes/metrics.js";
import {
  fileInputOptions,
  modelAdapters,
  newService,
  type RunningServer,
  type ServerOutput,
  setupModels,
  startWebhooks,
} from "./server.js";
import { Worker } from "./worker.js";

export async function startWorkerProcess(config: Config, out: ServerOutput): Promise<RunningServer> {
  const backends = await openBackends(config, lineLogger(out.child({ component: "backends" }), "warn"));
  const models = modelAdapters(config, out);
  const service = newService(config, backends, models, out);
  const metrics = new Metrics({ queue: backends.queue, store: backends.store, role: "worker" });
  metrics.follow(backends.events);
  const predictionLog = new PredictionLog(out);
  predictionLog.follow(backends.events);
  const webhooks = startWebhooks(config, backends, out, metrics);

  const app = Fastify(fastifyLogging(out)) as unknown as FastifyInstance;
  app.register(healthRoutes, { models });
  app.register(metricsRoutes, { metrics });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;

  setupModels(models, out);
  const worker = new Worker(
    service.lifecycle,
    models,
    backends.queue,
    lineLogger(out.child({ component: "worker" }), "error"),
    config.workerConcurrency,
    (s) => metrics.step(s),
    fileInputOptions(config, backends),
  );
  worker.start();
  out.info(
    { url, concurrency: config.workerConcurrency },
    `sdserve worker running ${config.workerConcurrency} at a time; health and metrics on ${url}`,
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    close: () => {
      closing ??= (async () => {
        service.lifecycle.shutdown();
        await worker.stop();
        await webhooks.close();
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
