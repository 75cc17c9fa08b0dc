/**
 * The API's shared schema definitions: the status and webhook-event enums, the prediction object,
 * a page of predictions, the problem document, the create-prediction body. Routes build their
 * `schema` from these; validation, fast serialisation and /openapi.json all read the same objects.
 */

import type { ModelAdapter } from "../models/model.js";
import { PREDICTION_STATUSES, WEBHOOK_EVENTS } from "../predictions/prediction.js";
import { component } from "./components.js";
import type { JsonSchema } from "./json-schema.js";

export const STATUS = component("Status", {
  type: "string",
  enum: PREDICTION_STATUSES,
  description: "starting, then processing, then one of the three terminal states",
});

export const WEBHOOK_EVENT = component("WebhookEvent", {
  type: "string",
  enum: WEBHOOK_EVENTS,
  description: "An event a webhook is sent for",
});

const TIMESTAMP = { type: "string", format: "date-time" } as const;
const NULLABLE_TIMESTAMP = { type: ["string", "null"], format: "date-time" } as unknown as JsonSchema;

/**
 * A prediction as the API sends it (serialize.ts makes it), properties in the order sent.
 * `input` is echoed as sent, unknown keys included, so it is any object here; the model's Input
 * schema says what it may hold.
 */
export const PREDICTION = component("Prediction", {
  type: "object",
  required: [
    "id",
    "model",
    "version",
    "input",
    "logs",
    "output",
    "data_removed",
    "error",
    "status",
    "source",
    "created_at",
    "started_at",
    "completed_at",
    // metrics and urls are always sent too, but listed here fast-json-stringify would write them
    // before the optional webhook fields: urls comes last in Replicate's objects.
  ],
  properties: {
    id: { type: "string" },
    model: { type: "string", description: "owner/name" },
    version: { type: "string" },
    input: {
      type: "object",
      additionalProperties: true,
      description: "The input as sent, less keys the model does not take",
    },
    logs: { type: "string" },
    output: {
      type: ["array", "null"],
      items: { type: "string", format: "uri" },
      description: "The output files' URLs, once succeeded",
    } as unknown as JsonSchema,
    data_removed: { type: "boolean" },
    error: { type: ["string", "null"] } as unknown as JsonSchema,
    status: STATUS,
    source: { type: "string", enum: ["api"] },
    created_at: TIMESTAMP,
    started_at: NULLABLE_TIMESTAMP,
    completed_at: NULLABLE_TIMESTAMP,
    webhook: { type: "string", format: "uri" },
    webhook_events_filter: { type: "array", items: WEBHOOK_EVENT },
    deadline: TIMESTAMP,
    metrics: { type: "object", additionalProperties: { type: "number" } } as unknown as JsonSchema,
    urls: {
      type: "object",
      required: ["get", "cancel", "stream", "web"],
      properties: {
        get: { type: "string", format: "uri" },
        cancel: { type: "string", format: "uri" },
        stream: { type: "string", format: "uri", description: "Server-Sent Events; no token needed" },
        web: { type: "string", format: "uri", description: "The prediction's page; no token needed" },
      },
    },
  },
});

export const PREDICTION_PAGE = component("PredictionPage", {
  type: "object",
  required: ["previous", "next", "results"],
  properties: {
    previous: { type: ["string", "null"] } as unknown as JsonSchema,
    next: { type: ["string", "null"] } as unknown as JsonSchema,
    results: { type: "array", items: PREDICTION },
  },
});

/** RFC 7807, with Replicate's invalid_fields on a 422. */
export const PROBLEM = component("Problem", {
  type: "object",
  required: ["detail", "status"],
  properties: {
    title: { type: "string" },
    detail: { type: "string" },
    status: { type: "integer" },
    invalid_fields: {
      type: "array",
      items: {
        type: "object",
        required: ["type", "field", "description"],
        properties: { type: { type: "string" }, field: { type: "string" }, description: { type: "string" } },
      },
    },
    retry_after: { type: "integer" },
  },
});

/** Longest webhook URL accepted: browsers' and proxies' practical limit; the URL is stored and sent. */
const MAX_WEBHOOK_URL_LENGTH = 2048;

const CREATE_FIELDS: Record<string, JsonSchema> = {
  input: { type: "object", description: "The model's input: see its Input schema. Unknown keys are ignored." },
  webhook: { type: "string", format: "uri", maxLength: MAX_WEBHOOK_URL_LENGTH },
  webhook_events_filter: { type: "array", items: WEBHOOK_EVENT },
  // Deprecated by Replicate, still sent by python's stream(): accepted and ignored (urls.stream is always given).
  stream: { type: "boolean", deprecated: true },
  // The older python client's name for a completed-only webhook.
  webhook_completed: { type: "string", format: "uri", maxLength: MAX_WEBHOOK_URL_LENGTH, deprecated: true },
};

/** POST /predictions, as the published request schema has it (additionalProperties: false). */
const CREATE_BODY: JsonSchema = {
  type: "object",
  required: ["version", "input"],
  additionalProperties: false,
  properties: {
    version: { type: "string", description: "A 64-hex version id, owner/name:<id>, or owner/name" },
    ...CREATE_FIELDS,
  },
};

/** POST /models/{owner}/{name}/predictions: the same minus version. */
const MODEL_CREATE_BODY: JsonSchema = {
  type: "object",
  required: ["input"],
  additionalProperties: false,
  properties: CREATE_FIELDS,
};

/** Headers of the create routes (documented; parsed by http/headers.ts). */
export const CREATE_HEADERS = {
  type: "object",
  properties: {
    prefer: { type: "string", description: "wait or wait=N (1–60): hold the response until the prediction finishes" },
    "cancel-after": {
      type: "string",
      description: "Cancel the prediction after this long (90s, 5m, 1h30m; at least 5s)",
    },
    "idempotency-key": { type: "string", description: "The same key returns the same prediction for a day" },
  },
} as const satisfies JsonSchema;

export const PREDICTION_ID_PARAMS = {
  type: "object",
  required: ["prediction_id"],
  properties: { prediction_id: { type: "string", description: "The prediction's id" } },
} as const satisfies JsonSchema;

export const MODEL_PARAMS = {
  type: "object",
  required: ["model_owner", "model_name"],
  properties: { model_owner: { type: "string" }, model_name: { type: "string" } },
} as const satisfies JsonSchema;

/** Errors every authenticated route may answer with. */
export const AUTH_ERRORS = {
  401: PROBLEM,
  429: PROBLEM,
} as const;

const createBodies = new WeakMap<readonly ModelAdapter[], { version: JsonSchema; model: JsonSchema }>();

/**
 * The create bodies of a server, whose `input` names the served models' Input schemas (for the
 * document: the checker here ignores anyOf, and each model checks its own input, with its own
 * $refs, once the version is known).
 */
export function createBodiesFor(models: readonly ModelAdapter[]): { version: JsonSchema; model: JsonSchema } {
  let bodies = createBodies.get(models);
  if (!bodies) {
    const input = { ...CREATE_FIELDS["input"], anyOf: models.map((m) => m.schemas["Input"] ?? { type: "object" }) };
    bodies = {
      version: component("PredictionRequest", {
        ...CREATE_BODY,
        properties: { ...CREATE_BODY.properties, input },
      }),
      model: component("ModelPredictionRequest", {
        ...MODEL_CREATE_BODY,
        properties: { ...MODEL_CREATE_BODY.properties, input },
      }),
    };
    createBodies.set(models, bodies);
  }
  return bodies;
}
