/**
 * The account's webhook signing secret (GET /webhooks/default/secret, as Replicate) and, beyond
 * Replicate, a prediction's webhook delivery log (GET /predictions/{id}/webhook_deliveries).
 */
import type { FastifyInstance } from "fastify";
import type { PredictionService } from "../predictions/service.js";
import { PREDICTION_ID_PARAMS, PROBLEM, WEBHOOK_EVENT } from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";
import type { WebhookDispatcher } from "../webhooks/dispatcher.js";

const SECRET_SCHEMA: RouteSchema = {
  summary: "The account's webhook signing secret (Standard Webhooks)",
  response: { 200: { type: "object", required: ["key"], properties: { key: { type: "string" } } } },
};

const DELIVERIES_SCHEMA: RouteSchema = {
  summary: "A prediction's webhook attempts, oldest first",
  params: PREDICTION_ID_PARAMS,
  response: {
    200: {
      type: "object",
      required: ["results"],
      properties: {
        results: {
          type: "array",
          items: {
            type: "object",
            properties: {
              webhook_id: { type: "string" },
              event: WEBHOOK_EVENT,
              attempt: { type: "integer" },
              at: { type: "string", format: "date-time" },
              status_code: { type: ["integer", "null"] },
              error: { type: ["string", "null"] },
              delivered: { type: "boolean" },
              final: { type: "boolean" },
            },
          },
        },
      },
    },
    404: PROBLEM,
  },
};

export async function webhookRoutes(
  app: FastifyInstance,
  opts: { service: PredictionService; webhooks: WebhookDispatcher },
): Promise<void> {
  app.get("/webhooks/default/secret", { schema: SECRET_SCHEMA }, async (req) => ({
    key: await opts.webhooks.secretFor(req.account),
  }));

  app.get<{ Params: { prediction_id: string } }>(
    "/predictions/:prediction_id/webhook_deliveries",
    { schema: DELIVERIES_SCHEMA },
    async (req) => {
      const deliveries = await opts.service.webhookDeliveries(req.account, req.params.prediction_id);
      return {
        results: deliveries.map((d) => ({
          webhook_id: d.webhookId,
          event: d.event,
          attempt: d.attempt,
          at: d.at,
          status_code: d.statusCode,
          error: d.error,
          delivered: d.delivered,
          final: d.final,
        })),
      };
    },
  );
}
