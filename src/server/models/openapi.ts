/**
 * OpenAPI documents made from a model adapter's schemas (written once, in the adapter):
 * - the version's `openapi_schema`, in the shape Cog generates for a model container
 *   (spec §8.2): clients read components.schemas.Input and .Output from it;
 * - the server's own document at GET /openapi.json, whose create-prediction body refers to
 *   the same Input schema.
 */
import type { JsonSchema } from "./json-schema.js";
import type { ModelAdapter } from "./model.js";

const STATUS: JsonSchema = {
  title: "Status",
  description: "An enumeration.",
  enum: ["starting", "processing", "succeeded", "canceled", "failed"],
  type: "string",
};

const WEBHOOK_EVENT: JsonSchema = {
  title: "WebhookEvent",
  description: "An enumeration.",
  enum: ["start", "output", "logs", "completed"],
  type: "string",
};

/** The version's openapi_schema, as Cog renders a predictor: fixed envelope, model-specific Input/Output. */
export function cogOpenApi(model: ModelAdapter): Record<string, unknown> {
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
  return {
    openapi: "3.0.2",
    info: { title: "Cog", version: "0.1.0" },
    paths: {
      "/": {
        get: {
          summary: "Root",
          operationId: "root__get",
          responses: { "200": { description: "Successful Response", ...json({ title: "Response Root  Get" }) } },
        },
      },
      "/health-check": {
        get: {
          summary: "Healthcheck",
          operationId: "healthcheck_health_check_get",
          responses: {
            "200": { description: "Successful Response", ...json({ title: "Response Healthcheck Health Check Get" }) },
          },
        },
      },
      "/predictions": {
        post: {
          summary: "Predict",
          description: "Run a single prediction on the model",
          operationId: "predict_predictions_post",
          requestBody: json(ref("PredictionRequest")),
          responses: {
            "200": { description: "Successful Response", ...json(ref("PredictionResponse")) },
            "422": { description: "Validation Error", ...json(ref("HTTPValidationError")) },
          },
        },
      },
      "/predictions/{prediction_id}": {
        put: {
          summary: "Predict Idempotent",
          description: "Run a single prediction on the model (idempotent creation).",
          operationId: "predict_idempotent_predictions__prediction_id__put",
          parameters: [
            { required: true, schema: { title: "Prediction ID", type: "string" }, name: "prediction_id", in: "path" },
          ],
          requestBody: { ...json({ title: "Prediction Request", allOf: [ref("PredictionRequest")] }), required: true },
          responses: {
            "200": { description: "Successful Response", ...json(ref("PredictionResponse")) },
            "422": { description: "Validation Error", ...json(ref("HTTPValidationError")) },
          },
        },
      },
      "/predictions/{prediction_id}/cancel": {
        post: {
          summary: "Cancel",
          description: "Cancel a running prediction",
          operationId: "cancel_predictions__prediction_id__cancel_post",
          parameters: [
            { required: true, schema: { title: "Prediction ID", type: "string" }, name: "prediction_id", in: "path" },
          ],
          responses: {
            "200": {
              description: "Successful Response",
              ...json({ title: "Response Cancel Predictions  Prediction Id  Cancel Post" }),
            },
            "422": { description: "Validation Error", ...json(ref("HTTPValidationError")) },
          },
        },
      },
      "/shutdown": {
        post: {
          summary: "Start Shutdown",
          operationId: "start_shutdown_shutdown_post",
          responses: {
            "200": { description: "Successful Response", ...json({ title: "Response Start Shutdown Shutdown Post" }) },
          },
        },
      },
    },
    components: {
      schemas: {
        ...model.schemas,
        Status: STATUS,
        WebhookEvent: WEBHOOK_EVENT,
        PredictionRequest: {
          title: "PredictionRequest",
          type: "object",
          properties: {
            input: ref("Input"),
            id: { title: "Id", type: "string" },
            created_at: { title: "Created At", type: "string", format: "date-time" },
            output_file_prefix: { title: "Output File Prefix", type: "string" },
            webhook: { title: "Webhook", maxLength: 65536, minLength: 1, type: "string", format: "uri" },
            webhook_events_filter: {
              type: "array",
              items: ref("WebhookEvent"),
              default: ["start", "output", "logs", "completed"],
            },
          },
        },
        PredictionResponse: {
          title: "PredictionResponse",
          type: "object",
          properties: {
            input: ref("Input"),
            output: ref("Output"),
            id: { title: "Id", type: "string" },
            version: { title: "Version", type: "string" },
            created_at: { title: "Created At", type: "string", format: "date-time" },
            started_at: { title: "Started At", type: "string", format: "date-time" },
            completed_at: { title: "Completed At", type: "string", format: "date-time" },
            logs: { title: "Logs", type: "string", default: "" },
            error: { title: "Error", type: "string" },
            status: ref("Status"),
            metrics: { title: "Metrics", type: "object" },
          },
        },
        ValidationError: {
          title: "ValidationError",
          required: ["loc", "msg", "type"],
          type: "object",
          properties: {
            loc: { title: "Location", type: "array", items: { anyOf: [{ type: "string" }, { type: "integer" }] } },
            msg: { title: "Message", type: "string" },
            type: { title: "Error Type", type: "string" },
          },
        },
        HTTPValidationError: {
          title: "HTTPValidationError",
          type: "object",
          properties: { detail: { title: "Detail", type: "array", items: ref("ValidationError") } },
        },
      },
    },
  };
}

/** The server's own API, in OpenAPI 3.1, at GET /openapi.json. */
export function serverOpenApi(models: readonly ModelAdapter[], version: string): Record<string, unknown> {
  const [model] = models;
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
  const problem = (description: string) => ({
    description,
    content: { "application/problem+json": { schema: ref("Problem") } },
  });
  const idParam = { name: "prediction_id", in: "path", required: true, schema: { type: "string" } };
  const auth = [{ bearerAuth: [] }];
  const predictionResponses = {
    "200": { description: "The prediction", ...json(ref("Prediction")) },
    "404": problem("Unknown prediction (or another token's)"),
  };
  const createBody = (withVersion: boolean) => ({
    required: true,
    ...json({
      type: "object",
      additionalProperties: false,
      required: withVersion ? ["version", "input"] : ["input"],
      properties: {
        ...(withVersion
          ? { version: { type: "string", description: "A 64-hex version id, owner/name:<id>, or owner/name" } }
          : {}),
        input: ref("Input"),
        webhook: { type: "string", format: "uri" },
        webhook_events_filter: {
          type: "array",
          items: { type: "string", enum: ["start", "output", "logs", "completed"] },
        },
        stream: { type: "boolean", deprecated: true },
      },
    }),
  });
  const createParams = [
    {
      name: "Prefer",
      in: "header",
      schema: { type: "string" },
      description: "wait or wait=N (1–60): hold the response until the prediction finishes",
    },
    {
      name: "Cancel-After",
      in: "header",
      schema: { type: "string" },
      description: "Cancel the prediction after this long (90s, 5m, 1h30m; at least 5s)",
    },
    {
      name: "Idempotency-Key",
      in: "header",
      schema: { type: "string" },
      description: "The same key returns the same prediction",
    },
  ];
  const createResponses = {
    "201": { description: "Created (with Prefer: wait, finished or still starting)", ...json(ref("Prediction")) },
    "401": problem("No valid token"),
    "422": problem("Invalid version or input"),
    "429": problem("Queue full or rate limited"),
  };
  const paths: Record<string, unknown> = {
    "/v1/predictions": {
      post: {
        summary: "Create a prediction",
        operationId: "predictions.create",
        security: auth,
        parameters: createParams,
        requestBody: createBody(true),
        responses: createResponses,
      },
      get: {
        summary: "List predictions, newest first",
        operationId: "predictions.list",
        security: auth,
        parameters: ["cursor", "page_size", "status", "model", "version", "created_after", "created_before"].map(
          (name) => ({
            name,
            in: "query",
            schema: { type: "string" },
          }),
        ),
        responses: { "200": { description: "A page", ...json(ref("PredictionPage")) } },
      },
    },
    "/v1/models/{model_owner}/{model_name}/predictions": {
      post: {
        summary: "Create a prediction with a model's latest version",
        operationId: "models.predictions.create",
        security: auth,
        parameters: [
          { name: "model_owner", in: "path", required: true, schema: { type: "string" } },
          { name: "model_name", in: "path", required: true, schema: { type: "string" } },
          ...createParams,
        ],
        requestBody: createBody(false),
        responses: { ...createResponses, "404": problem("Unknown model") },
      },
    },
    "/v1/predictions/{prediction_id}": {
      get: {
        summary: "Get a prediction",
        operationId: "predictions.get",
        security: auth,
        parameters: [idParam],
        responses: predictionResponses,
      },
    },
    "/v1/predictions/{prediction_id}/cancel": {
      post: {
        summary: "Cancel a prediction",
        operationId: "predictions.cancel",
        security: auth,
        parameters: [idParam],
        responses: predictionResponses,
      },
    },
    "/v1/predictions/{prediction_id}/webhook_deliveries": {
      get: {
        summary: "A prediction's webhook attempts",
        operationId: "predictions.webhookDeliveries",
        security: auth,
        parameters: [idParam],
        responses: { "200": { description: "Attempts, oldest first" } },
      },
    },
    "/v1/streams/{stream_key}": {
      get: {
        summary: "A prediction's events (urls.stream): Server-Sent Events, no token needed",
        operationId: "streams.get",
        parameters: [
          { name: "stream_key", in: "path", required: true, schema: { type: "string" } },
          { name: "Last-Event-ID", in: "header", schema: { type: "string" } },
        ],
        responses: {
          "200": { description: "logs, output, error and done events", content: { "text/event-stream": {} } },
        },
      },
    },
    "/v1/models/{model_owner}/{model_name}": {
      get: {
        summary: "Get a model",
        operationId: "models.get",
        security: auth,
        responses: { "200": { description: "The model" } },
      },
    },
    "/v1/models/{model_owner}/{model_name}/versions": {
      get: {
        summary: "List a model's versions",
        operationId: "models.versions.list",
        security: auth,
        responses: { "200": { description: "Versions, newest first" } },
      },
    },
    "/v1/models/{model_owner}/{model_name}/versions/{version_id}": {
      get: {
        summary: "Get a version and its openapi_schema",
        operationId: "models.versions.get",
        security: auth,
        responses: { "200": { description: "The version" } },
      },
    },
    "/v1/models": {
      get: {
        summary: "List models",
        operationId: "models.list",
        security: auth,
        responses: { "200": { description: "Models" } },
      },
    },
    "/v1/account": {
      get: {
        summary: "The token's account",
        operationId: "account.get",
        security: auth,
        responses: { "200": { description: "The account" } },
      },
    },
    "/v1/hardware": {
      get: {
        summary: "What this server runs on",
        operationId: "hardware.list",
        security: auth,
        responses: { "200": { description: "Hardware" } },
      },
    },
    "/v1/webhooks/default/secret": {
      get: {
        summary: "The webhook signing secret",
        operationId: "webhooks.default.secret.get",
        security: auth,
        responses: { "200": { description: "{key: whsec_…}" } },
      },
    },
    "/files/{files_key}/{name}": {
      get: {
        summary: "An output file (capability URL, no token needed)",
        operationId: "files.get",
        responses: {
          "200": { description: "The file", content: { "image/png": {} } },
          "410": problem("Removed by retention"),
        },
      },
    },
    "/health-check": {
      get: {
        summary: "Liveness and model state",
        operationId: "health",
        responses: { "200": { description: "STARTING, READY or SETUP_FAILED" } },
      },
    },
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "sdserve",
      version,
      description:
        "Replicate-compatible Stable Diffusion predictions. Every /v1 route is also served under /replicate/v1.",
    },
    paths,
    components: {
      securitySchemes: { bearerAuth: { type: "http", scheme: "bearer" } },
      schemas: {
        // The model's schemas, as the model publishes them; `$ref`s inside point here.
        ...(model ? model.schemas : {}),
        Prediction: {
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
            "created_at",
            "urls",
          ],
          properties: {
            id: { type: "string" },
            model: { type: "string" },
            version: { type: "string" },
            input: ref("Input"),
            logs: { type: "string" },
            output: { anyOf: [ref("Output"), { type: "null" }] },
            data_removed: { type: "boolean" },
            error: { type: ["string", "null"] },
            status: { type: "string", enum: ["starting", "processing", "succeeded", "failed", "canceled"] },
            source: { type: "string", enum: ["api", "web"] },
            created_at: { type: "string", format: "date-time" },
            started_at: { type: ["string", "null"], format: "date-time" },
            completed_at: { type: ["string", "null"], format: "date-time" },
            webhook: { type: "string" },
            webhook_events_filter: { type: "array", items: { type: "string" } },
            deadline: { type: "string", format: "date-time" },
            metrics: { type: "object", additionalProperties: { type: "number" } },
            urls: {
              type: "object",
              properties: {
                get: { type: "string" },
                cancel: { type: "string" },
                stream: { type: "string" },
                web: { type: "string" },
              },
            },
          },
        },
        PredictionPage: {
          type: "object",
          properties: {
            next: { type: ["string", "null"] },
            previous: { type: ["string", "null"] },
            results: { type: "array", items: ref("Prediction") },
          },
        },
        Problem: {
          type: "object",
          properties: {
            title: { type: "string" },
            detail: { type: "string" },
            status: { type: "integer" },
            invalid_fields: {
              type: "array",
              items: {
                type: "object",
                properties: { type: { type: "string" }, field: { type: "string" }, description: { type: "string" } },
              },
            },
          },
        },
      },
    },
  };
}
