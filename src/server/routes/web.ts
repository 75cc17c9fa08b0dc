/**
 * The web pages: the playground at /, the prediction page behind urls.web (/p/<key>, a capability
 * URL like the stream), and their static files under /static. The pages hold no token: what needs
 * one runs in the browser with the token the user pasted there.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { loadStaticAssets } from "../../web/assets.js";
import { playgroundPage } from "../../web/playground-page.js";
import { predictionPage } from "../../web/prediction-page.js";
import { predictionSection } from "../../web/prediction-view.js";
import { inputFields } from "../../web/schema-form.js";
import { resolveFileInput } from "../files/file-inputs.js";
import { sniffContentType } from "../files/uploads.js";
import { urlBaseOf } from "../http/headers.js";
import { isVersionOf } from "../models/model.js";
import { NotFoundError } from "../predictions/errors.js";
import { toApiPrediction } from "../predictions/serialize.js";
import type { PredictionService } from "../predictions/service.js";
import { PROBLEM } from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";

const HTML = { 200: { content: { "text/html": { schema: { type: "string" } } } }, 404: PROBLEM };

const PLAYGROUND_SCHEMA: RouteSchema = {
  summary: "The playground: a form made from a model's Input schema",
  querystring: { type: "object", properties: { model: { type: "string", description: "owner/name" } } },
  response: HTML,
};
const PAGE_SCHEMA: RouteSchema = {
  summary: "A prediction's page (urls.web): a capability URL, no token needed",
  params: { type: "object", required: ["key"], properties: { key: { type: "string" } } },
  querystring: {
    type: "object",
    properties: { fragment: { type: "string", description: "page or embed: the prediction's section alone" } },
  },
  response: HTML,
};
const INPUT_SCHEMA: RouteSchema = {
  summary: "A prediction's input picture given as a data: URI (under its page's capability URL)",
  params: {
    type: "object",
    required: ["key", "name"],
    properties: { key: { type: "string" }, name: { type: "string" } },
  },
  response: { 200: { content: { "image/*": { schema: { type: "string", format: "binary" } } } }, 404: PROBLEM },
};
const STATIC_SCHEMA: RouteSchema = {
  summary: "The pages' scripts and styles",
  params: { type: "object", required: ["name"], properties: { name: { type: "string" } } },
  response: { 200: { content: { "*/*": { schema: { type: "string" } } } }, 304: { type: "null" }, 404: PROBLEM },
};

/**
 * Scripts and styles only from /static; images from here (outputs), data: URLs (previews) and
 * blob: URLs (a picture chosen in the playground, an input file read with the token).
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function sendHtml(reply: FastifyReply, text: string): FastifyReply {
  return (
    reply
      .type("text/html; charset=utf-8")
      .header("Cache-Control", "no-store")
      .header("Content-Security-Policy", CSP)
      .header("X-Frame-Options", "DENY")
      .header("X-Content-Type-Options", "nosniff")
      // A page URL is a capability: never hand it on as a Referer.
      .header("Referrer-Policy", "no-referrer")
      .header("X-Robots-Tag", "noindex")
      .send(text)
  );
}

export async function webRoutes(
  app: FastifyInstance,
  opts: { service: PredictionService; publicBaseUrl: string | undefined },
): Promise<void> {
  const { service } = opts;
  const assets = loadStaticAssets();

  // The playground of the first model served, or of ?model=owner/name.
  app.get<{ Querystring: { model?: string } }>("/", { schema: PLAYGROUND_SCHEMA }, async (req, reply) => {
    const wanted = req.query.model;
    const model = wanted
      ? service.models.find((m) => `${m.model.owner}/${m.model.name}` === wanted)
      : service.models[0];
    if (!model) throw new NotFoundError("No such model");
    return sendHtml(reply, playgroundPage(model, urlBaseOf(req, "/v1", opts.publicBaseUrl).api, service.models));
  });

  type PageRequest = { Params: { key: string }; Querystring: { fragment?: string } };
  app.get<PageRequest>("/p/:key", { schema: PAGE_SCHEMA }, async (req, reply) => {
    const p = await service.findByStreamKey(req.params.key);
    if (!p) throw new NotFoundError("No such prediction");
    const api = toApiPrediction(p, urlBaseOf(req, "/v1", opts.publicBaseUrl));
    const model = service.models.find((m) => isVersionOf(m, p.version));
    const fields = model ? inputFields(model.schemas) : undefined;
    // ?fragment=page|embed: the prediction's section alone, for the script to swap in.
    const { fragment } = req.query;
    if (fragment === "page" || fragment === "embed") {
      return sendHtml(reply, predictionSection(api, { embed: fragment === "embed", fields }).text);
    }
    return sendHtml(reply, predictionPage(api, fields));
  });

  // An input picture sent as a data: URI, for the page's thumbnail. Only data: URIs: they are
  // part of the input the page shows anyway. An uploaded file stays its token's (the page's
  // script fetches it with the token), and other URLs are never fetched for the page.
  type InputRequest = { Params: { key: string; name: string } };
  app.get<InputRequest>("/p/:key/inputs/:name", { schema: INPUT_SCHEMA }, async (req, reply) => {
    const p = await service.findByStreamKey(req.params.key);
    const value = p && !p.dataRemoved ? p.input[req.params.name] : undefined;
    if (typeof value !== "string" || value.slice(0, 5).toLowerCase() !== "data:") {
      throw new NotFoundError("No such input picture");
    }
    const data = await resolveFileInput(value, req.params.name, p?.account ?? "", { allowPrivate: false }).catch(
      () => undefined,
    );
    const type = data ? sniffContentType(data) : undefined;
    if (!data || !type) throw new NotFoundError("No such input picture");
    return reply
      .header("Content-Type", type)
      .header("X-Content-Type-Options", "nosniff")
      .header("Cache-Control", "private, no-store")
      .header("Referrer-Policy", "no-referrer")
      .header("X-Robots-Tag", "noindex")
      .send(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });

  app.get<{ Params: { name: string } }>("/static/:name", { schema: STATIC_SCHEMA }, async (req, reply) => {
    const asset = assets.get(req.params.name);
    if (!asset) throw new NotFoundError("No such file");
    reply
      .header("Content-Type", asset.contentType)
      .header("ETag", asset.etag)
      // Revalidated on each load (a 304 when unchanged), so an upgraded server is seen at once.
      .header("Cache-Control", "no-cache")
      .header("X-Content-Type-Options", "nosniff");
    if (req.headers["if-none-match"] === asset.etag) return reply.code(304).send();
    return reply.send(asset.body);
  });
}
