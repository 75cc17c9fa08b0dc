/**
 * GET /openapi.json, made from what is registered: every route's Fastify `schema` (collected as
 * routes are added) and every served model's schemas. Shared definitions (components.ts) become
 * `$ref`s; each model's Input, Output and enums appear under components.schemas, named
 * `<owner>.<name>.<Schema>`. Nothing here restates a route or a field: a new route or input field
 * appears with no second edit.
 */
import type { FastifyInstance, FastifySchema, RouteOptions } from "fastify";
import type { ModelAdapter } from "../models/model.js";
import { componentName } from "./components.js";
import type { JsonSchema } from "./json-schema.js";

/** A route's schema, with what OpenAPI adds to an operation. */
export interface RouteSchema extends FastifySchema {
  summary?: string;
  description?: string;
  /** Set on every route behind a token (see requireToken). */
  security?: Record<string, string[]>[];
}

export const BEARER_AUTH = [{ bearerAuth: [] }];

interface CollectedRoute {
  method: string | string[];
  url: string;
  /** The options object Fastify passes every onRoute hook: read late, after scoped hooks added to it. */
  options: RouteOptions;
}

/** Collects routes as they are added; call before any route is registered. */
export function collectRoutes(app: FastifyInstance): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook("onRoute", (options) => {
    routes.push({ method: options.method, url: options.url, options });
  });
  return routes;
}

/** A model's components are named `<owner>.<name>.<schema>`; OpenAPI allows [A-Za-z0-9._-]. */
export function modelComponentPrefix(m: ModelAdapter): string {
  return `${m.model.owner}.${m.model.name}.`.replace(/[^A-Za-z0-9._-]/g, "_");
}

function rewriteRefs(node: unknown, prefix: string): unknown {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, prefix));
  if (typeof node !== "object" || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] =
      k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")
        ? `#/components/schemas/${prefix}${v.slice("#/components/schemas/".length)}`
        : rewriteRefs(v, prefix);
  }
  return out;
}

const STATUS_TEXT: Record<string, string> = {
  "200": "OK",
  "201": "Created",
  "302": "Found: fetch the file at Location",
  "304": "Not modified",
  "400": "Bad request",
  "401": "No valid token",
  "404": "Not found",
  "410": "Gone",
  "413": "Body too large",
  "422": "Invalid request",
  "429": "Throttled or queue full",
};

export function openApiDocument(
  routes: readonly CollectedRoute[],
  models: readonly ModelAdapter[],
  version: string,
): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  const modelNames = new Map<object, string>();
  for (const m of models) {
    const prefix = modelComponentPrefix(m);
    for (const [name, schema] of Object.entries(m.schemas)) {
      // Models sharing one schema object share its first name.
      if (!modelNames.has(schema)) modelNames.set(schema, prefix + name);
      schemas[prefix + name] = rewriteRefs(schema, prefix);
    }
  }
  // Shared definitions become components the first time they are met, and $refs everywhere.
  const convert = (node: unknown, root = false): unknown => {
    if (Array.isArray(node)) return node.map((n) => convert(n));
    if (typeof node !== "object" || node === null) return node;
    const name = modelNames.get(node) ?? componentName(node);
    if (name && !root) {
      if (!(name in schemas)) {
        schemas[name] = {};
        schemas[name] = convert(node, true);
      }
      return { $ref: `#/components/schemas/${name}` };
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, convert(v)]));
  };

  const paths: Record<string, Record<string, unknown>> = {};
  const operationIds = new Set<string>();
  for (const route of routes) {
    const schema = (route.options.schema ?? {}) as RouteSchema;
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== "HEAD");
    for (const method of methods) {
      let id = `${method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+/g, "_")}`.replace(/_$/, "");
      while (operationIds.has(id)) id += "_";
      operationIds.add(id);
      const parameters = [
        ...parametersOf(schema.params, "path"),
        ...parametersOf(schema.querystring, "query"),
        ...parametersOf(schema.headers, "header"),
      ].map((p) => convert(p));
      const responses: Record<string, unknown> = {};
      for (const [code, response] of Object.entries((schema.response ?? {}) as Record<string, JsonSchema>)) {
        const description = STATUS_TEXT[code] ?? "Response";
        if (response["content"]) {
          responses[code] = { description, content: convert(response["content"]) };
        } else {
          const type = Number(code) >= 400 ? "application/problem+json" : "application/json";
          responses[code] = { description, content: { [type]: { schema: convert(response) } } };
        }
      }
      if (Object.keys(responses).length === 0) responses["200"] = { description: "OK" };
      const item = paths[path] ?? {};
      paths[path] = item;
      item[method.toLowerCase()] = {
        operationId: id,
        ...(schema.summary ? { summary: schema.summary } : {}),
        ...(schema.description ? { description: schema.description } : {}),
        ...(schema.security ? { security: schema.security } : {}),
        ...(parameters.length > 0 ? { parameters } : {}),
        ...(schema.body
          ? { requestBody: { required: true, content: { "application/json": { schema: convert(schema.body) } } } }
          : {}),
        responses,
      };
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "sdserve",
      version,
      description:
        "Replicate-compatible Stable Diffusion predictions; OpenAI's images API. Every /v1 route is also served under /replicate/v1.",
    },
    paths,
    components: {
      securitySchemes: {
        bearerAuth: { type: "http", scheme: "bearer" },
        // AUTOMATIC1111's routes (/sdapi/v1): --api-auth users, or a token as the password.
        basicAuth: { type: "http", scheme: "basic" },
      },
      schemas,
    },
  };
}

function parametersOf(schema: unknown, where: "path" | "query" | "header"): Record<string, unknown>[] {
  const s = schema as JsonSchema | undefined;
  if (!s?.properties) return [];
  return Object.entries(s.properties).map(([name, prop]) => ({
    name,
    in: where,
    required: where === "path" || (s.required?.includes(name) ?? false),
    ...(typeof prop.description === "string" ? { description: prop.description } : {}),
    schema: prop,
  }));
}
