/**
 * OpenAI's POST /v1/images/edits (multipart: `image` or `image[]`, optional `mask`, `prompt`, `n`,
 * `size`, `model`, and the output fields generations read, in openai-options.ts), as the `openai`
 * client's images.edit sends it, run as a prediction of the served inpainting model
 * (stability-ai/stable-diffusion-inpainting's schema). Without `model` the request is read as
 * OpenAI's default edits model's, a GPT image model: base64 unless a URL is asked for.
 *
 * OpenAI's mask convention is not Replicate's: its fully transparent pixels mark the area to
 * edit, and without a mask the image's own transparency is the mask. The mask is turned into
 * Replicate's (white = repaint) here, and both pictures are kept as the token's Files API uploads,
 * so the prediction is an ordinary inpainting prediction whose input names them by URL.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import sharp, { type Metadata } from "sharp";
import { DEFAULT_MAX_INPUT_PIXELS } from "../../engine/image-input.js";
import { MAX_FILE_INPUT_BYTES } from "../files/file-inputs.js";
import { sniffContentType, type Uploads } from "../files/uploads.js";
import { urlBaseOf } from "../http/headers.js";
import { type FilePart, readMultipart, registerMultipart } from "../http/multipart.js";
import type { ModelAdapter } from "../models/model.js";
import { fileInputNames } from "../models/stable-diffusion.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";
import { OpenAiError, type OpenAiImagesOptions, RESPONSE } from "./openai-images.js";
import { chooseModel, type OutputChoice, readOutputChoice } from "./openai-options.js";

/** The model's inputs an edit request may also carry, as multipart text fields. */
const PASSED_THROUGH: Record<string, "string" | "number"> = {
  negative_prompt: "string",
  num_inference_steps: "number",
  guidance_scale: "number",
  scheduler: "string",
  seed: "number",
};

const invalid = (message: string, param: string | null = null) =>
  new OpenAiError(400, message, "invalid_request_error", param);

const DECODE = { limitInputPixels: DEFAULT_MAX_INPUT_PIXELS, failOn: "truncated" as const };

/** A PNG, JPEG or WebP picture's header; anything else is a 400 naming the part. */
async function pictureOf(bytes: Uint8Array, param: string): Promise<Metadata> {
  let meta: Metadata;
  try {
    // The header alone: a picture over the pixel limit is told apart from one that is not a picture.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch {
    throw invalid(`${param} is not a PNG, JPEG or WebP image.`, param);
  }
  if (meta.format !== "png" && meta.format !== "webp" && meta.format !== "jpeg") {
    throw invalid(`${param} is a ${meta.format ?? "unknown"} file; PNG, JPEG or WebP expected.`, param);
  }
  const pixels = meta.width * meta.height;
  if (pixels > DEFAULT_MAX_INPUT_PIXELS) {
    const mp = (n: number) => `${(n / 1e6).toFixed(1)} megapixels`;
    throw invalid(
      `${param} is ${meta.width}×${meta.height} (${mp(pixels)}), over the limit of ${mp(DEFAULT_MAX_INPUT_PIXELS)}.`,
      param,
    );
  }
  return meta;
}

/** Width and height as the engine sees the picture: EXIF orientation applied. */
const orientedSize = (meta: Metadata) => meta.autoOrient ?? { width: meta.width, height: meta.height };

/** Replicate's mask (white repaints, black keeps) from the fully transparent pixels of a PNG or WebP. */
async function maskFromAlpha(bytes: Uint8Array, meta: Metadata, param: string): Promise<Buffer> {
  if (!meta.hasAlpha) {
    throw invalid(
      param === "mask"
        ? "mask must have transparency (an alpha channel): its fully transparent pixels mark the area to edit."
        : "Without a mask, image must have transparency: its fully transparent pixels mark the area to edit.",
      param,
    );
  }
  try {
    // Oriented as the engine orients the picture, so the mask covers what the sender saw.
    const { data, info } = await sharp(bytes, DECODE)
      .autoOrient()
      .extractChannel(3)
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let i = 0; i < data.length; i++) data[i] = data[i] === 0 ? 255 : 0;
    return await sharp(data, { raw: { width: info.width, height: info.height, channels: 1 } })
      .png()
      .toBuffer();
  } catch (err) {
    if ((err as Error).message?.includes("pixel limit")) {
      throw invalid(`${param} has more than ${DEFAULT_MAX_INPUT_PIXELS} pixels.`, param);
    }
    throw invalid(`${param} could not be decoded (truncated or corrupt).`, param);
  }
}

/** The size asked for, else the picture's own when the model can make it, else 512x512. */
async function outputSize(
  model: ModelAdapter,
  size: string | undefined,
  image: Metadata,
): Promise<{ width: number; height: number }> {
  const { widths, heights, maxPixels } = model.imageLimits;
  const fits = (w: number, h: number) => widths.includes(w) && heights.includes(h) && w * h <= maxPixels;
  if (size !== undefined && size !== "auto") {
    const m = /^(\d+)x(\d+)$/.exec(size);
    const width = Number(m?.[1]);
    const height = Number(m?.[2]);
    if (!m || !fits(width, height)) {
      throw invalid(
        `size must be WIDTHxHEIGHT with each side one of ${widths.join(", ")} and at most ${maxPixels} pixels (such as 256x256, 512x512).`,
        "size",
      );
    }
    return { width, height };
  }
  const own = orientedSize(image);
  if (own.width && own.height && fits(own.width, own.height)) return { width: own.width, height: own.height };
  return { width: 512, height: 512 };
}

/** A function, not a constant: openai-images.ts imports this module before its RESPONSE exists. */
const editsSchema = (): RouteSchema => ({
  summary:
    "OpenAI's image edits (multipart: one image or image[], a mask of its size whose fully transparent pixels are edited, prompt, n, size, model, response_format, output_format, output_compression, stream, partial_images): the served inpainting model",
  response: { 200: RESPONSE },
});

/** The multipart fields OpenAI sends as numbers and booleans, typed as its JSON requests carry them. */
function typedFields(fields: Record<string, string>): Record<string, unknown> {
  const typed: Record<string, unknown> = { ...fields };
  for (const key of ["output_compression", "partial_images"]) {
    const v = fields[key];
    if (v !== undefined && /^\s*-?\d+\s*$/.test(v)) typed[key] = Number(v);
  }
  const stream = fields["stream"];
  if (stream === "true" || stream === "false") typed["stream"] = stream === "true";
  return typed;
}

export async function imageEditsRoute(
  app: FastifyInstance,
  opts: OpenAiImagesOptions,
  uploads: Uploads,
  answer: (
    req: FastifyRequest,
    reply: FastifyReply,
    model: ModelAdapter,
    input: Record<string, unknown>,
    output: OutputChoice,
    kind: "image_generation" | "image_edit",
  ) => Promise<unknown>,
): Promise<void> {
  // image (or up to a few image[]) and mask.
  const limits = { fileBytes: MAX_FILE_INPUT_BYTES, files: 5 };
  await registerMultipart(app, limits);

  app.post("/images/edits", { schema: editsSchema() }, async (req, reply) => {
    let body: Awaited<ReturnType<typeof readMultipart>>;
    try {
      body = await readMultipart(req, limits);
    } catch (err) {
      const e = err as { status?: number; detail?: string };
      throw new OpenAiError(
        e.status ?? 400,
        e.detail ?? "The multipart body could not be read.",
        "invalid_request_error",
      );
    }
    const f = body.fields;
    // `model` picks a served inpainting model by owner/name; OpenAI's own names (dall-e-2, …) get the
    // first. Without one the request is a GPT image model's, OpenAI's default for edits: base64 answers.
    const models = opts.service.models;
    const inpainting = models.filter((m) => fileInputNames(m.schemas).includes("mask"));
    if (!inpainting[0]) throw new OpenAiError(404, "No inpainting model is served.", "invalid_request_error", "model");
    const choice = chooseModel(inpainting, f["model"], true, models);
    const { model } = choice;
    const images: FilePart[] = body.files.filter((p) => p.field === "image" || p.field === "image[]");
    const image = images[0];
    if (!image) throw invalid("image is required (a PNG, JPEG or WebP file part named image).", "image");
    if (images.length > 1) {
      throw invalid(
        `One image can be edited at a time (${images.length} were sent): the inpainting model takes a single picture.`,
        "image",
      );
    }
    const maskPart = body.files.find((p) => p.field === "mask");
    const prompt = f["prompt"];
    if (!prompt) throw invalid("prompt is required.", "prompt");
    const n = f["n"] === undefined ? 1 : Number(f["n"]);
    const most = model.imageLimits.maxOutputs;
    if (!Number.isInteger(n) || n < 1 || n > most) throw invalid(`n must be an integer from 1 to ${most}.`, "n");
    const output = readOutputChoice(typedFields(f), choice);
    const imageMeta = await pictureOf(image.data, "image");
    const { width, height } = await outputSize(model, f["size"], imageMeta);
    let mask: Buffer;
    if (maskPart) {
      // OpenAI asks for a mask of the image's own size: stretched, its transparent area would edit elsewhere.
      const maskMeta = await pictureOf(maskPart.data, "mask");
      const [a, b] = [orientedSize(imageMeta), orientedSize(maskMeta)];
      if (a.width !== b.width || a.height !== b.height) {
        throw invalid(
          `mask is ${b.width}x${b.height} and image ${a.width}x${a.height}: they must have the same size.`,
          "mask",
        );
      }
      mask = await maskFromAlpha(maskPart.data, maskMeta, "mask");
    } else {
      mask = await maskFromAlpha(image.data, imageMeta, "image");
    }

    const input: Record<string, unknown> = { prompt, width, height, num_outputs: n };
    const props = (model.schemas["Input"] as JsonSchema).properties ?? {};
    for (const [key, type] of Object.entries(PASSED_THROUGH)) {
      const value = f[key];
      if (value === undefined || !(key in props)) continue;
      input[key] = type === "number" && value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
    }
    // Checked before anything is stored: a bad field is a 400 without leaving files behind.
    const fields = model.validateInput({ ...input, image: "data:,x", mask: "data:,x" });
    if (fields[0]) throw invalid(fields[0].description, fields[0].field.replace(/^input\./, ""));

    const api = urlBaseOf(req, "/v1", opts.publicBaseUrl).api;
    const kept = await uploads.create(req.account, {
      name: image.filename ?? "image",
      contentType: sniffContentType(image.data) ?? "application/octet-stream",
      data: image.data,
      metadata: { purpose: "images.edits" },
    });
    const keptMask = await uploads.create(req.account, {
      name: "mask.png",
      contentType: "image/png",
      data: mask,
      metadata: { purpose: "images.edits" },
    });
    input["image"] = `${api}/files/${kept.id}/download`;
    input["mask"] = `${api}/files/${keptMask.id}/download`;
    return answer(req, reply, model, input, output, "image_edit");
  });
}
