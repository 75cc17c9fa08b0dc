/** GET /p/<key>: the prediction page behind urls.web (a capability URL, like the stream). */
import type { FastifyInstance } from "fastify";
import { predictionPage } from "../../web/prediction-page.js";
import { urlBaseOf } from "../http/headers.js";
import { notFound } from "../http/problem.js";
import { toApiPrediction } from "../predictions/serialize.js";
import type { PredictionService } from "../predictions/service.js";

export async function webRoutes(
  app: FastifyInstance,
  opts: { service: PredictionService; publicBaseUrl: string | undefined },
): Promise<void> {
  app.get<{ Params: { key: string } }>("/p/:key", async (req, reply) => {
    const p = await opts.service.findByStreamKey(req.params.key);
    if (!p) throw notFound();
    const html = predictionPage(toApiPrediction(p, urlBaseOf(req, "/v1", opts.publicBaseUrl)));
    return reply
      .type("text/html; charset=utf-8")
      .header("Cache-Control", "no-store")
      .header(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
      )
      .header("X-Frame-Options", "DENY")
      .send(html);
  });
}
