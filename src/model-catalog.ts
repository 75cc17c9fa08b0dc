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
 *       }
 *     }
 *   }
 *
 * Defaults not given come from the weights when they are a known checkpoint (SD 1.5, SD 2.1,
 * SD 2.1-base, SD-Turbo: their native size, steps and guidance), else Replicate's for
 * stability-ai/stable-diffusion, else 512 px and 50 steps.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseHubId } from "./engine/hub/repo-id.js";
import { TINY_RANDOM } from "./engine/tiny-random.js";

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
};

const GENERIC_DEFAULTS: ModelDefaults = { ...REPLICATE_DEFAULTS, width: 512, height: 512 };

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
  /** A Hugging Face model id (owner/name[@revision]), a local folder (absolute), or tiny-random. */
  weights: string;
  variant: "fp32" | "fp16";
  defaults: ModelDefaults;
  description: string | undefined;
  /** 64 hex characters: see versionId(). */
  version: string;
  /** Other version ids that also mean this model (Replicate's, for stability-ai/stable-diffusion). */
  versionAliases: string[];
  /** The input schema served; absent: text-to-image. */
  schema?: InputSchema;
  /** The model (owner/name) whose loaded networks this one runs on, instead of loading its own. */
  sharesWeightsOf?: string;
  /** Set up when first asked for rather than at start (weights fetched only if someone uses it). */
  setupOnDemand?: boolean;
}

const MODEL_NAME = /^[a-z0-9][a-z0-9_.-]*\/[a-z0-9][a-z0-9_.-]*$/i;

/**
 * sha256 of the canonical JSON of what defines the model: its name, its weights (a hub id with
 * its revision, or the folder's absolute path), the variant and the input defaults. The
 * default definition of stability-ai/stable-diffusion keeps Replicate's id.
 */
export function versionId(spec: Pick<ModelSpec, "name" | "weights" | "variant" | "defaults" | "schema">): string {
  const hub = parseHubId(spec.weights);
  const weights = hub ? `${hub.repo}@${hub.revision}` : spec.weights;
  const defaults = Object.fromEntries(
    Object.entries(spec.defaults)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b)),
  );
  // The schema joins only when not text-to-image, so that existing versions keep their ids.
  const schema = spec.schema && spec.schema !== "text-to-image" ? { schema: spec.schema } : {};
  const canonical = { defaults, name: spec.name, variant: spec.variant, weights, ...schema };
  if (
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

function baseDefaults(name: string, weights: string): ModelDefaults {
  const hub = parseHubId(weights);
  const known = hub ? KNOWN_WEIGHTS[hub.repo] : undefined;
  if (known) return known;
  return name === DEFAULT_MODEL_NAME ? REPLICATE_DEFAULTS : GENERIC_DEFAULTS;
}

/** Resolves a folder against the models file's folder; keeps hub ids and tiny-random as they are. */
function normalizeWeights(weights: string, baseDir: string): string {
  if (weights === TINY_RANDOM) return weights;
  const local = weights.startsWith(".") || weights.startsWith("/") || weights.startsWith("~") || !parseHubId(weights);
  return local ? path.resolve(baseDir, weights) : weights;
}

function checkDefaults(where: string, raw: unknown, base: ModelDefaults): ModelDefaults {
  if (raw === undefined) return { ...base };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new CatalogError(`${where}: must be an object`);
  const out: ModelDefaults = { ...base };
  for (const [key, value] of Object.entries(raw)) {
    const at = `${where}.${key}`;
    switch (key) {
      case "width":
      case "height":
        if (!SIZES.includes(value as (typeof SIZES)[number])) {
          throw new CatalogError(`${at}: must be one of ${SIZES.join(", ")}, got ${JSON.stringify(value)}`);
        }
        out[key] = value as number;
        break;
      case "num_inference_steps":
        if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 500) {
          throw new CatalogError(`${at}: must be an integer from 1 to 500, got ${JSON.stringify(value)}`);
        }
        out[key] = value as number;
        break;
      case "guidance_scale":
        if (typeof value !== "number" || value < 1 || value > 20) {
          throw new CatalogError(
            `${at}: must be a number from 1 to 20 (1 turns guidance off), got ${JSON.stringify(value)}`,
          );
        }
        out[key] = value;
        break;
      case "scheduler":
        if (!SCHEDULERS.includes(value as (typeof SCHEDULERS)[number])) {
          throw new CatalogError(`${at}: must be one of ${SCHEDULERS.join(", ")}, got ${JSON.stringify(value)}`);
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
  if (out.width * out.height > 786_432) {
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
    schema?: InputSchema;
    sharesWeightsOf?: string;
    setupOnDemand?: boolean;
  } = {},
): ModelSpec {
  const where = opts.where ?? name;
  if (!MODEL_NAME.test(name))
    throw new CatalogError(`${where}: a model name is owner/name, got ${JSON.stringify(name)}`);
  const variant = opts.variant ?? "fp32";
  const defaults = checkDefaults(`${where}.defaults`, opts.defaults, baseDefaults(name, weights));
  const version = versionId({ name, weights, variant, defaults, schema: opts.schema });
  return {
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
      if (!["weights", "variant", "defaults", "description", "schema"].includes(key)) {
        throw new CatalogError(`${where}.${key}: unknown setting (weights, variant, defaults, description, schema)`);
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
    specs.push(
      modelSpec(name, normalizeWeights(entry["weights"], baseDir), {
        variant,
        schema: schema as InputSchema | undefined,
        defaults: entry["defaults"],
        description: entry["description"] as string | undefined,
        where,
      }),
    );
  }
  if (specs.length === 0) throw new CatalogError(`models file ${file}: lists no models`);
  return specs;
}

/**
 * The models to serve: those of the models file, with --model (when given) as the weights of
 * stability-ai/stable-diffusion; with neither, stability-ai/stable-diffusion on SD 2.1.
 */
export function modelCatalog(opts: { modelsFile?: string; model?: string; variant?: "fp32" | "fp16" }): ModelSpec[] {
  const variant = opts.variant ?? "fp32";
  const fromFile = opts.modelsFile ? readModelsFile(opts.modelsFile, variant) : [];
  if (opts.model === undefined) {
    return fromFile.length > 0 ? fromFile : [modelSpec(DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS, { variant })];
  }
  const weights = normalizeWeights(opts.model, process.cwd());
  const inFile = fromFile.find((s) => s.name === DEFAULT_MODEL_NAME);
  const main = modelSpec(DEFAULT_MODEL_NAME, weights, {
    variant: inFile?.variant ?? variant,
    description: inFile?.description,
  });
  return [main, ...fromFile.filter((s) => s.name !== DEFAULT_MODEL_NAME)];
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
  return [...specs, ...added];
}
