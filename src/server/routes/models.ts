/**
 * Model, version, account and hardware lookups (spec §6), under /v1 and /replicate/v1.
 * The version's openapi_schema is made from the adapter's schemas, the same ones that validate
 * inputs.
 */
import type { FastifyInstance } from "fastify";
import { urlBaseOf } from "../http/headers.js";
import { cogOpenApi } from "../models/cog-openapi.js";
import { isVersionOf, type ModelAdapter } from "../models/model.js";
import { NotFoundError } from "../predictions/errors.js";
import type { PredictionService } from "../predictions/service.js";
import { component } from "../schemas/components.js";
import { MODEL_PARAMS, PROBLEM } from "../schemas/definitions.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";

export interface ModelRoutesOptions {
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  provider: "cpu" | "cuda";
}

const NULLABLE_STRING = { type: ["string", "null"] } as unknown as JsonSchema;

const VERSION = component("ModelVersion", {
  type: "object",
  required: ["id", "created_at", "cog_version", "openapi_schema"],
  properties: {
    id: { type: "string" },
    created_at: { type: "string", format: "date-time" },
    cog_version: { type: "string" },
    openapi_schema: {
      type: "object",
      additionalProperties: true,
      description: "As Cog publishes it: components.schemas holds the model's Input and Output",
    },
  },
});

const MODEL = component("Model", {
  type: "object",
  properties: {
    url: { type: "string", format: "uri" },
    owner: { type: "string" },
    name: { type: "string" },
    description: { type: "string" },
    visibility: { type: "string", enum: ["public"] },
    is_official: { type: "boolean" },
    github_url: NULLABLE_STRING,
    paper_url: NULLABLE_STRING,
    license_url: NULLABLE_STRING,
    run_count: { type: "integer" },
    cover_image_url: NULLABLE_STRING,
    default_example: { type: "null" },
    latest_version: VERSION,
  },
});

const page = (items: JsonSchema): JsonSchema => ({
  type: "object",
  required: ["next", "previous", "results"],
  properties: { next: { type: "null" }, previous: { type: "null" }, results: { type: "array", items } },
});

/** OpenAI's model object, for OpenAI clients' models.list on the same path. */
const OPENAI_MODEL: JsonSchema = {
  type: "object",
  required: ["id", "object", "created", "owned_by"],
  properties: {
    id: { type: "string", description: "owner/name, as `model` on /v1/images/generations takes it" },
    object: { type: "string", enum: ["model"] },
    created: { type: "integer" },
    owned_by: { type: "string" },
  },
};
const MODEL_LIST: RouteSchema = {
  summary: "The served models: Replicate's page and OpenAI's list in one body",
  response: {
    200: {
      ...page(MODEL),
      required: ["next", "previous", "results", "object", "data"],
      properties: {
        ...page(MODEL).properties,
        object: { type: "string", enum: ["list"] },
        data: { type: "array", items: OPENAI_MODEL },
      },
    },
  },
};
const MODEL_GET: RouteSchema = {
  summary: "A model, with its latest version (and OpenAI's model fields, for OpenAI clients' models.retrieve)",
  params: MODEL_PARAMS,
  response: {
    200: { type: "object", properties: { ...MODEL.properties, ...OPENAI_MODEL.properties } },
    404: PROBLEM,
  },
};
const OPENAI_ERROR: JsonSchema = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      properties: {
        message: { type: "string" },
        type: { type: "string" },
        param: NULLABLE_STRING,
        code: NULLABLE_STRING,
      },
    },
  },
};
// The parameter shares Replicate's name for the first segment (one node in the route tree), but
// holds the whole id.
const OPENAI_MODEL_GET: RouteSchema = {
  summary: "OpenAI's models.retrieve: a served model by its id, owner/name with the slash encoded as %2F",
  params: {
    type: "object",
    required: ["model_owner"],
    properties: { model_owner: { type: "string", description: "The model's id, owner/name (slash as %2F)" } },
  },
  response: { 200: OPENAI_MODEL, 404: OPENAI_ERROR },
};
const VERSION_LIST: RouteSchema = {
  summary: "A model's versions, newest first",
  params: MODEL_PARAMS,
  response: { 200: page(VERSION), 404: PROBLEM },
};
const VERSION_GET: RouteSchema = {
  summary: "A version, with its openapi_schema",
  params: {
    type: "object",
    required: ["model_owner", "model_name", "version_id"],
    properties: { ...MODEL_PARAMS.properties, version_id: { type: "string" } },
  },
  response: { 200: VERSION, 404: PROBLEM },
};
const ACCOUNT_GET: RouteSchema = {
  summary: "The token's account",
  response: {
    200: {
      type: "object",
      required: ["type", "username", "name"],
      properties: { type: { type: "string" }, username: { type: "string" }, name: { type: "string" } },
    },
  },
};
const HARDWARE_LIST: RouteSchema = {
  summary: "What this server runs on",
  response: {
    200: {
      type: "array",
      items: {
        type: "object",
        required: ["name", "sku"],
        properties: { name: { type: "string" }, sku: { type: "string" } },
      },
    },
  },
};

/** OpenAI's model object: `id` is what `model` on /v1/images/generations takes. */
function openAiModel(m: ModelAdapter) {
  return {
    id: `${m.model.owner}/${m.model.name}`,
    object: "model",
    created: Math.floor(Date.parse(m.version.createdAt) / 1000),
    owned_by: m.model.owner,
  };
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
    if (!m) throw new NotFoundError("No such model");
    return m;
  };

  // One path, two clients: Replicate's models.list reads {next, previous, results}, OpenAI's
  // models.list reads {object: "list", data}. Each ignores the other's keys.
  app.get("/models", { schema: MODEL_LIST }, async (req) => {
    const { origin } = urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
    return {
      next: null,
      previous: null,
      results: await Promise.all(service.models.map((m) => modelJson(m, origin))),
      object: "list",
      data: service.models.map(openAiModel),
    };
  });

  // OpenAI's clients retrieve a model at /models/{id}: the openai package encodes the id's slash
  // (one segment, here), the Python one does not (Replicate's /models/{owner}/{name}, below, which
  // carries OpenAI's fields too).
  if (opts.apiPrefix === "/v1") {
    app.get<{ Params: { model_owner: string } }>(
      "/models/:model_owner",
      { schema: OPENAI_MODEL_GET },
      async (req, reply) => {
        const id = req.params.model_owner;
        const m = service.models.find((x) => `${x.model.owner}/${x.model.name}` === id);
        if (m) return openAiModel(m);
        return reply.code(404).send({
          error: {
            message: `The model '${id}' does not exist`,
            type: "invalid_request_error",
            param: "model",
            code: "model_not_found",
          },
        });
      },
    );
  }

  type ModelParams = { model_owner: string; model_name: string };
  app.get<{ Params: ModelParams }>("/models/:model_owner/:model_name", { schema: MODEL_GET }, async (req) => {
    const { origin } = urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
    const m = find(req.params.model_owner, req.params.model_name);
    return { ...(await modelJson(m, origin)), ...openAiModel(m) };
  });

  app.get<{ Params: ModelParams }>(
    "/models/:model_owner/:model_name/versions",
    { schema: VERSION_LIST },
    async (req) => {
      const m = find(req.params.model_owner, req.params.model_name);
      return { next: null, previous: null, results: [versionJson(m)] };
    },
  );

  app.get<{ Params: ModelParams & { version_id: string } }>(
    "/models/:model_owner/:model_name/versions/:version_id",
    { schema: VERSION_GET },
    async (req) => {
      const m = find(req.params.model_owner, req.params.model_name);
      if (!isVersionOf(m, req.params.version_id)) throw new NotFoundError("No such version");
      return versionJson(m);
    },
  );

  app.get("/account", { schema: ACCOUNT_GET }, async () => ({
    type: "user",
    username: "local",
    name: "sdserve local account",
  }));

  app.get("/hardware", { schema: HARDWARE_LIST }, async () =>
    opts.provider === "cuda"
      ? [
          { name: "Nvidia GPU (CUDA)", sku: "gpu" },
          { name: "CPU", sku: "cpu" },
        ]
      : [{ name: "CPU", sku: "cpu" }],
  );
}
