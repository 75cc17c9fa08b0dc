/**
 * What OpenAI's images API asks beyond prompt, n and size, read as OpenAI documents it per model:
 * `model` (a served model's owner/name, or the names OpenAI clients send by default, which mean
 * the server's first model; without one, generations read the request as dall-e-2's unless it
 * uses a GPT-image-only field, and edits as a GPT image model's, as OpenAI's defaults are),
 * `response_format` (gpt-image models always answer base64, and answer it by default),
 * `output_format` and `output_compression` (re-encoded here with sharp), and `quality`, `style`,
 * `user`, `background` (checked against OpenAI's values; none of them changes a Stable Diffusion
 * image, so they are accepted and not acted on, except a transparent background, which the model
 * cannot make and which is refused rather than answered with an opaque picture).
 */
import sharp from "sharp";
import type { ModelAdapter } from "../models/model.js";
import type { JsonSchema } from "../schemas/json-schema.js";

/** An OpenAI-shaped error: {"error": {message, type, param, code}}. */
export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** OpenAI's image model names that clients send by default: they mean the server's first model. */
const OPENAI_MODELS = ["dall-e-2", "dall-e-3", "gpt-image-1"];
const isGptImage = (name: string) => name.startsWith("gpt-image-");

export interface OpenAiModelChoice {
  model: ModelAdapter;
  /** A gpt-image model was named: it answers only base64. */
  base64Only: boolean;
  /** Read as a GPT image model's request (named, or OpenAI's default): base64 unless url is asked. */
  gptImage: boolean;
}

/**
 * The model a request names, among `models`; absent: the first of them, read as OpenAI's default
 * model (a GPT image model's request when `gptByDefault`). `all` is every served model, to tell a
 * served model that cannot do this (a 400) from a name nobody serves (a 404).
 */
export function chooseModel(
  models: readonly ModelAdapter[],
  name: unknown,
  gptByDefault = false,
  all: readonly ModelAdapter[] = models,
): OpenAiModelChoice {
  const first = models[0];
  if (!first) throw new OpenAiError(503, "No model is served.", "server_error");
  if (name === undefined) return { model: first, base64Only: false, gptImage: gptByDefault };
  if (typeof name !== "string") throw new OpenAiError(400, "model must be a string.", "invalid_request_error", "model");
  const named = (m: ModelAdapter) => `${m.model.owner}/${m.model.name}` === name;
  const served = models.find(named);
  if (served) return { model: served, base64Only: false, gptImage: false };
  if (OPENAI_MODELS.includes(name) || isGptImage(name)) {
    return { model: first, base64Only: isGptImage(name), gptImage: isGptImage(name) };
  }
  const names = models.map((m) => `${m.model.owner}/${m.model.name}`).join(", ");
  if (all.some(named)) {
    throw new OpenAiError(
      400,
      `The model '${name}' cannot do this (it is not an inpainting model). Use one of: ${names}.`,
      "invalid_request_error",
      "model",
    );
  }
  throw new OpenAiError(
    404,
    `The model '${name}' does not exist. Served: ${names} (or ${OPENAI_MODELS.join(", ")}, meaning the first).`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
}

/**
 * OpenAI's generations default to dall-e-2 "unless a parameter specific to the GPT image models
 * is used": these fields (stream only when true; quality only at the GPT image models' levels).
 */
export function usesGptImageField(b: Record<string, unknown>): boolean {
  return (
    ["background", "moderation", "output_format", "output_compression", "partial_images"].some(
      (key) => b[key] !== undefined,
    ) ||
    b["stream"] === true ||
    (typeof b["quality"] === "string" && ["low", "medium", "high"].includes(b["quality"]))
  );
}

export type OutputFormat = "png" | "jpeg" | "webp";

export interface OutputChoice {
  responseFormat: "url" | "b64_json";
  format: OutputFormat;
  /** 0-100 (OpenAI's default 100), for jpeg and webp. */
  compression: number | undefined;
  /** stream: true: the images come as server-sent events (base64), after up to `partialImages` previews. */
  stream: boolean;
  /** 0-3 partial images before each stream's final one (OpenAI's default 0). */
  partialImages: number;
  /** A GPT image model's request: its answer also says background, output_format and size, as theirs do. */
  gptImage: boolean;
  /** The quality asked, where it is one of OpenAI's GPT image levels (stream events repeat it; else "auto"). */
  quality: "low" | "medium" | "high" | "auto";
}

const QUALITIES = ["auto", "low", "medium", "high", "standard", "hd"];
const STYLES = ["vivid", "natural"];
const BACKGROUNDS = ["auto", "opaque", "transparent"];
const FORMATS = ["png", "jpeg", "webp"];
const MODERATIONS = ["low", "auto"];
const FIDELITIES = ["high", "low"];

/** These fields in the route's request schema (and so in /openapi.json). */
export const OPENAI_FIELDS: Record<string, JsonSchema> = {
  model: {
    type: "string",
    description: `A served model's owner/name; ${OPENAI_MODELS.join(", ")} (and gpt-image-*) mean the first served model`,
  },
  response_format: {
    type: "string",
    enum: ["url", "b64_json"],
    default: "url",
    description: "gpt-image models always answer b64_json",
  },
  output_format: { type: "string", enum: FORMATS, default: "png", description: "jpeg and webp need b64_json" },
  output_compression: { type: "integer", minimum: 0, maximum: 100, description: "jpeg and webp quality" },
  quality: { type: "string", enum: QUALITIES, description: "Accepted; does not change the image" },
  style: { type: "string", enum: STYLES, description: "Accepted; does not change the image" },
  user: { type: "string", description: "Accepted; not stored" },
  background: { type: "string", enum: BACKGROUNDS, description: "transparent is refused: the images are opaque" },
  moderation: { type: "string", enum: MODERATIONS, description: "Accepted; does not change the image" },
  stream: { type: "boolean", description: "Server-sent events: partial images (step previews), then each image" },
  partial_images: {
    type: "integer",
    minimum: 0,
    maximum: 3,
    description: "Previews sent before each image when streaming",
  },
};

function oneOf(b: Record<string, unknown>, key: string, values: readonly string[]): string | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !values.includes(v)) {
    throw new OpenAiError(400, `${key} must be one of ${values.join(", ")}.`, "invalid_request_error", key);
  }
  return v;
}

/** Reads and checks OpenAI's optional fields; throws OpenAiError naming the parameter at fault. */
export function readOutputChoice(b: Record<string, unknown>, choice: OpenAiModelChoice): OutputChoice {
  const asked = oneOf(b, "response_format", ["url", "b64_json"]) as OutputChoice["responseFormat"] | undefined;
  const responseFormat = choice.base64Only ? "b64_json" : (asked ?? (choice.gptImage ? "b64_json" : "url"));
  const quality = oneOf(b, "quality", QUALITIES);
  oneOf(b, "style", STYLES);
  oneOf(b, "moderation", MODERATIONS);
  oneOf(b, "input_fidelity", FIDELITIES);
  if (b["user"] !== undefined && typeof b["user"] !== "string") {
    throw new OpenAiError(400, "user must be a string.", "invalid_request_error", "user");
  }
  if (oneOf(b, "background", BACKGROUNDS) === "transparent") {
    throw new OpenAiError(
      400,
      "A transparent background is not supported: Stable Diffusion makes opaque images.",
      "invalid_request_error",
      "background",
    );
  }
  const format = (oneOf(b, "output_format", FORMATS) ?? "png") as OutputFormat;
  if (format !== "png" && responseFormat === "url") {
    throw new OpenAiError(
      400,
      "output_format jpeg or webp needs response_format b64_json (image URLs serve the stored PNG).",
      "invalid_request_error",
      "output_format",
    );
  }
  const c = b["output_compression"];
  if (c !== undefined && (typeof c !== "number" || !Number.isInteger(c) || c < 0 || c > 100)) {
    throw new OpenAiError(
      400,
      "output_compression must be an integer from 0 to 100.",
      "invalid_request_error",
      "output_compression",
    );
  }
  const stream = b["stream"];
  if (stream !== undefined && typeof stream !== "boolean") {
    throw new OpenAiError(400, "stream must be a boolean.", "invalid_request_error", "stream");
  }
  const partial = b["partial_images"];
  if (
    partial !== undefined &&
    (typeof partial !== "number" || !Number.isInteger(partial) || partial < 0 || partial > 3)
  ) {
    throw new OpenAiError(
      400,
      "partial_images must be an integer from 0 to 3.",
      "invalid_request_error",
      "partial_images",
    );
  }
  return {
    responseFormat,
    format,
    compression: c as number | undefined,
    stream: stream === true,
    partialImages: (partial as number | undefined) ?? 0,
    gptImage: choice.gptImage,
    quality: quality === "low" || quality === "medium" || quality === "high" ? quality : "auto",
  };
}

/**
 * The PNG in the asked format. OpenAI's output_compression defaults to 100 and lower means
 * smaller files, so it is the encoder's quality (sharp takes 1-100); PNG is lossless and ignores it.
 */
export async function encodeOutput(png: Uint8Array, out: OutputChoice): Promise<Buffer> {
  if (out.format === "png") return Buffer.from(png);
  const quality = Math.max(1, out.compression ?? 100);
  const image = sharp(png);
  return out.format === "jpeg" ? image.jpeg({ quality }).toBuffer() : image.webp({ quality }).toBuffer();
}
