/**
 * A version's `openapi_schema`, made from its model adapter's schemas (written once, in the
 * adapter), in the shape Cog generates for a model container (spec §8.2): clients read
 * components.schemas.Input and .Output from it. The server's own document is schemas/openapi.ts.
 */
import { PREDICTION_STATUSES, WEBHOOK_EVENTS } from "../predictions/prediction.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { ModelAdapter } from "./model.js";

const STATUS: JsonSchema = {
  title: "Status",
  description: "An enumeration.",
  enum: PREDICTION_STATUSES,
  type: "string",
};

const WEBHOOK_EVENT: JsonSchema = {
  title: "WebhookEvent",
  description: "An enumeration.",
  enum: WEBHOOK_EVENTS,
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
              default: WEBHOOK_EVENTS,
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
