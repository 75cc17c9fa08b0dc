/**
 * The account's webhook signing secret (GET /webhooks/default/secret, as Replicate) and, beyond
 * Replicate, a prediction's webhook delivery log (GET /predictions/{id}/webhook_deliveries).
 */
import type { FastifyInstance } from "fastify";
import type { PredictionService } from "../predictions/service.js";
import type { WebhookDispatcher } from "../webhooks/dispatcher.js";

export async function webhookRoutes(
  app: FastifyInstance,
  opts: { service: PredictionService; webhooks: WebhookDispatcher },
): Promise<void> {
  app.get("/webhooks/default/secret", async (req) => ({ key: await opts.webhooks.secretFor(req.account) }));

  app.get<{ Params: { id: string } }>("/predictions/:id/webhook_deliveries", async (req) => {
    const deliveries = await opts.service.webhookDeliveries(req.account, req.params.id);
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
  });
}
