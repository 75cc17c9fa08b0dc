/**
 * Output files at their capability URLs (/files/<key>/out-0.png): served without a token, since
 * the JS client fetches them with a bare fetch(url), and gone (410) once retention removed them.
 * With S3 storage and SDSERVE_OUTPUT_URLS=presigned, the answer is a redirect to a presigned URL.
 */
import type { FastifyInstance } from "fastify";
import { HttpProblem, notFound } from "../http/problem.js";
import type { PredictionService } from "../predictions/service.js";

export async function fileRoutes(app: FastifyInstance, opts: { service: PredictionService }): Promise<void> {
  app.route<{ Params: { key: string; name: string } }>({
    method: ["GET", "HEAD"],
    url: "/files/:key/:name",
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const file = await opts.service.file(req.params.key, req.params.name);
      if (file === "gone") {
        throw new HttpProblem(410, "Gone", "This output was removed when its retention period ended.");
      }
      if (!file) throw notFound();
      if ("redirect" in file)
        return reply.code(302).header("Location", file.redirect).header("Cache-Control", "no-store").send();
      reply
        .header("Content-Type", file.contentType)
        .header("Content-Length", String(file.size))
        .header("Cache-Control", "private, max-age=3600")
        .header("X-Content-Type-Options", "nosniff");
      if (req.method === "HEAD") return reply.send();
      return reply.send(Buffer.from(await file.read()));
    },
  });
}
