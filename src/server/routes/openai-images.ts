/**
 * OpenAI's Images API, POST /v1/images/generations (spec §9), for clients built on the openai
 * package: {prompt, n, size, response_format, model} becomes a prediction of the model named
 * (queued, stored and listed like any other), answered when it finishes as
 * {created, data: [{url} | {b64_json}]}, or with stream: true as OpenAI's server-sent image events.
 * Errors use OpenAI's envelope, not problem+json.
 * Fields of the model's own input (num_inference_steps, seed, negative_prompt, guidance_scale,
 * scheduler) may be added to the body; OpenAI's other fields are read in openai-options.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Uploads } from "../files/uploads.js";
import { startEventStream } from "../http/event-stream.js";
import { urlBaseOf } from "../http/headers.js";
import { type HttpProblem, problemOf } from "../http/problem.js";
import type { ImageLimits, ModelAdapter } from "../models/model.js";
import type { PredictionRecord } from "../predictions/prediction.js";
import { fileUrl } from "../predictions/serialize.js";
import type { PredictionService } from "../predictions/service.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";
import { imageEditsRoute } from "./openai-edits.js";
import {
  chooseModel,
  encodeOutput,
  OPENAI_FIELDS,
  OpenAiError,
  type OutputChoice,
  readOutputChoice,
  usesGptImageField,
} from "./openai-options.js";

// Other OpenAI routes (edits) throw the same error.
export { OpenAiError } from "./openai-options.js";

export interface OpenAiImagesOptions {
  service: PredictionService;
  publicBaseUrl: string | undefined;
  authenticate: (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => void;
  /** Marks the routes as needing a token in /openapi.json. */
  requireTokenInDocument: (route: { schema?: RouteSchema }) => void;
  /** Where /images/edits keeps the pictures it is sent (as Files API uploads); absent: no edits route. */
  uploads?: Uploads;
}

/** How often a quiet event stream gets a comment. */
const KEEPALIVE_MS = 15_000;

/** The model's input names that an OpenAI request may also carry. */
const PASSED_THROUGH = ["negative_prompt", "num_inference_steps", "guidance_scale", "scheduler", "seed"];
/** Where OpenAI's names land in the model's input, for error messages. */
const OPENAI_PARAM: Record<string, string> = { width: "size", height: "size", num_outputs: "n", prompt: "prompt" };

function toOpenAiError(err: unknown): OpenAiError {
  if (err instanceof OpenAiError) return err;
  const problem = problemOf(err);
  if (problem) return fromProblem(problem);
  const status = (err as { statusCode?: number }).statusCode;
  if (status && status >= 400 && status < 500) {
    return new OpenAiError(status, (err as Error).message, "invalid_request_error");
  }
  return new OpenAiError(500, "The server failed to handle this request.", "server_error");
}

function fromProblem(err: HttpProblem): OpenAiError {
  if (err.status === 401)
    return new OpenAiError(401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
  // OpenAI's own: type "requests" (a requests-per-minute limit), code "rate_limit_exceeded".
  if (err.status === 429) return new OpenAiError(429, err.detail, "requests", null, "rate_limit_exceeded", err.headers);
  if (err.status === 413 || err.status === 400) return new OpenAiError(err.status, err.detail, "invalid_request_error");
  const fields = (err.extra["invalid_fields"] ?? []) as { type: string; field: string; description: string }[];
  const first = fields[0];
  if (first) {
    // "prompt is required" is reported on the body (field ""): the parameter is the description's first word.
    const name =
      first.type === "required" && first.field === ""
        ? first.description.split(" ")[0]
        : first.field.replace(/^input\./, "");
    const param = name !== undefined && Object.hasOwn(OPENAI_PARAM, name) ? OPENAI_PARAM[name] : name;
    return new OpenAiError(400, first.description, "invalid_request_error", param ?? null);
  }
  return new OpenAiError(
    err.status >= 500 ? 500 : 400,
    err.detail,
    err.status >= 500 ? "server_error" : "invalid_request_error",
  );
}

/** OpenAI's request, bounded by what the served model can make. */
function requestSchema(limits: ImageLimits): JsonSchema {
  return {
    type: "object",
    required: ["prompt"],
    properties: {
      prompt: { type: "string", minLength: 1 },
      n: { type: "integer", minimum: 1, maximum: limits.maxOutputs, default: 1 },
      size: {
        type: "string",
        description: `WIDTHxHEIGHT, each side one of the model's sizes (${limits.widths.join(", ")}), at most ${limits.maxPixels} pixels`,
        default: `${limits.defaultWidth}x${limits.defaultHeight}`,
      },
      ...OPENAI_FIELDS,
    },
  };
}

export const RESPONSE: JsonSchema = {
  type: "object",
  required: ["created", "data"],
  properties: {
    created: { type: "integer" },
    data: {
      type: "array",
      items: { type: "object", properties: { url: { type: "string", format: "uri" }, b64_json: { type: "string" } } },
    },
    // GPT image models' answers only.
    background: { type: "string", enum: ["opaque"] },
    output_format: { type: "string", enum: ["png", "jpeg", "webp"] },
    size: { type: "string" },
  },
};

export async function openAiImageRoutes(app: FastifyInstance, opts: OpenAiImagesOptions): Promise<void> {
  const { service } = opts;
  app.setErrorHandler((err, _req, reply) => {
    const e = toOpenAiError(err);
    for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
    return reply.code(e.status).send({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
  });
  app.addHook("onRequest", opts.authenticate);
  app.addHook("onRoute", opts.requireTokenInDocument);
  // OpenAI's API takes a null as "not given" (n: null is one image): so does this route, before its schema is checked.
  app.addHook("preValidation", (req, _reply, done) => {
    const body = req.body;
    if (typeof body === "object" && body !== null && !Array.isArray(body)) {
      for (const [key, value] of Object.entries(body)) {
        if (value === null) delete (body as Record<string, unknown>)[key];
      }
    }
    done();
  });

  const model = service.models[0];
  const limits = model?.imageLimits;
  const schema: RouteSchema = {
    summary: "OpenAI's images API: make images from a prompt (the model named, or the server's first)",
    ...(limits ? { body: requestSchema(limits) } : {}),
    response: { 200: RESPONSE },
  };
  app.post("/images/generations", { schema }, async (req: FastifyRequest, reply: FastifyReply) => {
    const b = req.body as Record<string, unknown>;
    const choice = chooseModel(service.models, b["model"], usesGptImageField(b));
    const { model } = choice;
    const limits = model.imageLimits;
    const output = readOutputChoice(b, choice);
    const n = (b["n"] as number | undefined) ?? 1;
    const size =
      b["size"] === undefined || b["size"] === "auto" ? `${limits.defaultWidth}x${limits.defaultHeight}` : b["size"];
    const m = typeof size === "string" ? /^(\d+)x(\d+)$/.exec(size) : null;
    const width = Number(m?.[1]);
    const height = Number(m?.[2]);
    if (!m || !limits.widths.includes(width) || !limits.heights.includes(height) || width * height > limits.maxPixels) {
      throw new OpenAiError(
        400,
        `size must be WIDTHxHEIGHT with each side one of ${limits.widths.join(", ")} and at most ${limits.maxPixels} pixels (such as 256x256, 512x512).`,
        "invalid_request_error",
        "size",
      );
    }
    const input: Record<string, unknown> = { prompt: b["prompt"], width, height, num_outputs: n };
    for (const key of PASSED_THROUGH) if (b[key] !== undefined) input[key] = b[key];
    return answer(req, reply, model, input, output, "image_generation");
  });

  if (opts.uploads) await imageEditsRoute(app, opts, opts.uploads, answer);

  /**
   * Runs the prediction and answers OpenAI's way when it is done: one JSON body, or with `stream`
   * server-sent events, `<kind>.partial_image` from the step previews then `<kind>.completed` per image.
   */
  async function answer(
    req: FastifyRequest,
    reply: FastifyReply,
    model: ModelAdapter,
    input: Record<string, unknown>,
    output: OutputChoice,
    kind: "image_generation" | "image_edit",
  ) {
    const base = urlBaseOf(req, "/v1", opts.publicBaseUrl);
    const created = await service.create(req.account, { body: { input }, model }, base);
    // Nobody will read the result once the client hangs up: stop the work too.
    const onClose = () => {
      if (!reply.raw.writableFinished) service.cancel(req.account, created.id).catch(() => undefined);
    };
    reply.raw.on("close", onClose);
    const size = `${input["width"]}x${input["height"]}`;
    // What OpenAI's GPT image models say beside their images (and in every stream event).
    const settings = { background: "opaque", output_format: output.format, size };
    const events = output.stream ? openEventStream(reply, kind, { ...settings, quality: output.quality }) : undefined;
    try {
      let done: PredictionRecord | undefined;
      try {
        if (events && output.partialImages > 0) events.followPreviews(created.id, output);
        done = await service.waitForCompletion(created.id, Number.POSITIVE_INFINITY);
      } finally {
        reply.raw.off("close", onClose);
        await events?.stopPreviews();
      }
      if (!done || done.status === "canceled" || done.status === "starting" || done.status === "processing") {
        throw new OpenAiError(500, "The image generation was interrupted.", "server_error");
      }
      if (done.status === "failed") {
        throw new OpenAiError(400, done.error ?? "The image generation failed.", "invalid_request_error");
      }
      const data = [];
      for (const name of done.output ?? []) {
        if (output.responseFormat === "url" && !events) {
          data.push({ url: fileUrl(base, done, name) });
          continue;
        }
        const file = await service.outputs.ofPrediction(done, name);
        if (!file) throw new OpenAiError(500, "An output file is missing.", "server_error");
        const b64 = (await encodeOutput(await file.read(), output)).toString("base64");
        if (events) await events.send("completed", { b64_json: b64 });
        else data.push({ b64_json: b64 });
      }
      if (events) return events.end();
      return {
        created: Math.floor(Date.parse(done.createdAt) / 1000),
        data,
        ...(output.gptImage ? settings : {}),
      };
    } catch (err) {
      // Once the stream's headers are out, an error is an event OpenAI's clients throw from.
      if (!events) throw err;
      return events.fail(toOpenAiError(err));
    }
  }

  /** A stream of OpenAI's image events on `reply` (hijacked: the headers go now). */
  function openEventStream(reply: FastifyReply, kind: string, settings: Record<string, unknown>) {
    const res = startEventStream(reply);
    // Comments keep proxies from closing a quiet stream while the images are made.
    const keepalive = setInterval(() => {
      if (!res.writableNeedDrain) res.write(": keepalive\n\n");
    }, KEEPALIVE_MS);
    const format = (type: string, fields: Record<string, unknown>) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, created_at: Math.floor(Date.now() / 1000), ...settings, ...fields })}\n\n`;
    let unsubscribe = () => {};
    // The partial images being encoded and written, one after another.
    let sending = Promise.resolve();
    let finished = false;
    const close = () => {
      if (finished) return;
      finished = true;
      clearInterval(keepalive);
      res.end();
    };
    res.once("close", close);
    return {
      /** Sends up to partialImages of the first image's step previews, spread over the steps. */
      followPreviews(id: string, output: OutputChoice) {
        let index = 0;
        unsubscribe = service.events.subscribePreviews(id, (p) => {
          const image = p.images[0];
          // Partial i goes out once (i+1)/(partials+1) of the steps are done: early noise is not worth a picture.
          if (!image || index >= output.partialImages || p.step * (output.partialImages + 1) < (index + 1) * p.total)
            return;
          if (finished || res.writableNeedDrain) return;
          const partial = index++;
          sending = sending
            .then(() => encodeOutput(image, output))
            .then((bytes) => {
              if (!finished) {
                res.write(
                  format(`${kind}.partial_image`, { b64_json: bytes.toString("base64"), partial_image_index: partial }),
                );
              }
            })
            .catch(() => undefined);
        });
      },
      /** Stops following; resolves once a partial image being written is out (before any image). */
      stopPreviews(): Promise<void> {
        unsubscribe();
        return sending;
      },
      /** Writes one event, waiting until the client has taken the one before. */
      async send(event: string, fields: Record<string, unknown>) {
        if (finished) return;
        if (res.writableNeedDrain) {
          await new Promise<void>((resolve) => {
            const go = () => {
              res.off("drain", go);
              res.off("close", go);
              resolve();
            };
            res.once("drain", go);
            res.once("close", go);
          });
        }
        res.write(format(`${kind}.${event}`, fields));
      },
      end: close,
      /** The error as OpenAI's clients read it mid-stream: an event whose data has `error`. */
      fail(e: OpenAiError) {
        if (!finished) {
          res.write(
            `event: error\ndata: ${JSON.stringify({ type: "error", error: { message: e.message, type: e.type, param: e.param, code: e.code } })}\n\n`,
          );
        }
        close();
      },
    };
  }
}
