/**
 * The /sdapi/v1 request and response schemas, written once: they drive validation (Fastify) and
 * /openapi.json. Field names, types and defaults follow AUTOMATIC1111's modules/api/models.py and
 * the processing classes it builds them from.
 */

import { MAX_PROMPT_LENGTH } from "../models/stable-diffusion.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import type { RouteSchema } from "../schemas/openapi.js";
import type { HiresBody } from "./hires.js";

/**
 * The request fields both of A1111's generation APIs take, with A1111's defaults: the init
 * parameters of StableDiffusionProcessing (modules/processing.py) less API_NOT_ALLOWED, then the
 * keys the API models add (modules/api/models.py). The request schemas below are built from these
 * lists, and the answers' `parameters` echo from the schemas.
 */
const PROCESSING_DEFAULTS = {
  prompt: "",
  negative_prompt: "",
  styles: null,
  seed: -1,
  subseed: -1,
  subseed_strength: 0,
  seed_resize_from_h: -1,
  seed_resize_from_w: -1,
  sampler_name: null,
  scheduler: null,
  batch_size: 1,
  n_iter: 1,
  steps: 50,
  cfg_scale: 7.0,
  width: 512,
  height: 512,
  restore_faces: null,
  tiling: null,
  do_not_save_samples: false,
  do_not_save_grid: false,
  eta: null,
  denoising_strength: null,
  s_min_uncond: null,
  s_churn: null,
  s_tmax: null,
  s_tmin: null,
  s_noise: null,
  override_settings: null,
  override_settings_restore_afterwards: true,
  refiner_checkpoint: null,
  refiner_switch_at: null,
  disable_extra_networks: false,
  firstpass_image: null,
  comments: null,
  force_task_id: null,
  sampler_index: "Euler",
  script_name: null,
  script_args: [],
  send_images: true,
  save_images: false,
  alwayson_scripts: {},
  infotext: null,
} as const;

/** A1111's txt2img defaults: StableDiffusionProcessingTxt2Img's own fields (the hires fix) added. */
export const TXT2IMG_DEFAULTS = {
  ...PROCESSING_DEFAULTS,
  enable_hr: false,
  firstphase_width: 0,
  firstphase_height: 0,
  hr_scale: 2.0,
  hr_upscaler: null,
  hr_second_pass_steps: 0,
  hr_resize_x: 0,
  hr_resize_y: 0,
  hr_checkpoint_name: null,
  hr_sampler_name: null,
  hr_scheduler: null,
  hr_prompt: "",
  hr_negative_prompt: "",
} as const;

/**
 * A1111's img2img defaults: StableDiffusionProcessingImg2Img's own fields, and the API model's
 * init_images, mask, denoising_strength (0.75 there) and include_init_images. mask_blur is null:
 * in A1111 it is a property over mask_blur_x and _y, and the API model takes null for it.
 */
export const IMG2IMG_DEFAULTS = {
  ...PROCESSING_DEFAULTS,
  init_images: null,
  resize_mode: 0,
  denoising_strength: 0.75,
  image_cfg_scale: null,
  mask: null,
  mask_blur_x: 4,
  mask_blur_y: 4,
  mask_blur: null,
  mask_round: true,
  inpainting_fill: 0,
  inpaint_full_res: true,
  inpaint_full_res_padding: 0,
  inpainting_mask_invert: 0,
  initial_noise_multiplier: null,
  latent_mask: null,
  include_init_images: false,
} as const;

/** More images than this in one call (batch_size × n_iter) is refused: each is a prediction. */
export const MAX_IMAGES = 16;
/** A1111 draws seeds below 2³² − 1 (random.randrange(4294967294)). */
export const SEED_LIMIT = 4294967294;
/**
 * The largest seed taken: A1111 takes any (torch seeds its generator with up to 64 bits), and image
 * i of a call uses seed + i; here every seed of a call stays an exact JSON number (below 2⁵³).
 */
export const SEED_MAX = Number.MAX_SAFE_INTEGER - (MAX_IMAGES - 1);

export const integer = (minimum: number, maximum: number): JsonSchema => ({ type: "integer", minimum, maximum });

/**
 * The fields of txt2img's request read here, with their types and ranges. A1111 takes null for its
 * optional fields, and so does this route; unknown keys are ignored. The model's own limits
 * (sizes, prompt length) are checked against the model chosen.
 */
const TXT2IMG_READ: Record<string, JsonSchema> = {
  prompt: { type: "string" },
  negative_prompt: { type: "string" },
  styles: { type: "array", items: { type: "string" }, description: "Accepted and reported; no styles are served" },
  seed: { ...integer(-1, SEED_MAX), description: "-1: a random seed; image i of the call uses seed + i" },
  subseed: {
    ...integer(-SEED_MAX, SEED_MAX),
    description: "Reported (-1: a random one); variation seeds are not made here",
  },
  subseed_strength: { type: "number" },
  sampler_name: { type: "string", description: "An A1111 sampler name, such as Euler a or DPM++ 2M" },
  sampler_index: { type: "string", description: "The older name of sampler_name" },
  scheduler: { type: "string", description: "Schedule type: Automatic" },
  batch_size: integer(1, MAX_IMAGES),
  n_iter: integer(1, MAX_IMAGES),
  steps: integer(1, 500),
  cfg_scale: { type: "number", minimum: 0, maximum: 100 },
  width: integer(8, 16384),
  height: integer(8, 16384),
  denoising_strength: { type: "number", minimum: 0, maximum: 1 },
  clip_skip: integer(1, 12),
  send_images: { type: "boolean" },
  save_images: { type: "boolean" },
  override_settings: {
    type: "object",
    properties: {
      sd_model_checkpoint: { type: "string" },
      CLIP_stop_at_last_layers: integer(1, 12),
      sd_vae: { type: "string" },
    },
  },
  override_settings_restore_afterwards: { type: "boolean" },
  enable_hr: { type: "boolean", description: "Hires fix: upscale the first pass, then an img2img pass" },
  hr_scale: { type: "number", minimum: 1, maximum: 8, description: "Hires fix: the upscale factor" },
  hr_upscaler: { type: "string", description: "Hires fix: a latent mode or a pixel upscaler (/upscalers)" },
  hr_second_pass_steps: { ...integer(0, 500), description: "Hires fix: the second pass's steps; 0: steps" },
  hr_resize_x: { ...integer(0, 16384), description: "Hires fix: the width to make instead of hr_scale" },
  hr_resize_y: { ...integer(0, 16384), description: "Hires fix: the height to make instead of hr_scale" },
  hr_sampler_name: { type: "string", description: "Hires fix: the second pass's sampler; default sampler_name" },
  hr_scheduler: { type: "string", description: "Hires fix: the second pass's schedule type" },
  hr_prompt: { type: "string", maxLength: MAX_PROMPT_LENGTH },
  hr_negative_prompt: { type: "string", maxLength: MAX_PROMPT_LENGTH },
  hr_checkpoint_name: { type: "string", description: "Hires fix: only the checkpoint of the first pass is served" },
  firstphase_width: integer(0, 16384),
  firstphase_height: integer(0, 16384),
};

/**
 * A request schema from A1111's field list: every field with A1111's default (the fields not read
 * here are accepted as any value, as documentation), typed where it is read. clip_skip is read
 * here though A1111's API model has no such field: it has no default, and is not echoed.
 */
function requestSchema(
  defaults: Record<string, unknown>,
  read: Record<string, JsonSchema>,
  required?: readonly string[],
): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const [key, value] of Object.entries(defaults)) {
    properties[key] = { ...(read[key] ?? { description: "Accepted; not used here" }), default: value };
  }
  for (const [key, schema] of Object.entries(read)) properties[key] ??= schema;
  return { type: "object", ...(required ? { required } : {}), properties };
}

/** txt2img's request (StableDiffusionTxt2ImgProcessingAPI). */
export const TXT2IMG_BODY: JsonSchema = requestSchema(TXT2IMG_DEFAULTS, TXT2IMG_READ);

/**
 * The `parameters` of an answer: the request as A1111's API model holds it, each field of the
 * route's schema that has a default either as sent or with that default. As A1111 does, the
 * pictures are not sent back (init_images and mask are null) unless include_init_images asks.
 */
export function echoParameters(schema: JsonSchema, body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    if (!Object.hasOwn(prop, "default")) continue;
    out[key] = Object.hasOwn(body, key) ? body[key] : prop["default"];
  }
  if (Object.hasOwn(out, "init_images") && out["include_init_images"] !== true) {
    out["init_images"] = null;
    out["mask"] = null;
  }
  return out;
}

export const TXT2IMG_RESPONSE: JsonSchema = {
  type: "object",
  required: ["images", "parameters", "info"],
  properties: {
    images: { type: "array", items: { type: "string", description: "A PNG, base64" } },
    parameters: { type: "object", additionalProperties: true },
    info: { type: "string", description: "JSON: seed, all_seeds, infotexts, …" },
  },
};
export const ANY_OBJECT: JsonSchema = { type: "object", additionalProperties: true };
export const list = (items: JsonSchema): JsonSchema => ({ type: "array", items });
export const CHECKPOINT: JsonSchema = {
  type: "object",
  required: ["title", "model_name", "hash", "sha256", "filename", "config"],
  properties: {
    title: { type: "string" },
    model_name: { type: "string" },
    hash: { type: "string" },
    sha256: { type: "string" },
    filename: { type: "string" },
    config: { type: "null" },
  },
};
/** A1111's routes in /openapi.json: HTTP Basic (--api-auth) or a token. */
export const doc = (summary: string, response: JsonSchema): RouteSchema => ({
  summary,
  security: [{ basicAuth: [] }, { bearerAuth: [] }],
  response: { 200: response },
});

/** img2img's request (StableDiffusionImg2ImgProcessingAPI): txt2img's, the pictures, and how the mask is read. */
export const IMG2IMG_BODY: JsonSchema = requestSchema(
  IMG2IMG_DEFAULTS,
  {
    // txt2img's fields but the hires fix's: A1111's img2img has none.
    ...Object.fromEntries(Object.entries(TXT2IMG_READ).filter(([key]) => !/^(hr_|enable_hr|firstphase_)/.test(key))),
    init_images: {
      type: "array",
      items: { type: "string", description: "A picture: base64 or a data: URI (the first is used)" },
    },
    mask: { type: "string", description: "White = repaint; base64 or a data: URI" },
    inpainting_mask_invert: { ...integer(0, 1), description: "1: black repaints" },
    mask_blur: { ...integer(0, 64), description: "Gaussian blur of the mask (sigma, pixels): sets mask_blur_x and _y" },
    mask_blur_x: integer(0, 64),
    mask_blur_y: integer(0, 64),
    resize_mode: {
      ...integer(0, 3),
      description: "0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale)",
    },
    inpainting_fill: { ...integer(0, 3), description: "0 fill, 1 original, 2 latent noise, 3 latent nothing" },
    inpaint_full_res: { type: "boolean", description: "Inpaint at width × height around the mask only" },
    inpaint_full_res_padding: { ...integer(0, 256), description: "Pixels around the mask's box (inpaint_full_res)" },
    include_init_images: { type: "boolean", description: "Send init_images and mask back in parameters" },
  },
  ["init_images"],
);

export interface Img2ImgBody extends Txt2ImgBody {
  init_images?: string[];
  mask?: string;
  inpainting_mask_invert?: number;
  mask_blur?: number;
  mask_blur_x?: number;
  mask_blur_y?: number;
  resize_mode?: number;
  inpainting_fill?: number;
  inpaint_full_res?: boolean;
  inpaint_full_res_padding?: number;
}

export interface Txt2ImgBody extends HiresBody {
  prompt?: string;
  negative_prompt?: string;
  styles?: string[];
  seed?: number;
  subseed?: number;
  sampler_name?: string;
  sampler_index?: string;
  scheduler?: string;
  batch_size?: number;
  n_iter?: number;
  steps?: number;
  cfg_scale?: number;
  width?: number;
  height?: number;
  denoising_strength?: number;
  clip_skip?: number;
  send_images?: boolean;
  override_settings?: { sd_model_checkpoint?: string; CLIP_stop_at_last_layers?: number; sd_vae?: string };
  override_settings_restore_afterwards?: boolean;
}
