/**
 * Output files at their capability URLs (/files/<key>/out-0.png): served without a token, since
 * the JS client fetches them with a bare fetch(url), and gone (410) once retention removed them.
 * With S3 storage and SDSERVE_OUTPUT_URLS=presigned, the answer is a redirect to a presigned URL.
 */
import type { FastifyInstance } from "fastify";
import { NotFoundError } from "../predictions/errors.js";
import type { PredictionService } from "../predictions/service.js";
import { PROBLEM } from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";

const FILE_SCHEMA: RouteSchema = {
  summary: "An output file (a capability URL: no token needed)",
  params: {
    type: "object",
    required: ["files_key", "name"],
    properties: { files_key: { type: "string" }, name: { type: "string", description: "out-0.png, …" } },
  },
  response: {
    200: { content: { "image/png": { schema: { type: "string", contentMediaType: "image/png" } } } },
    302: { type: "null" },
    404: PROBLEM,
    410: PROBLEM,
  },
};

export async function fileRoutes(app: FastifyInstance, opts: { service: PredictionService }): Promise<void> {
  app.route<{ Params: { files_key: string; name: string } }>({
    method: ["GET", "HEAD"],
    url: "/files/:files_key/:name",
    exposeHeadRoute: false,
    schema: FILE_SCHEMA,
    handler: async (req, reply) => {
      const file = await opts.service.outputs.byKey(req.params.files_key, req.params.name);
      if (!file) throw new NotFoundError("No such file");
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
