/**
 * GET /health-check: 200 once the server listens; the body says whether the models are ready
 * (status as Cog's: STARTING, READY, SETUP_FAILED) and, per model, what setup is doing — the
 * weight download with bytes, rate and ETA, or the load — or why it failed and what to do. A
 * model set up on demand (the default inpainting weights) is ON_DEMAND until first asked for.
 */
import type { FastifyInstance } from "fastify";
import type { ModelAdapter } from "../models/model.js";
import type { RouteSchema } from "../schemas/openapi.js";

const HEALTH_SCHEMA: RouteSchema = {
  summary: "Liveness and the models' setup (no token needed)",
  response: {
    200: {
      type: "object",
      required: ["status", "setup"],
      properties: {
        status: { type: "string", enum: ["STARTING", "READY", "SETUP_FAILED"] },
        setup: {
          type: "object",
          additionalProperties: true,
          description: "Per model (owner/name): its status, the download or load under way, or why setup failed",
        },
      },
    },
  },
};

/** A model set up on demand that nobody asked for yet: not loading, and not holding the server's status back. */
const idle = (m: ModelAdapter) => m.setupOnDemand === true && m.setupStarted === false;

function setupOf(m: ModelAdapter): Record<string, unknown> {
  if (idle(m)) return { status: "ON_DEMAND" };
  const progress = m.state === "STARTING" ? m.setupProgress : undefined;
  const d = progress?.download;
  return {
    status: m.state,
    ...(progress ? { phase: progress.phase } : {}),
    ...(d
      ? {
          download: {
            source: d.source,
            file: d.file ?? null,
            downloaded_bytes: d.doneBytes,
            total_bytes: d.totalBytes,
            percent: d.totalBytes > 0 ? Math.floor((d.doneBytes / d.totalBytes) * 1000) / 10 : 100,
            bytes_per_second: d.bytesPerSecond ?? null,
            eta_seconds: d.etaSeconds ?? null,
          },
        }
      : {}),
    ...(m.setupError ? { error: m.setupError } : {}),
  };
}

export async function healthRoutes(
  app: FastifyInstance,
  opts: { models: readonly ModelAdapter[]; runElsewhere?: boolean },
): Promise<void> {
  app.get("/health-check", { schema: HEALTH_SCHEMA }, async () => {
    if (opts.runElsewhere) {
      return {
        status: "READY",
        setup: Object.fromEntries(opts.models.map((m) => [`${m.model.owner}/${m.model.name}`, { status: "WORKERS" }])),
      };
    }
    const states = opts.models.filter((m) => !idle(m)).map((m) => m.state);
    const status = states.includes("SETUP_FAILED")
      ? "SETUP_FAILED"
      : states.includes("STARTING")
        ? "STARTING"
        : "READY";
    return {
      status,
      setup: Object.fromEntries(opts.models.map((m) => [`${m.model.owner}/${m.model.name}`, setupOf(m)])),
    };
  });
}
