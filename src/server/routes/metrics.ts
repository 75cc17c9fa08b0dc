/** GET /metrics: Prometheus's text format, without a token (as /health-check), on API nodes and workers. */
import type { FastifyInstance } from "fastify";
import type { Metrics } from "../metrics.js";

export async function metricsRoutes(app: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  app.get("/metrics", async (_req, reply) => {
    const text = await opts.metrics.render();
    return reply.header("Content-Type", opts.metrics.contentType).header("Cache-Control", "no-store").send(text);
  });
}
