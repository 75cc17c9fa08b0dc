/** GET /health-check: 200 once the server listens; the body says whether the model is loaded (as Cog's). */
import type { FastifyInstance } from "fastify";
import type { ModelAdapter } from "../models/model.js";

export async function healthRoutes(app: FastifyInstance, opts: { models: readonly ModelAdapter[] }): Promise<void> {
  app.get("/health-check", async () => {
    const states = opts.models.map((m) => m.state);
    const status = states.includes("SETUP_FAILED")
      ? "SETUP_FAILED"
      : states.includes("STARTING")
        ? "STARTING"
        : "READY";
    return {
      status,
      setup: Object.fromEntries(
        opts.models.map((m) => [
          `${m.model.owner}/${m.model.name}`,
          { status: m.state, ...(m.setupError ? { error: m.setupError } : {}) },
        ]),
      ),
    };
  });
}
