/**
 * stability-ai/sdxl as Replicate publishes it (cog-sdxl's predict.py): its input schema, written
 * once (validation, the version's openapi_schema, /openapi.json), and how an input becomes an
 * engine request. `image` and `mask` are file inputs (format uri): fetched before predict like
 * the other models' (URLs, data URIs, the Files API). The adapter (stable-diffusion.ts) serves every SDXL model of the catalog with it.
 */
import type { GenerateRequest } from "../../engine/index.js";
import {
  type ModelDefaults,
  SDXL_MAX_PIXELS,
  SDXL_MAX_SIDE,
  SDXL_MIN_SIDE,
  SDXL_SCHEDULERS,
} from "../../model-catalog.js";
import { fileInputProblem } from "../files/file-inputs.js";
import type { TrainedTokensFile } from "../files/weights-inputs.js";
import type { InvalidField, JsonSchema } from "../schemas/json-schema.js";
import { BASE_IMAGE_REFINER_STRENGTH, type PictureInputs, type RefineParams } from "./engine-process.js";
import type { ImageLimits } from "./model.js";

/** Same bound as stability-ai/stable-diffusion's prompts (see MAX_PROMPT_LENGTH there). */
const MAX_PROMPT_LENGTH = 10_000;
/** A prompt after special_params' replacements (each can lengthen it) may grow to this at most. */
export const MAX_REPLACED_PROMPT_LENGTH = 100_000;
export const REFINE_MODES = ["no_refiner", "expert_ensemble_refiner", "base_image_refiner"] as const;

/** `components.schemas` as Cog renders cog-sdxl's predict.py; the defaults are the model's. */
export function sdxlSchemas(defaults: ModelDefaults): Record<string, JsonSchema> {
  const size = (title: string, value: number, order: number): JsonSchema => ({
    type: "integer",
    title,
    description: `${title} of output image`,
    default: value,
    minimum: SDXL_MIN_SIDE,
    maximum: SDXL_MAX_SIDE,
    "x-order": order,
  });
  return {
    Input: {
      type: "object",
      title: "Input",
      properties: {
        prompt: {
          type: "string",
          title: "Prompt",
          description: "Input prompt",
          default: "An astronaut riding a rainbow unicorn",
          maxLength: MAX_PROMPT_LENGTH,
          "x-order": 0,
        },
        negative_prompt: {
          type: "string",
          title: "Negative Prompt",
          description: "Input Negative Prompt",
          default: defaults.negative_prompt ?? "",
          maxLength: MAX_PROMPT_LENGTH,
          "x-order": 1,
        },
        image: {
          type: "string",
          title: "Image",
          format: "uri",
          description: "Input image for img2img or inpaint mode",
          "x-order": 2,
        },
        mask: {
          type: "string",
          title: "Mask",
          format: "uri",
          description: "Input mask for inpaint mode. Black areas will be preserved, white areas will be inpainted.",
          "x-order": 3,
        },
        width: size("Width", defaults.width, 4),
        height: size("Height", defaults.height, 5),
        num_outputs: {
          type: "integer",
          title: "Num Outputs",
          description: "Number of images to output.",
          default: 1,
          minimum: 1,
          maximum: 4,
          "x-order": 6,
        },
        scheduler: {
          allOf: [{ $ref: "#/components/schemas/scheduler" }],
          description: "scheduler",
          default: defaults.scheduler,
          "x-order": 7,
        },
        num_inference_steps: {
          type: "integer",
          title: "Num Inference Steps",
          description: "Number of denoising steps",
          default: defaults.num_inference_steps,
          minimum: 1,
          maximum: 500,
          "x-order": 8,
        },
        guidance_scale: {
          type: "number",
          title: "Guidance Scale",
          description: "Scale for classifier-free guidance",
          default: defaults.guidance_scale,
          minimum: 1,
          maximum: 50,
          "x-order": 9,
        },
        prompt_strength: {
          type: "number",
          title: "Prompt Strength",
          description:
            "Prompt strength when using img2img / inpaint. 1.0 corresponds to full destruction of information in image",
          default: 0.8,
          minimum: 0,
          maximum: 1,
          "x-order": 10,
        },
        seed: {
          type: "integer",
          title: "Seed",
          description: "Random seed. Leave blank to randomize the seed",
          "x-order": 11,
        },
        refine: {
          allOf: [{ $ref: "#/components/schemas/refine" }],
          description: "Which refine style to use",
          default: "no_refiner",
          "x-order": 12,
        },
        high_noise_frac: {
          type: "number",
          title: "High Noise Frac",
          description: "For expert_ensemble_refiner, the fraction of noise to use",
          default: 0.8,
          minimum: 0,
          maximum: 1,
          "x-order": 13,
        },
        refine_steps: {
          type: "integer",
          title: "Refine Steps",
          description: "For base_image_refiner, the number of steps to refine, defaults to num_inference_steps",
          minimum: 1,
          maximum: 500,
          "x-order": 14,
        },
        apply_watermark: {
          type: "boolean",
          title: "Apply Watermark",
          description:
            "Applies a watermark to enable determining if an image is generated in downstream applications. If you have other provisions for generating or deploying images safely, you can use this to disable watermarking.",
          default: true,
          "x-order": 15,
        },
        lora_scale: {
          type: "number",
          title: "Lora Scale",
          description: "LoRA additive scale. Only applicable on trained models.",
          default: 0.6,
          minimum: 0,
          maximum: 1,
          "x-order": 16,
        },
        replicate_weights: {
          type: "string",
          title: "Replicate Weights",
          description: "Replicate LoRA weights to use. Leave blank to use the default weights.",
          "x-order": 17,
        },
        disable_safety_checker: {
          type: "boolean",
          title: "Disable Safety Checker",
          description:
            "Disable safety checker for generated images. This feature is only available through the API. See [https://replicate.com/docs/how-does-replicate-work#safety](https://replicate.com/docs/how-does-replicate-work#safety)",
          default: false,
          "x-order": 18,
        },
      },
    },
    scheduler: { title: "scheduler", description: "An enumeration.", type: "string", enum: [...SDXL_SCHEDULERS] },
    refine: { title: "refine", description: "An enumeration.", type: "string", enum: [...REFINE_MODES] },
    Output: { type: "array", title: "Output", items: { type: "string", format: "uri" } },
  };
}

/** The OpenAI route's sizes: multiples of 64 within the schema's range, at most SDXL_MAX_PIXELS. */
export function sdxlImageLimits(defaults: ModelDefaults): ImageLimits {
  const sides: number[] = [];
  for (let s = 128; s <= SDXL_MAX_SIDE; s += 64) sides.push(s);
  return {
    maxOutputs: 4,
    widths: sides,
    heights: sides,
    maxPixels: SDXL_MAX_PIXELS,
    defaultWidth: defaults.width,
    defaultHeight: defaults.height,
  };
}

/** What the schema cannot say: Replicate's 422s for these, worded as the validator words its own. */
export function sdxlInvalidFields(input: Record<string, unknown>): InvalidField[] {
  const out: InvalidField[] = [];
  if (typeof input["mask"] === "string" && typeof input["image"] !== "string") {
    out.push({ type: "required", field: "input.image", description: "image is required when mask is given" });
  }
  const weights = input["replicate_weights"];
  // "" is no weights, as cog-sdxl's `if replicate_weights:` reads it.
  if (typeof weights === "string" && weights !== "") {
    // Fetched by the worker as file inputs are (weights-inputs.ts): what can never be fetched is known now.
    const problem = fileInputProblem(weights);
    if (problem)
      out.push({ type: "format", field: "input.replicate_weights", description: `replicate_weights ${problem}` });
  }
  for (const key of ["width", "height"]) {
    const v = input[key];
    if (typeof v === "number" && Number.isInteger(v) && v % 8 !== 0) {
      out.push({ type: "multiple_of", field: `input.${key}`, description: "Must be a multiple of 8" });
    }
  }
  const w = input["width"];
  const h = input["height"];
  if (typeof w === "number" && typeof h === "number" && w * h > SDXL_MAX_PIXELS) {
    out.push({
      type: "number_lte",
      field: "input.width",
      description: `width × height must be at most ${SDXL_MAX_PIXELS} pixels (memory limits)`,
    });
  }
  return out;
}

export interface SdxlJob {
  request: GenerateRequest;
  refine?: RefineParams;
  pictures?: PictureInputs;
  watermark: boolean;
  /**
   * img2img (no width/height): a picture over this many pixels is made at the largest size of its
   * shape that fits, as the schema's sizes are bounded (memory limits).
   */
  maxPixels?: number;
  /**
   * Steps reported: the base's (from a picture, ⌊steps × prompt_strength⌋) and, when the refiner
   * runs as img2img, its ⌊steps × 0.3⌋.
   */
  steps: number;
}

/**
 * A validated input (defaults filled in) as an engine job, as cog-sdxl's predict() sets up
 * diffusers; `files` holds the fetched `image` / `mask` (the worker fetches file inputs), `lora`
 * the LoRA of `replicate_weights` on disk, applied at `lora_scale` (cog-sdxl's
 * cross_attention_kwargs scale; its trained LoRAs change only the UNet, another LoRA's text
 * encoder layers take the same scale, as diffusers' encode_prompt gives them).
 */
export function sdxlJob(
  input: Record<string, unknown>,
  seed: number,
  files: Readonly<Record<string, Uint8Array>> | undefined,
  lora?: string,
  trained?: TrainedTokensFile,
): SdxlJob {
  const image = input["image"] === undefined ? undefined : files?.["image"];
  const mask = image && input["mask"] !== undefined ? files?.["mask"] : undefined;
  const steps = input["num_inference_steps"] as number;
  const prompt = input["prompt"] as string;
  const request: GenerateRequest = {
    prompt: trained ? replaceSpecialParams(prompt, trained.tokenMap) : prompt,
    // cog-sdxl always passes its negative prompt, "" by default: encoded as text, not zeroed. It
    // replaces special_params' keys in the prompt only; the negative prompt can still write the
    // tokens themselves (<s0>…), which its tokenizers know from then on.
    negativePrompt: input["negative_prompt"] as string,
    ...(trained ? { trainedTokens: trained.path } : {}),
    numInferenceSteps: steps,
    guidanceScale: input["guidance_scale"] as number,
    scheduler: input["scheduler"] as string,
    seed,
    numOutputs: input["num_outputs"] as number,
    ...(image ? { strength: input["prompt_strength"] as number } : {}),
    // cog-sdxl passes width and height to text-to-image and inpainting (diffusers resizes the
    // picture and the mask to them); its img2img has none: the picture's own size rules.
    ...(image && !mask ? {} : { width: input["width"] as number, height: input["height"] as number }),
    ...(lora ? { loras: [{ path: lora, scale: input["lora_scale"] as number }] } : {}),
  };
  const mode = input["refine"] as (typeof REFINE_MODES)[number];
  const refineSteps = input["refine_steps"] as number | undefined;
  const refine: RefineParams | undefined =
    mode === "no_refiner"
      ? undefined
      : { mode, highNoiseFrac: input["high_noise_frac"] as number, ...(refineSteps ? { steps: refineSteps } : {}) };
  return {
    request,
    refine,
    pictures: image ? { image, ...(mask ? { mask } : {}) } : undefined,
    watermark: input["apply_watermark"] === true,
    ...(image && !mask ? { maxPixels: SDXL_MAX_PIXELS } : {}),
    // From a picture the base runs the last ⌊steps × prompt_strength⌋ (diffusers' get_timesteps),
    // the ensemble's split among them.
    steps:
      (image ? Math.min(Math.floor(steps * (input["prompt_strength"] as number)), steps) : steps) +
      Math.floor(refinerImg2imgSteps(refine, steps) * BASE_IMAGE_REFINER_STRENGTH),
  };
}

/**
 * The steps of the refiner's schedule when it runs as img2img (engine-process.ts `refined`):
 * base_image_refiner's refine_steps, or num_inference_steps for an expert ensemble at
 * high_noise_frac 0 or 1, which diffusers does not take as a split; 0 when it does not.
 */
function refinerImg2imgSteps(refine: RefineParams | undefined, steps: number): number {
  if (refine?.mode === "base_image_refiner") return refine.steps ?? steps;
  if (refine && !(refine.highNoiseFrac > 0 && refine.highNoiseFrac < 1)) return steps;
  return 0;
}

/** A prompt that special_params' replacements grow past MAX_REPLACED_PROMPT_LENGTH. */
export class ReplacedPromptTooLong extends Error {}

/**
 * cog-sdxl's prompt.replace(key, value) for each entry of special_params.json in its order (each
 * replacement sees the ones before), e.g. "a photo of TOK" → "a photo of <s0><s1>".
 */
export function replaceSpecialParams(prompt: string, tokenMap: readonly (readonly [string, string])[]): string {
  let out = prompt;
  for (const [key, value] of tokenMap) {
    if (key === "" || !out.includes(key)) continue;
    // The length it would have, known before it is built: a hostile map cannot make a huge string.
    const count = out.split(key).length - 1;
    if (out.length + count * (value.length - key.length) > MAX_REPLACED_PROMPT_LENGTH) {
      throw new ReplacedPromptTooLong(
        `replicate_weights: the prompt grows past ${MAX_REPLACED_PROMPT_LENGTH} characters with special_params.json's replacements`,
      );
    }
    out = out.split(key).join(value);
  }
  return out;
}
