/** GET /metrics: Prometheus's text format, without a token (as /health-check), on API nodes and workers. */
import type { FastifyInstance } from "fastify";
import type { Metrics } from "../metrics.js";
import type { RouteSchema } from "../schemas/openapi.js";

const METRICS_SCHEMA: RouteSchema = {
  summary: "Prometheus metrics (no token needed)",
  response: { 200: { content: { "text/plain": { schema: { type: "string" } } } } },
};

export async function metricsRoutes(app: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  app.get("/metrics", { schema: METRICS_SCHEMA }, async (_req, reply) => {
    const text = await opts.metrics.render();
    return reply.header("Content-Type", opts.metrics.contentType).header("Cache-Control", "no-store").send(text);
  });
}
