/**
 * Model, version, account and hardware lookups (spec §6), under /v1 and /replicate/v1.
 * The version's openapi_schema is made from the adapter's schemas, the same ones that validate
 * inputs.
 */
import type { FastifyInstance } from "fastify";
import { urlBaseOf } from "../http/headers.js";
import { notFound } from "../http/problem.js";
import { isVersionOf, type ModelAdapter } from "../models/model.js";
import { cogOpenApi } from "../models/openapi.js";
import type { PredictionService } from "../predictions/service.js";

export interface ModelRoutesOptions {
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  provider: "cpu" | "cuda";
}

function versionJson(m: ModelAdapter) {
  return {
    id: m.version.id,
    created_at: m.version.createdAt,
    cog_version: m.version.cogVersion,
    openapi_schema: cogOpenApi(m),
  };
}

export async function modelRoutes(app: FastifyInstance, opts: ModelRoutesOptions): Promise<void> {
  const { service } = opts;
  const modelJson = async (m: ModelAdapter, origin: string) => ({
    url: `${origin}/${m.model.owner}/${m.model.name}`,
    owner: m.model.owner,
    name: m.model.name,
    description: m.model.description,
    visibility: "public",
    is_official: false,
    github_url: m.model.githubUrl,
    paper_url: m.model.paperUrl,
    license_url: m.model.licenseUrl,
    run_count: await service.runCount(m),
    cover_image_url: null,
    default_example: null,
    latest_version: versionJson(m),
  });
  const find = (owner: string, name: string) => {
    const m = service.findModel(owner, name);
    if (!m) throw notFound();
    return m;
  };

  // One path, two clients: Replicate's models.list reads {next, previous, results}, OpenAI's
  // models.list reads {object: "list", data}. Each ignores the other's keys.
  app.get("/models", async (req) => {
    const { origin } = urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
    return {
      next: null,
      previous: null,
      results: await Promise.all(service.models.map((m) => modelJson(m, origin))),
      object: "list",
      data: service.models.map((m) => ({
        id: `${m.model.owner}/${m.model.name}`,
        object: "model",
        created: Math.floor(Date.parse(m.version.createdAt) / 1000),
        owned_by: m.model.owner,
      })),
    };
  });

  app.get<{ Params: { owner: string; name: string } }>("/models/:owner/:name", async (req) => {
    const { origin } = urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
    return modelJson(find(req.params.owner, req.params.name), origin);
  });

  app.get<{ Params: { owner: string; name: string } }>("/models/:owner/:name/versions", async (req) => {
    const m = find(req.params.owner, req.params.name);
    return { next: null, previous: null, results: [versionJson(m)] };
  });

  app.get<{ Params: { owner: string; name: string; id: string } }>("/models/:owner/:name/versions/:id", async (req) => {
    const m = find(req.params.owner, req.params.name);
    if (!isVersionOf(m, req.params.id)) throw notFound();
    return versionJson(m);
  });

  app.get("/account", async () => ({ type: "user", username: "local", name: "sdserve local account" }));

  app.get("/hardware", async () =>
    opts.provider === "cuda"
      ? [
          { name: "Nvidia GPU (CUDA)", sku: "gpu" },
          { name: "CPU", sku: "cpu" },
        ]
      : [{ name: "CPU", sku: "cpu" }],
  );
}
