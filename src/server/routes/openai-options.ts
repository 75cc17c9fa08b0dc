/**
 * What OpenAI's images API asks beyond prompt, n and size, read as OpenAI documents it per model:
 * `model` (a served model's owner/name, or the names OpenAI clients send by default, which mean
 * the server's first model), `response_format` (gpt-image models always answer base64),
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
  /** gpt-image models answer only base64. */
  base64Only: boolean;
}

/** The model a request names; absent: the first served one (as dall-e-2 is OpenAI's default). */
export function chooseModel(models: readonly ModelAdapter[], name: unknown): OpenAiModelChoice {
  const first = models[0];
  if (!first) throw new OpenAiError(503, "No model is served.", "server_error");
  if (name === undefined) return { model: first, base64Only: false };
  if (typeof name !== "string") throw new OpenAiError(400, "model must be a string.", "invalid_request_error", "model");
  const served = models.find((m) => `${m.model.owner}/${m.model.name}` === name);
  if (served) return { model: served, base64Only: false };
  if (OPENAI_MODELS.includes(name) || isGptImage(name)) return { model: first, base64Only: isGptImage(name) };
  throw new OpenAiError(
    404,
    `The model '${name}' does not exist. Served: ${models.map((m) => `${m.model.owner}/${m.model.name}`).join(", ")} (or ${OPENAI_MODELS.join(", ")}, meaning the first).`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
}

export type OutputFormat = "png" | "jpeg" | "webp";

export interface OutputChoice {
  responseFormat: "url" | "b64_json";
  format: OutputFormat;
  /** 0-100 (OpenAI's default 100), for jpeg and webp. */
  compression: number | undefined;
}

const QUALITIES = ["auto", "low", "medium", "high", "standard", "hd"];
const STYLES = ["vivid", "natural"];
const BACKGROUNDS = ["auto", "opaque", "transparent"];
const FORMATS = ["png", "jpeg", "webp"];

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
  const responseFormat = choice.base64Only ? "b64_json" : (asked ?? "url");
  oneOf(b, "quality", QUALITIES);
  oneOf(b, "style", STYLES);
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
  return { responseFormat, format, compression: c as number | undefined };
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
