/**
 * The models a server offers: Replicate-style names (owner/name) mapped to weights (a Hugging
 * Face model id, a local diffusers folder, or tiny-random) and input defaults, from a JSON models
 * file and the --model flag. Each model gets a version id derived from what defines it, so the
 * same definition keeps its id across restarts and machines and any change makes a new one.
 *
 * The models file (--models / SDSERVE_MODELS):
 *
 *   {
 *     "models": {
 *       "stability-ai/stable-diffusion": { "weights": "stabilityai/stable-diffusion-2-1" },
 *       "stability-ai/sd-turbo": { "weights": "stabilityai/sd-turbo", "variant": "fp16" },
 *       "me/my-sd15": {
 *         "weights": "./models/my-sd15",
 *         "description": "SD 1.5, fine-tuned on our product photos",
 *         "defaults": { "width": 512, "height": 512, "num_inference_steps": 30, "scheduler": "K_EULER_ANCESTRAL" }
 *       },
 *       "me/dreamy": {
 *         "weights": "./checkpoints/dreamy.safetensors",
 *         "config": "./configs/sd15",
 *         "vae": "./vae/sd-vae-ft-mse",
 *         "loras": [{ "path": "./loras/film-grain.safetensors", "scale": 0.6 }],
 *         "embeddings_dir": "./embeddings",
 *         "prompt_syntax": "a1111",
 *         "clip_skip": 2,
 *         "lora_dir": "./loras"
 *       }
 *     }
 *   }
 *
 * Defaults not given come from the weights when they are a known checkpoint (SD 1.5, SD 2.1,
 * SD 2.1-base, SD-Turbo, LCM Dreamshaper v7: their native size, steps and guidance) or a local
 * folder whose configs make it a few-step model (an LCM UNet or scheduler, or Turbo's trailing
 * Euler), else Replicate's for stability-ai/stable-diffusion, else 512 px and 50 steps.
 *
 * SDXL: a model is SDXL when it is named stability-ai/sdxl, has a "refiner", or its weights are
 * an SDXL folder (model_index.json), an SDXL single-file checkpoint (its keys) or a known SDXL
 * hub id; it is served with Replicate's stability-ai/sdxl schema and defaults (1024², 50 steps,
 * guidance 7.5, K_EULER; SDXL-Turbo's few-step ones for it). `--model` with SDXL weights serves them as stability-ai/sdxl. "refiner"
 * names the weights of Replicate's `refine` modes (loaded on the first prediction that refines).
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseHubFileId, parseHubId } from "./engine/hub/repo-id.js";
import { TINY_RANDOM } from "./engine/tiny-random.js";
import { isCheckpointFile, isSdxlCheckpointFile } from "./engine/weights/single-file.js";

export class CatalogError extends Error {
  override readonly name = "CatalogError";
}

/** The Replicate model every sdserve serves unless told otherwise, and its published version. */
export const DEFAULT_MODEL_NAME = "stability-ai/stable-diffusion";
/** Replicate's version of stability-ai/stable-diffusion: SD 2.1 at 768 px. Always accepted for that model. */
export const STABLE_DIFFUSION_VERSION = "ac732df83cea7fff18b8472768c88ad041fa750ff7682a21affe81863cbe77e4";
/** What stability-ai/stable-diffusion runs by default: the weights behind Replicate's version. */
export const DEFAULT_WEIGHTS = "stabilityai/stable-diffusion-2-1";

export const SIZES = [128, 256, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024] as const;
export const SCHEDULERS = ["DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"] as const;
/** The latent consistency models' scheduler, offered beside Replicate's by the models that use it. */
export const LCM_SCHEDULER = "LCM";

/**
 * A model made for a few steps: "lcm" (a latent consistency UNet or scheduler: LCMScheduler,
 * 4 steps) or "turbo" (adversarially distilled, SD-Turbo: 1–4 trailing Euler steps without
 * guidance). Their guidance scale may go down to 0, as diffusers' examples give it.
 */
export type FewStepKind = "lcm" | "turbo";

/** Replicate's SDXL model. */
export const SDXL_MODEL_NAME = "stability-ai/sdxl";
/** stability-ai/sdxl's schedulers (cog-sdxl's predict.py). */
export const SDXL_SCHEDULERS = [
  "DDIM",
  "DPMSolverMultistep",
  "HeunDiscrete",
  "KarrasDPM",
  "K_EULER_ANCESTRAL",
  "K_EULER",
  "PNDM",
] as const;
/**
 * SDXL sizes: any multiple of 8 (the VAE's scale) from 64 to 2048 a side, at most 2048×1024
 * pixels in all (twice SDXL's native 1024², which already needs about 4 GiB of activations at fp32).
 */
export const SDXL_MIN_SIDE = 64;
export const SDXL_MAX_SIDE = 2048;
export const SDXL_MAX_PIXELS = 2048 * 1024;
/** Hub ids known to be SDXL pipelines (others are recognised from a local folder's model_index.json). */
const SDXL_HUB_IDS = new Set(["stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/sdxl-turbo"]);

export interface ModelDefaults {
  width: number;
  height: number;
  num_inference_steps: number;
  guidance_scale: number;
  scheduler: string;
  negative_prompt?: string;
}

/** Replicate's published defaults for stability-ai/stable-diffusion (predict.py). */
export const REPLICATE_DEFAULTS: ModelDefaults = {
  width: 768,
  height: 768,
  num_inference_steps: 50,
  guidance_scale: 7.5,
  scheduler: "DPMSolverMultistep",
};

/**
 * Defaults that suit the published checkpoints (their model cards). SD-Turbo runs one step
 * without classifier-free guidance (a scale of 1 turns it off).
 */
const KNOWN_WEIGHTS: Record<string, ModelDefaults> = {
  "stabilityai/stable-diffusion-2-1": REPLICATE_DEFAULTS,
  "stabilityai/stable-diffusion-2-1-base": { ...REPLICATE_DEFAULTS, width: 512, height: 512 },
  "stable-diffusion-v1-5/stable-diffusion-v1-5": { ...REPLICATE_DEFAULTS, width: 512, height: 512 },
  "runwayml/stable-diffusion-v1-5": { ...REPLICATE_DEFAULTS, width: 512, height: 512 },
  "stabilityai/sd-turbo": { width: 512, height: 512, num_inference_steps: 1, guidance_scale: 1, scheduler: "K_EULER" },
  // Its scheduler config is Euler ancestral on trailing timesteps; 512 px as its model card.
  "stabilityai/sdxl-turbo": {
    width: 512,
    height: 512,
    num_inference_steps: 1,
    guidance_scale: 1,
    scheduler: "K_EULER_ANCESTRAL",
  },
  // diffusers' LatentConsistencyModelPipeline: 4 steps, guidance 8.5 (fed to the UNet as its w-embedding).
  "SimianLuo/LCM_Dreamshaper_v7": {
    width: 512,
    height: 512,
    num_inference_steps: 4,
    guidance_scale: 8.5,
    scheduler: LCM_SCHEDULER,
  },
};

const KNOWN_FEW_STEP: Record<string, FewStepKind> = {
  "stabilityai/sd-turbo": "turbo",
  "stabilityai/sdxl-turbo": "turbo",
  "SimianLuo/LCM_Dreamshaper_v7": "lcm",
};

const GENERIC_DEFAULTS: ModelDefaults = { ...REPLICATE_DEFAULTS, width: 512, height: 512 };

/** Replicate's published defaults for stability-ai/sdxl. */
export const SDXL_DEFAULTS: ModelDefaults = {
  width: 1024,
  height: 1024,
  num_inference_steps: 50,
  guidance_scale: 7.5,
  scheduler: "K_EULER",
  negative_prompt: "",
};

/**
 * The Replicate input schema a model serves: stability-ai/stable-diffusion's (text only),
 * stability-ai/stable-diffusion-img2img's (`image`, `prompt_strength`) or
 * stability-ai/stable-diffusion-inpainting's (`image`, `mask`).
 */
export const INPUT_SCHEMAS = ["text-to-image", "img2img", "inpainting"] as const;
export type InputSchema = (typeof INPUT_SCHEMAS)[number];

/** What stability-ai/stable-diffusion-inpainting runs beside the default weights: an inpainting checkpoint (9-channel UNet). */
export const DEFAULT_INPAINTING_WEIGHTS = "stabilityai/stable-diffusion-2-inpainting";

/** The models served beside stability-ai/stable-diffusion on its weights, and their schemas. */
export const IMAGE_INPUT_MODELS: readonly { name: string; schema: InputSchema }[] = [
  { name: "stability-ai/stable-diffusion-img2img", schema: "img2img" },
  { name: "stability-ai/stable-diffusion-inpainting", schema: "inpainting" },
];

export interface ModelSpec {
  /** owner/name, as clients name it. */
  name: string;
  /** "sdxl": served with stability-ai/sdxl's schema (see the top of this file); absent: SD's. */
  family?: "sdxl";
  /** SDXL: the refiner's weights (hub id or absolute folder), for `refine`. */
  refiner?: string;
  /** A Hugging Face model id (owner/name[@revision]), a local folder (absolute), or tiny-random. */
  weights: string;
  variant: "fp32" | "fp16";
  defaults: ModelDefaults;
  description: string | undefined;
  /** 64 hex characters: see versionId(). */
  version: string;
  /** Other version ids that also mean this model (Replicate's, for stability-ai/stable-diffusion). */
  versionAliases: string[];
  /** How the engine loads it beyond the weights (models-file fields); empty: as the weights are. */
  engine: ModelEngineOptions;
  /** The input schema served; absent: text-to-image. */
  schema?: InputSchema;
  /** The model (owner/name) whose loaded networks this one runs on, instead of loading its own. */
  sharesWeightsOf?: string;
  /** Set up when first asked for rather than at start (weights fetched only if someone uses it). */
  setupOnDemand?: boolean;
  /** A few-step model (its defaults are its native ones); absent: an ordinary one. */
  fewStep?: FewStepKind;
  /** The scheduler names its input accepts: Replicate's, and LCM for the models that use it. */
  schedulers: readonly string[];
  /** Lowest guidance scale its input accepts: Replicate's 1, or 0 for a few-step model. */
  guidanceMinimum: number;
  /**
   * An AutoencoderTiny (TAESD) folder that draws this model's step previews (absolute); absent:
   * the linear latent → RGB map. Not part of the version: it changes no output.
   */
  previewVae?: string;
}

/**
 * The models file's engine fields, paths resolved against the file's folder. Plain data: it
 * travels to the engine process as it is (SetupParams).
 */
export interface ModelEngineOptions {
  /** "config": a diffusers folder describing a single-file checkpoint. */
  config?: string;
  /** "vae": another autoencoder (folder or .safetensors file). */
  vae?: string;
  /** "loras": applied to every prediction of this model. */
  loras?: { path: string; scale: number }[];
  /** "embeddings_dir": textual-inversion embeddings called by name in prompts. */
  embeddingsDir?: string;
  /** "prompt_syntax": "diffusers" (default) or "a1111". */
  promptSyntax?: "diffusers" | "a1111";
  /** "clip_skip": 1 (default) to 12. */
  clipSkip?: number;
  /**
   * "lora_dir": where `<lora:NAME:SCALE>` tags of a1111 prompts find their files; also for a
   * model whose own syntax stays diffusers', for requests that ask for a1111 (the /sdapi routes).
   */
  loraDir?: string;
  /**
   * "replicate_weights": false turns off SDXL's per-request LoRAs (the input then is a 422) and
   * the LoRA inputs of the base's graphs with it, which every step pays for (default true).
   */
  replicateWeights?: boolean;
}

const ENGINE_FIELDS = [
  "config",
  "vae",
  "loras",
  "embeddings_dir",
  "prompt_syntax",
  "clip_skip",
  "lora_dir",
  "replicate_weights",
];

const MODEL_NAME = /^[a-z0-9][a-z0-9_.-]*\/[a-z0-9][a-z0-9_.-]*$/i;

/**
 * sha256 of the canonical JSON of what defines the model: its name, its weights (a hub id with
 * its revision, or the folder's absolute path), the variant and the input defaults. The
 * default definition of stability-ai/stable-diffusion keeps Replicate's id.
 */
export function versionId(
  spec: Pick<ModelSpec, "name" | "weights" | "variant" | "defaults" | "schema" | "refiner"> & {
    engine?: ModelEngineOptions;
  },
): string {
  const pinned = (w: string) => {
    const hub = parseHubId(w);
    return hub ? `${hub.repo}@${hub.revision}` : w;
  };
  const weights = pinned(spec.weights);
  const defaults = Object.fromEntries(
    Object.entries(spec.defaults)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)),
  );
  // Engine fields and a schema other than text-to-image join the definition only when set, so
  // that existing versions keep their ids.
  const engine = spec.engine && Object.keys(spec.engine).length > 0 ? sortKeys(spec.engine) : undefined;
  const schema = spec.schema && spec.schema !== "text-to-image" ? { schema: spec.schema } : {};
  // The refiner too, only where there is one.
  const refiner = spec.refiner === undefined ? {} : { refiner: pinned(spec.refiner) };
  const canonical = {
    defaults,
    ...(engine ? { engine } : {}),
    name: spec.name,
    variant: spec.variant,
    weights,
    ...schema,
    ...refiner,
  };
  if (
    engine === undefined &&
    spec.name === DEFAULT_MODEL_NAME &&
    !("schema" in schema) &&
    weights === `${DEFAULT_WEIGHTS}@main` &&
    spec.variant === "fp32" &&
    JSON.stringify(defaults) === JSON.stringify(sortKeys(REPLICATE_DEFAULTS))
  ) {
    return STABLE_DIFFUSION_VERSION;
  }
  return createHash("sha256")
    .update(`sdserve-model-version\n${JSON.stringify(canonical)}`)
    .digest("hex");
}

function sortKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

function baseDefaults(name: string, weights: string, fewStep: FewStepKind | undefined, sdxl = false): ModelDefaults {
  if (sdxl && !fewStep) return SDXL_DEFAULTS;
  const hub = parseHubId(weights);
  const known = hub && !isLocal(weights) ? KNOWN_WEIGHTS[hub.repo] : undefined;
  if (known) return known;
  if (fewStep === "turbo") {
    const ancestral = readConfig(weights, "scheduler/scheduler_config.json")?.["_class_name"];
    return ancestral === "EulerAncestralDiscreteScheduler"
      ? { ...FEW_STEP_DEFAULTS.turbo, scheduler: "K_EULER_ANCESTRAL" }
      : FEW_STEP_DEFAULTS.turbo;
  }
  if (fewStep === "lcm") {
    // An LCM UNet takes guidance as its input (8.5 as in diffusers' pipeline); weights with an
    // LCM-LoRA fused in run without guidance. As the engine's nativeDefaults (pipeline.ts).
    return readConfig(weights, "unet/config.json")?.["time_cond_proj_dim"] != null
      ? FEW_STEP_DEFAULTS.lcm
      : { ...FEW_STEP_DEFAULTS.lcm, guidance_scale: 1 };
  }
  return name === DEFAULT_MODEL_NAME ? REPLICATE_DEFAULTS : GENERIC_DEFAULTS;
}

const FEW_STEP_DEFAULTS: Record<FewStepKind, ModelDefaults> = {
  turbo: KNOWN_WEIGHTS["stabilityai/sd-turbo"] as ModelDefaults,
  lcm: KNOWN_WEIGHTS["SimianLuo/LCM_Dreamshaper_v7"] as ModelDefaults,
};

function isLocal(weights: string): boolean {
  return weights !== TINY_RANDOM && path.isAbsolute(weights);
}

/** A config file of a local diffusers folder, or undefined where there is none to read. */
function readConfig(weights: string, file: string): Record<string, unknown> | undefined {
  if (!isLocal(weights)) return undefined;
  const at = path.join(weights, file);
  if (!existsSync(at)) return undefined;
  try {
    const parsed: unknown = JSON.parse(readFileSync(at, "utf8"));
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    // A broken config is the engine's to report, with the file and field, when it loads the model.
    return undefined;
  }
}

/**
 * Whether the weights are a few-step model: a known checkpoint by its hub id, or a local folder
 * by its configs (an LCM UNet's time_cond_proj_dim, an LCMScheduler, or the trailing Euler
 * (or Euler ancestral) schedule SD-Turbo and SDXL-Turbo ship, which no ordinary Stable Diffusion
 * checkpoint does).
 */
export function fewStepKind(weights: string): FewStepKind | undefined {
  const hub = parseHubId(weights);
  if (hub && !isLocal(weights)) return KNOWN_FEW_STEP[hub.repo];
  const unet = readConfig(weights, "unet/config.json");
  const scheduler = readConfig(weights, "scheduler/scheduler_config.json");
  if (unet?.["time_cond_proj_dim"] != null || scheduler?.["_class_name"] === "LCMScheduler") return "lcm";
  const euler = ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"].includes(
    scheduler?.["_class_name"] as string,
  );
  if (euler && scheduler?.["timestep_spacing"] === "trailing") return "turbo";
  return undefined;
}

/** Resolves a folder against the models file's folder; keeps hub ids and tiny-random as they are. */
function normalizeWeights(weights: string, baseDir: string): string {
  if (weights === TINY_RANDOM) return weights;
  // One file of a hub repository (owner/name/file.safetensors), unless a local file has that path.
  if (parseHubFileId(weights) && !existsSync(path.resolve(baseDir, weights))) return weights;
  const local = weights.startsWith(".") || weights.startsWith("/") || weights.startsWith("~") || !parseHubId(weights);
  return local ? path.resolve(baseDir, weights) : weights;
}

/**
 * Whether weights are SDXL: a known hub id, a folder whose model_index.json names an SDXL
 * pipeline, or a single-file checkpoint with SDXL's keys.
 */
export function isSdxlWeights(weights: string): boolean {
  const hub = parseHubId(weights) ?? parseHubFileId(weights);
  // A hub file's family is known before its download only for SDXL's own repositories.
  if (hub && !isLocal(weights) && SDXL_HUB_IDS.has(hub.repo)) return true;
  if (!path.isAbsolute(weights)) return false;
  if (isCheckpointFile(weights)) return isSdxlCheckpointFile(weights);
  try {
    const index = JSON.parse(readFileSync(path.join(weights, "model_index.json"), "utf8")) as { _class_name?: unknown };
    return typeof index._class_name === "string" && index._class_name.startsWith("StableDiffusionXL");
  } catch {
    return false;
  }
}

function hasModelIndex(weights: string): boolean {
  return path.isAbsolute(weights) && existsSync(path.join(weights, "model_index.json"));
}

function checkSize(at: string, value: unknown, sdxl: boolean): number {
  if (sdxl) {
    const v = value as number;
    if (!Number.isInteger(value) || v < SDXL_MIN_SIDE || v > SDXL_MAX_SIDE || v % 8 !== 0) {
      throw new CatalogError(
        `${at}: must be a multiple of 8 from ${SDXL_MIN_SIDE} to ${SDXL_MAX_SIDE}, got ${JSON.stringify(value)}`,
      );
    }
    return v;
  }
  if (!SIZES.includes(value as (typeof SIZES)[number])) {
    throw new CatalogError(`${at}: must be one of ${SIZES.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

function checkDefaults(
  where: string,
  raw: unknown,
  base: ModelDefaults,
  choices: { schedulers: readonly string[]; guidanceMinimum: number; sdxl?: boolean },
): ModelDefaults {
  const sdxl = choices.sdxl === true;
  if (raw === undefined) return { ...base };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new CatalogError(`${where}: must be an object`);
  const out: ModelDefaults = { ...base };
  for (const [key, value] of Object.entries(raw)) {
    const at = `${where}.${key}`;
    switch (key) {
      case "width":
      case "height":
        out[key] = checkSize(at, value, sdxl);
        break;
      case "num_inference_steps":
        if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 500) {
          throw new CatalogError(`${at}: must be an integer from 1 to 500, got ${JSON.stringify(value)}`);
        }
        out[key] = value as number;
        break;
      case "guidance_scale": {
        const most = sdxl ? 50 : 20;
        if (typeof value !== "number" || value < choices.guidanceMinimum || value > most) {
          throw new CatalogError(
            `${at}: must be a number from ${choices.guidanceMinimum} to ${most} (1 turns guidance off), got ${JSON.stringify(value)}`,
          );
        }
        out[key] = value;
        break;
      }
      case "scheduler":
        if (!choices.schedulers.includes(value as string)) {
          throw new CatalogError(
            `${at}: must be one of ${choices.schedulers.join(", ")}, got ${JSON.stringify(value)}`,
          );
        }
        out[key] = value as string;
        break;
      case "negative_prompt":
        if (typeof value !== "string") throw new CatalogError(`${at}: must be a string`);
        out[key] = value;
        break;
      default:
        throw new CatalogError(
          `${at}: unknown input (defaults may set width, height, num_inference_steps, guidance_scale, scheduler, negative_prompt)`,
        );
    }
  }
  if (sdxl) {
    if (out.width * out.height > SDXL_MAX_PIXELS) {
      throw new CatalogError(
        `${where}: ${out.width}x${out.height} is more than the largest size, ${SDXL_MAX_PIXELS} pixels`,
      );
    }
  } else if (out.width * out.height > 786_432) {
    throw new CatalogError(`${where}: ${out.width}x${out.height} is more than the largest size, 1024x768 pixels`);
  }
  return out;
}

export function modelSpec(
  name: string,
  weights: string,
  opts: {
    variant?: "fp32" | "fp16";
    defaults?: unknown;
    description?: string;
    where?: string;
    engine?: ModelEngineOptions;
    schema?: InputSchema;
    sharesWeightsOf?: string;
    setupOnDemand?: boolean;
    refiner?: string;
  } = {},
): ModelSpec {
  const where = opts.where ?? name;
  if (!MODEL_NAME.test(name))
    throw new CatalogError(`${where}: a model name is owner/name, got ${JSON.stringify(name)}`);
  const variant = opts.variant ?? "fp32";
  const fewStep = fewStepKind(weights);
  const sdxlWeights = isSdxlWeights(weights);
  if (opts.refiner !== undefined && !sdxlWeights && (weights === TINY_RANDOM || hasModelIndex(weights))) {
    throw new CatalogError(`${where}.refiner: a refiner goes with SDXL weights, and ${weights} is not SDXL`);
  }
  const sdxl = name === SDXL_MODEL_NAME || opts.refiner !== undefined || sdxlWeights;
  const refiner = opts.refiner;
  // A models file may choose LCM for other weights too (an LCM-LoRA fused in): then it is offered.
  const asked = (opts.defaults as { scheduler?: unknown } | undefined)?.scheduler;
  const lcm = fewStep === "lcm" || asked === LCM_SCHEDULER;
  const named: readonly string[] = sdxl ? SDXL_SCHEDULERS : SCHEDULERS;
  const choices = {
    schedulers: lcm ? [...named, LCM_SCHEDULER] : [...named],
    guidanceMinimum: fewStep ? 0 : 1,
  };
  const defaults = checkDefaults(`${where}.defaults`, opts.defaults, baseDefaults(name, weights, fewStep, sdxl), {
    ...choices,
    sdxl,
  });
  const engine = opts.engine ?? {};
  const version = versionId({ name, weights, variant, defaults, engine, schema: opts.schema, refiner });
  return {
    ...(sdxl ? { family: "sdxl" as const } : {}),
    ...(refiner === undefined ? {} : { refiner }),
    engine,
    ...(opts.schema && opts.schema !== "text-to-image" ? { schema: opts.schema } : {}),
    ...(opts.sharesWeightsOf ? { sharesWeightsOf: opts.sharesWeightsOf } : {}),
    ...(opts.setupOnDemand ? { setupOnDemand: true } : {}),
    name,
    weights,
    variant,
    defaults,
    description: opts.description,
    version,
    versionAliases:
      name === DEFAULT_MODEL_NAME && version !== STABLE_DIFFUSION_VERSION ? [STABLE_DIFFUSION_VERSION] : [],
    ...(fewStep ? { fewStep } : {}),
    ...choices,
  };
}

/** Reads and checks a models file; every problem names the file and the field. */
export function readModelsFile(file: string, defaultVariant: "fp32" | "fp16" = "fp32"): ModelSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CatalogError(
      code
        ? `models file ${file}: cannot be read (${code})`
        : `models file ${file}: not valid JSON (${(err as Error).message})`,
    );
  }
  const models = (parsed as { models?: unknown })?.models;
  if (typeof models !== "object" || models === null || Array.isArray(models)) {
    throw new CatalogError(`models file ${file}: must hold {"models": {"owner/name": {"weights": …}, …}}`);
  }
  const baseDir = path.dirname(path.resolve(file));
  const specs: ModelSpec[] = [];
  for (const [name, raw] of Object.entries(models)) {
    const where = `${file}: models["${name}"]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new CatalogError(`${where}: must be an object`);
    const entry = raw as Record<string, unknown>;
    for (const key of Object.keys(entry)) {
      if (
        ![
          "weights",
          "variant",
          "defaults",
          "description",
          "schema",
          "preview_vae",
          "refiner",
          ...ENGINE_FIELDS,
        ].includes(key)
      ) {
        throw new CatalogError(
          `${where}.${key}: unknown setting (weights, variant, defaults, description, schema, preview_vae, refiner, ${ENGINE_FIELDS.join(", ")})`,
        );
      }
    }
    if (typeof entry["weights"] !== "string" || entry["weights"].trim() === "") {
      throw new CatalogError(`${where}.weights: required: a Hugging Face model id, a diffusers folder, or tiny-random`);
    }
    const variant = entry["variant"] ?? defaultVariant;
    if (variant !== "fp32" && variant !== "fp16") throw new CatalogError(`${where}.variant: must be fp32 or fp16`);
    if (entry["description"] !== undefined && typeof entry["description"] !== "string") {
      throw new CatalogError(`${where}.description: must be a string`);
    }
    const schema = entry["schema"] ?? IMAGE_INPUT_MODELS.find((m) => m.name === name)?.schema;
    if (schema !== undefined && !INPUT_SCHEMAS.includes(schema as InputSchema)) {
      throw new CatalogError(`${where}.schema: must be one of ${INPUT_SCHEMAS.join(", ")}`);
    }
    const refiner = entry["refiner"];
    if (refiner !== undefined && (typeof refiner !== "string" || refiner.trim() === "")) {
      throw new CatalogError(`${where}.refiner: must be an SDXL refiner's Hugging Face model id or diffusers folder`);
    }
    const previewVae = entry["preview_vae"];
    if (previewVae !== undefined && (typeof previewVae !== "string" || previewVae.trim() === "")) {
      throw new CatalogError(`${where}.preview_vae: must be the path of an AutoencoderTiny (TAESD) folder`);
    }
    const spec = modelSpec(name, normalizeWeights(entry["weights"], baseDir), {
      variant,
      schema: schema as InputSchema | undefined,
      defaults: entry["defaults"],
      description: entry["description"] as string | undefined,
      where,
      refiner: refiner === undefined ? undefined : normalizeWeights(refiner, baseDir),
      engine: engineOptions(where, entry, baseDir),
    });
    specs.push(
      previewVae === undefined
        ? spec
        : { ...spec, previewVae: previewFolder(`${where}.preview_vae`, path.resolve(baseDir, previewVae)) },
    );
  }
  if (specs.length === 0) throw new CatalogError(`models file ${file}: lists no models`);
  return specs;
}

/** The engine fields of a models-file entry, checked, with paths resolved against the file's folder. */
function engineOptions(where: string, entry: Record<string, unknown>, baseDir: string): ModelEngineOptions {
  const out: ModelEngineOptions = {};
  const pathField = (key: string): string | undefined => {
    const v = entry[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v.trim() === "" || v.includes("\0")) {
      throw new CatalogError(`${where}.${key}: must be a path (relative to the models file's folder)`);
    }
    return path.resolve(baseDir, v);
  };
  const config = pathField("config");
  if (config !== undefined) out.config = config;
  const vae = pathField("vae");
  if (vae !== undefined) out.vae = vae;
  const embeddingsDir = pathField("embeddings_dir");
  if (embeddingsDir !== undefined) out.embeddingsDir = embeddingsDir;
  const loraDir = pathField("lora_dir");
  if (loraDir !== undefined) out.loraDir = loraDir;
  const loras = entry["loras"];
  if (loras !== undefined) {
    if (!Array.isArray(loras) || loras.length > 16) {
      throw new CatalogError(`${where}.loras: must be a list of at most 16 {"path": …, "scale": …}`);
    }
    out.loras = loras.map((l, i) => {
      const at = `${where}.loras[${i}]`;
      if (typeof l !== "object" || l === null || Array.isArray(l)) throw new CatalogError(`${at}: must be an object`);
      const { path: p, scale = 1, ...rest } = l as Record<string, unknown>;
      const extra = Object.keys(rest)[0];
      if (extra !== undefined) throw new CatalogError(`${at}.${extra}: unknown setting (path, scale)`);
      if (typeof p !== "string" || p.trim() === "" || p.includes("\0")) {
        throw new CatalogError(`${at}.path: must be the path of a .safetensors LoRA`);
      }
      if (typeof scale !== "number" || !Number.isFinite(scale) || Math.abs(scale) > 100) {
        throw new CatalogError(`${at}.scale: must be a number from -100 to 100`);
      }
      return { path: path.resolve(baseDir, p), scale };
    });
  }
  const syntax = entry["prompt_syntax"];
  if (syntax !== undefined) {
    if (syntax !== "diffusers" && syntax !== "a1111") {
      throw new CatalogError(`${where}.prompt_syntax: must be "diffusers" or "a1111"`);
    }
    out.promptSyntax = syntax;
  }
  const replicateWeights = entry["replicate_weights"];
  if (replicateWeights !== undefined) {
    if (typeof replicateWeights !== "boolean")
      throw new CatalogError(`${where}.replicate_weights: must be true or false`);
    out.replicateWeights = replicateWeights;
  }
  const clipSkip = entry["clip_skip"];
  if (clipSkip !== undefined) {
    if (!Number.isInteger(clipSkip) || (clipSkip as number) < 1 || (clipSkip as number) > 12) {
      throw new CatalogError(`${where}.clip_skip: must be an integer from 1 to 12`);
    }
    out.clipSkip = clipSkip as number;
  }
  return out;
}

/**
 * The models to serve: those of the models file, with --model (when given) as the weights of
 * stability-ai/stable-diffusion; with neither, stability-ai/stable-diffusion on SD 2.1.
 * `previewVae` (--preview-vae) draws the previews of every model whose entry names none.
 */
export function modelCatalog(opts: {
  modelsFile?: string;
  model?: string;
  variant?: "fp32" | "fp16";
  previewVae?: string;
}): ModelSpec[] {
  const specs = servedModels(opts);
  const previewVae =
    opts.previewVae === undefined ? undefined : previewFolder("--preview-vae / SDSERVE_PREVIEW_VAE", opts.previewVae);
  return previewVae === undefined ? specs : specs.map((s) => ({ ...s, previewVae: s.previewVae ?? previewVae }));
}

/**
 * A preview decoder that is not there fails the start, not every prediction of its model (the
 * engine loads it with the model, and would fail the model's setup).
 */
function previewFolder(where: string, dir: string): string {
  if (!existsSync(path.join(dir, "config.json"))) {
    throw new CatalogError(
      `${where}: ${dir} has no config.json; give an AutoencoderTiny (TAESD) folder, e.g. a download of madebyollin/taesd`,
    );
  }
  return dir;
}

function servedModels(opts: { modelsFile?: string; model?: string; variant?: "fp32" | "fp16" }): ModelSpec[] {
  const variant = opts.variant ?? "fp32";
  const fromFile = opts.modelsFile ? readModelsFile(opts.modelsFile, variant) : [];
  if (opts.model === undefined) {
    return fromFile.length > 0 ? fromFile : [modelSpec(DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS, { variant })];
  }
  const weights = normalizeWeights(opts.model, process.cwd());
  // SDXL weights are served as Replicate's SDXL model, with its schema.
  const name = isSdxlWeights(weights) ? SDXL_MODEL_NAME : DEFAULT_MODEL_NAME;
  const inFile = fromFile.find((s) => s.name === name);
  const main = modelSpec(name, weights, {
    variant: inFile?.variant ?? variant,
    description: inFile?.description,
    refiner: inFile?.refiner,
  });
  if (inFile?.previewVae !== undefined) main.previewVae = inFile.previewVae;
  return [main, ...fromFile.filter((s) => s.name !== name)];
}

/**
 * The catalog with stability-ai/stable-diffusion-img2img and -inpainting added on the weights of
 * stability-ai/stable-diffusion (sharing its loaded networks), unless the models file names them
 * itself or serves no stability-ai/stable-diffusion. On the default weights, inpainting runs
 * Replicate's own checkpoint instead, set up when first asked for.
 */
export function withImageInputModels(specs: ModelSpec[]): ModelSpec[] {
  const main = specs.find((s) => s.name === DEFAULT_MODEL_NAME);
  if (!main) return specs;
  const added = IMAGE_INPUT_MODELS.filter((m) => !specs.some((s) => s.name === m.name)).map((m) =>
    m.schema === "inpainting" && main.weights === DEFAULT_WEIGHTS
      ? modelSpec(m.name, DEFAULT_INPAINTING_WEIGHTS, { variant: main.variant, schema: m.schema, setupOnDemand: true })
      : modelSpec(m.name, main.weights, {
          variant: main.variant,
          defaults: main.defaults,
          schema: m.schema,
          sharesWeightsOf: main.name,
        }),
  );
  // Models on the same networks draw their previews the same way.
  for (const spec of added) if (spec.sharesWeightsOf && main.previewVae) spec.previewVae = main.previewVae;
  return [...specs, ...added];
}
