/**
 * stability-ai/stable-diffusion as Replicate publishes it (version ac732df8…77e4, Cog's
 * predict.py of replicate/cog-stable-diffusion): the input schema below is written once and
 * drives request validation (422 invalid_fields), the version's openapi_schema and the
 * server's OpenAPI document. predict() runs our engine with the weights the operator chose.
 * Every model of the models file is served through this adapter, with its own name, version
 * and input defaults (see model-catalog.ts).
 */
import { randomInt } from "node:crypto";
import {
  formatHubRef,
  HubError,
  type HubSettings,
  ModelError,
  parseHubFileId,
  parseHubId,
  RequestError,
} from "../../engine/index.js";
import {
  DEFAULT_MODEL_NAME,
  DEFAULT_WEIGHTS,
  type FewStepKind,
  type InputSchema,
  LCM_SCHEDULER,
  type ModelDefaults,
  type ModelSpec,
  modelSpec,
  REPLICATE_DEFAULTS,
  SCHEDULERS,
  SDXL_MODEL_NAME,
  SIZES,
  STABLE_DIFFUSION_VERSION,
} from "../../model-catalog.js";
import { fileInputProblem } from "../files/file-inputs.js";
import { publicErrorMessage } from "../public-error.js";
import { type InvalidField, type JsonSchema, validate } from "../schemas/json-schema.js";
import { DownloadTracker } from "./download-tracker.js";
import { EngineHost, EngineStoppedError, type PictureInputs, type StepReport } from "./engine-host.js";
import {
  type ImageLimits,
  type ModelAdapter,
  type ModelDescription,
  type ModelState,
  type ModelVersion,
  type OutputFile,
  type PredictContext,
  PredictionError,
  type SetupProgress,
} from "./model.js";
import { progressLine } from "./progress-bar.js";
import { ReplacedPromptTooLong, sdxlImageLimits, sdxlInvalidFields, sdxlJob, sdxlSchemas } from "./sdxl.js";

export { STABLE_DIFFUSION_VERSION };

const MAX_PIXELS = 786_432;
const SIZE_DESCRIPTION = "Maximum size is 1024x768 or 768x1024 because of memory limits";
/**
 * Longest prompt and negative prompt, in characters. CLIP reads only their first 75 tokens
 * (a few hundred characters); the bound keeps stored inputs, listings and pages small. It is
 * part of the published schema (maxLength), so clients see it.
 */
export const MAX_PROMPT_LENGTH = 10_000;
/** At most two previews a second: enough to watch, little to send (each is a few kB per image). */
const PREVIEW_INTERVAL_MS = 500;
/** A 256² TAESD preview costs about 4 % of an SD 1.5 step at batch 1 (a 512² one, about a sixth). */
const DEFAULT_PREVIEW_SIZE = 256;

/** What a model's input accepts beyond Replicate's (model-catalog.ts: few-step models). */
export interface InputChoices {
  schedulers: readonly string[];
  guidanceMinimum: number;
  /** A few-step model (LCM, Turbo): its img2img and inpainting schemas keep its own steps and scheduler. */
  fewStep?: FewStepKind;
}

const REPLICATE_CHOICES: InputChoices = { schedulers: SCHEDULERS, guidanceMinimum: 1 };

/**
 * `components.schemas` as Cog (pydantic v1) renders predict.py's signature: enums are referenced
 * through allOf. The defaults are the model's (Replicate's for stability-ai/stable-diffusion), and
 * so are the choices (a few-step model also takes LCM, or a guidance scale from 0).
 */
export function stableDiffusionSchemas(
  defaults: ModelDefaults,
  choices: InputChoices = REPLICATE_CHOICES,
): Record<string, JsonSchema> {
  return {
    Input: {
      type: "object",
      title: "Input",
      properties: {
        prompt: {
          type: "string",
          title: "Prompt",
          description: "Input prompt",
          default: "a photo of an astronaut riding a horse on mars",
          maxLength: MAX_PROMPT_LENGTH,
          "x-order": 0,
        },
        negative_prompt: {
          type: "string",
          title: "Negative Prompt",
          description: "Specify things to not see in the output",
          maxLength: MAX_PROMPT_LENGTH,
          ...(defaults.negative_prompt === undefined ? {} : { default: defaults.negative_prompt }),
          "x-order": 1,
        },
        width: {
          allOf: [{ $ref: "#/components/schemas/width" }],
          description: `Width of output image. ${SIZE_DESCRIPTION}`,
          default: defaults.width,
          "x-order": 2,
        },
        height: {
          allOf: [{ $ref: "#/components/schemas/height" }],
          description: `Height of output image. ${SIZE_DESCRIPTION}`,
          default: defaults.height,
          "x-order": 3,
        },
        num_outputs: {
          type: "integer",
          title: "Num Outputs",
          description: "Number of images to output.",
          default: 1,
          minimum: 1,
          maximum: 4,
          "x-order": 4,
        },
        num_inference_steps: {
          type: "integer",
          title: "Num Inference Steps",
          description: "Number of denoising steps",
          default: defaults.num_inference_steps,
          minimum: 1,
          maximum: 500,
          "x-order": 5,
        },
        guidance_scale: {
          type: "number",
          title: "Guidance Scale",
          description: "Scale for classifier-free guidance",
          default: defaults.guidance_scale,
          minimum: choices.guidanceMinimum,
          maximum: 20,
          "x-order": 6,
        },
        scheduler: {
          allOf: [{ $ref: "#/components/schemas/scheduler" }],
          description: "Choose a scheduler.",
          default: defaults.scheduler,
          "x-order": 7,
        },
        seed: {
          type: "integer",
          title: "Seed",
          description: "Random seed. Leave blank to randomize the seed",
          "x-order": 8,
        },
      },
    },
    width: { title: "width", description: "An enumeration.", type: "integer", enum: [...SIZES] },
    height: { title: "height", description: "An enumeration.", type: "integer", enum: [...SIZES] },
    scheduler: { title: "scheduler", description: "An enumeration.", type: "string", enum: [...choices.schedulers] },
    Output: { type: "array", title: "Output", items: { type: "string", format: "uri" } },
  };
}

/** The Replicate input schemas this adapter can serve: text only, img2img, inpainting. */
export type InputSchemaKind = InputSchema;

function fileInput(title: string, description: string, order: number): JsonSchema {
  return { type: "string", title, format: "uri", description, "x-order": order };
}

/**
 * stability-ai/stable-diffusion-img2img and -inpainting as Replicate publishes them (see
 * shared/spec/replicate-sd-family.md): img2img takes `image` and `prompt_strength` and makes
 * pictures of the image's own size (no width/height); inpainting takes `image` and `mask`
 * (white repaints) and resizes them to width × height.
 */
export function imageInputSchemas(
  kind: InputSchemaKind,
  defaults: ModelDefaults,
  choices: InputChoices = REPLICATE_CHOICES,
): Record<string, JsonSchema> {
  const base = stableDiffusionSchemas(defaults, choices);
  if (kind === "text-to-image") return base;
  const props = (base["Input"] as JsonSchema).properties as Record<string, JsonSchema>;
  const order = (p: JsonSchema, n: number): JsonSchema => ({ ...p, "x-order": n });
  // Replicate's published steps and scheduler for its img2img and inpainting models; a few-step
  // model (or one whose defaults choose LCM, as an LCM-LoRA's) keeps its own: 4 LCM steps, 1 Turbo step.
  // Turbo's img2img is its model card's: 2 steps at strength 0.5 (steps × strength must reach 1).
  const native = choices.fewStep !== undefined || defaults.scheduler === LCM_SCHEDULER;
  const turboImg2img = kind === "img2img" && choices.fewStep === "turbo";
  const steps = (replicate: number) =>
    turboImg2img ? Math.max(2, defaults.num_inference_steps) : native ? defaults.num_inference_steps : replicate;
  const common = {
    negative_prompt: props["negative_prompt"] as JsonSchema,
    num_inference_steps: props["num_inference_steps"] as JsonSchema,
    guidance_scale: props["guidance_scale"] as JsonSchema,
    scheduler: { ...(props["scheduler"] as JsonSchema), default: native ? defaults.scheduler : "DPMSolverMultistep" },
    seed: props["seed"] as JsonSchema,
  };
  const properties: Record<string, JsonSchema> =
    kind === "img2img"
      ? {
          prompt: order(
            { ...(props["prompt"] as JsonSchema), default: "A fantasy landscape, trending on artstation" },
            0,
          ),
          // Its predict.py's own words (the repository's text, typos and all).
          negative_prompt: order(
            {
              ...common.negative_prompt,
              description: "The prompt NOT to guide the image generation. Ignored when not using guidance",
            },
            1,
          ),
          image: fileInput("Image", "Inital image to generate variations of.", 2),
          prompt_strength: {
            type: "number",
            title: "Prompt Strength",
            description:
              "Prompt strength when providing the image. 1.0 corresponds to full destruction of information in init image",
            default: turboImg2img ? 0.5 : 0.8,
            minimum: 0,
            maximum: 1,
            "x-order": 3,
          },
          num_outputs: {
            ...(props["num_outputs"] as JsonSchema),
            description: "Number of images to output. Higher number of outputs may OOM.",
            maximum: 8,
            "x-order": 4,
          },
          num_inference_steps: order({ ...common.num_inference_steps, default: steps(25) }, 5),
          guidance_scale: order(common.guidance_scale, 6),
          scheduler: order(common.scheduler, 7),
          seed: order(common.seed, 8),
        }
      : {
          prompt: order(props["prompt"] as JsonSchema, 0),
          negative_prompt: order(common.negative_prompt, 1),
          image: fileInput(
            "Image",
            "Initial image to generate variations of. Will be resized to the specified width and height",
            2,
          ),
          mask: fileInput(
            "Mask",
            "Black and white image to use as mask for inpainting over the image provided. White pixels are inpainted and black pixels are preserved",
            3,
          ),
          width: order({ ...(props["width"] as JsonSchema), default: 512 }, 4),
          height: order({ ...(props["height"] as JsonSchema), default: 512 }, 5),
          num_outputs: order(props["num_outputs"] as JsonSchema, 6),
          num_inference_steps: order({ ...common.num_inference_steps, default: steps(50) }, 7),
          guidance_scale: order(common.guidance_scale, 8),
          scheduler: order(common.scheduler, 9),
          seed: order(common.seed, 10),
        };
  return {
    ...base,
    Input: {
      type: "object",
      title: "Input",
      required: kind === "img2img" ? ["image"] : ["image", "mask"],
      properties,
    },
  };
}

/** The names of an Input schema's file inputs (`format: "uri"`), in order. */
export function fileInputNames(schemas: Record<string, JsonSchema>): string[] {
  const props = ((schemas["Input"] as JsonSchema | undefined)?.properties ?? {}) as Record<string, JsonSchema>;
  return Object.entries(props)
    .filter(([, p]) => p["format"] === "uri")
    .map(([name]) => name);
}

/** stability-ai/stable-diffusion's schemas, with Replicate's defaults. */
export const STABLE_DIFFUSION_SCHEMAS: Record<string, JsonSchema> = stableDiffusionSchemas(REPLICATE_DEFAULTS);

interface SdInput {
  prompt: string;
  negative_prompt: string | undefined;
  width: number;
  height: number;
  num_outputs: number;
  num_inference_steps: number;
  guidance_scale: number;
  scheduler: string;
  seed: number | undefined;
  prompt_strength: number | undefined;
}

/** A null optional input means "not given", as it does in much client code (spec §3.1). */
function withoutNulls(input: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== null));
}

function withDefaults(schemas: Record<string, JsonSchema>, input: Record<string, unknown>): SdInput {
  const props = (schemas["Input"] as JsonSchema).properties as Record<string, JsonSchema>;
  const given = withoutNulls(input);
  const value = <T>(key: string): T => (key in given ? given[key] : props[key]?.["default"]) as T;
  return {
    prompt: value("prompt"),
    negative_prompt: value("negative_prompt"),
    width: value("width"),
    height: value("height"),
    num_outputs: value("num_outputs"),
    num_inference_steps: value("num_inference_steps"),
    guidance_scale: value("guidance_scale"),
    scheduler: value("scheduler"),
    seed: value("seed"),
    prompt_strength: value("prompt_strength"),
  };
}

export interface StableDiffusionOptions {
  /** The model's name, weights, variant, defaults and version (see model-catalog.ts). */
  spec?: ModelSpec;
  /** Without a spec: the weights of stability-ai/stable-diffusion (a folder, a Hugging Face model id, or tiny-random). */
  source?: string;
  /** The hub and its cache, for a hub id (from config's HF_* settings). */
  hub?: HubSettings;
  /** sdserve's cache, where tiny-random is built (SDSERVE_CACHE). */
  cacheDir?: string;
  /** The engine's optimised-model cache (SDSERVE_OPTIMIZED_CACHE); absent: off. */
  optimizedCache?: string | false;
  threads?: number;
  provider?: "cpu" | "cuda";
  /** Longest side of a TAESD step preview (the spec's previewVae), in pixels; default 256. */
  previewSize?: number;
  /** Where the engine's own messages go (which execution provider runs each network). */
  log?: (line: string) => void;
  /** After a setup failed because the hub was unreachable or the engine died, how long until a prediction tries again. */
  retryUnreachableMs?: number;
  /**
   * Another model on the same weights: this one runs on its engine (one loaded copy of the
   * networks serves stability-ai/stable-diffusion, -img2img and -inpainting).
   */
  shareEngineWith?: StableDiffusionAdapter;
}

/** Versions made from a models file have no publication date: they exist since the server started. */
const STARTED_AT = new Date().toISOString().replace(/Z$/, "000Z");
/** A setup that failed because the hub could not be reached (or the engine died) is tried again, at most this often. */
const RETRY_UNREACHABLE_MS = 30_000;
const OFFLINE_HINT = "to try everything offline meanwhile, start sdserve with --model tiny-random";

/** The reason a model cannot be set up, with what to do about it, in a sentence or two. */
function setupFailure(err: unknown, spec: ModelSpec, log?: (line: string) => void): string {
  // An engine process that ended is told as such (its reason is ours, not a local path).
  const shown = err instanceof EngineStoppedError ? err.message : publicErrorMessage(err, "setting up the model", log);
  const message = shown.replace(/[.\s]+$/, "");
  if (err instanceof HubError) return `${message}; ${OFFLINE_HINT}`;
  if (err instanceof EngineStoppedError) {
    // Most often the memory ran out while the weights were loaded; the server's log has the rest.
    return `${message} while loading the model (out of memory?); a later prediction tries again`;
  }
  // A file the models file's entry names beside the weights (a LoRA, an embedding, the VAE, …):
  // the message names it; the fix is in that entry, not in the weights.
  const e = spec.engine;
  const named = [e.config, e.vae, e.embeddingsDir, e.loraDir, ...(e.loras ?? []).map((l) => l.path)];
  if (named.some((f) => f !== undefined && message.includes(f))) {
    return `${message}. Fix or remove it in the entry of ${spec.name} in the models file`;
  }
  const where = spec.name === DEFAULT_MODEL_NAME ? "--model" : `the weights of ${spec.name} in the models file`;
  return `${message}. Point ${where} at a diffusers-format folder, a single-file .safetensors checkpoint or a Hugging Face model id (owner/name); ${OFFLINE_HINT}`;
}

/** The limits of the Input schema (sizes, outputs) and of memory (pixels), for APIs with parameters of their own. */
export function imageLimitsOf(schemas: Record<string, JsonSchema>): ImageLimits {
  const props = schemas["Input"]?.properties ?? {};
  const numbers = (name: string) => ((schemas[name]?.enum ?? []) as number[]).filter((v) => typeof v === "number");
  return {
    maxOutputs: props["num_outputs"]?.maximum ?? 1,
    widths: numbers("width"),
    heights: numbers("height"),
    maxPixels: MAX_PIXELS,
    defaultWidth: props["width"]?.["default"] as number,
    defaultHeight: props["height"]?.["default"] as number,
  };
}

export class StableDiffusionAdapter implements ModelAdapter {
  readonly model: ModelDescription;
  readonly version: ModelVersion;
  readonly schemas: Record<string, JsonSchema>;
  readonly spec: ModelSpec;
  readonly inputSchema: InputSchemaKind;
  readonly imageLimits: ImageLimits;
  private ownState: ModelState = "STARTING";
  private ownSetupError: string | undefined;
  private readonly shared: StableDiffusionAdapter | undefined;
  /** The engine process running the model (engine-host.ts); replaced when it dies. */
  private engine: EngineHost | undefined;
  private closed = false;
  private loading: Promise<void> | undefined;
  private phase: SetupProgress["phase"] = "loading";
  private download: DownloadTracker | undefined;
  private failedAt = 0;
  private failedTransiently = false;

  /** stability-ai/sdxl's replicate_weights: a LoRA by URL, fetched by the worker (files/weights-inputs.ts). */
  get weightsInputs(): readonly string[] {
    return this.takesReplicateWeights ? ["replicate_weights"] : [];
  }

  /** SDXL models take LoRAs per request unless the models file says `"replicate_weights": false`. */
  private get takesReplicateWeights(): boolean {
    return this.spec.family === "sdxl" && this.spec.engine?.replicateWeights !== false;
  }

  get promptFolders(): { loraDir?: string; embeddingsDir?: string } {
    const e = this.spec.engine;
    return {
      ...(e?.loraDir !== undefined ? { loraDir: e.loraDir } : {}),
      ...(e?.embeddingsDir !== undefined ? { embeddingsDir: e.embeddingsDir } : {}),
    };
  }

  constructor(private readonly options: StableDiffusionOptions) {
    this.spec = options.spec ?? modelSpec(DEFAULT_MODEL_NAME, options.source ?? DEFAULT_WEIGHTS);
    this.inputSchema = this.spec.schema ?? "text-to-image";
    this.shared = options.shareEngineWith?.shared ?? options.shareEngineWith;
    const [owner, name] = this.spec.name.split("/") as [string, string];
    const hub = parseHubId(this.spec.weights);
    this.model =
      this.spec.name === SDXL_MODEL_NAME
        ? {
            owner,
            name,
            description: this.spec.description ?? "A text-to-image generative AI model that creates beautiful images",
            githubUrl: "https://github.com/replicate/cog-sdxl",
            paperUrl: "https://arxiv.org/abs/2307.01952",
            licenseUrl: "https://github.com/Stability-AI/generative-models/blob/main/model_licenses/LICENSE-SDXL1.0",
          }
        : this.spec.name === DEFAULT_MODEL_NAME
          ? {
              owner,
              name,
              description:
                this.spec.description ??
                "A latent text-to-image diffusion model capable of generating photo-realistic images given any text input",
              githubUrl: "https://github.com/replicate/cog-stable-diffusion",
              paperUrl: "https://arxiv.org/abs/2112.10752",
              licenseUrl: "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
            }
          : {
              owner,
              name,
              description:
                this.spec.description ??
                `Stable Diffusion ${this.inputSchema} on ${hub ? formatHubRef(hub) : this.spec.weights}, served by sdserve`,
              githubUrl: null,
              paperUrl: "https://arxiv.org/abs/2112.10752",
              licenseUrl: hub ? `https://huggingface.co/${hub.repo}` : null,
            };
    // cog_version names the Cog line whose schema layout (pydantic v1, enums through allOf) is served here.
    this.version = {
      id: this.spec.version,
      createdAt: this.spec.version === STABLE_DIFFUSION_VERSION ? "2022-11-22T22:25:35.000000Z" : STARTED_AT,
      cogVersion: "0.8.6",
      aliases: this.spec.versionAliases,
    };
    const sdxl = this.spec.family === "sdxl";
    this.schemas = sdxl
      ? sdxlSchemas(this.spec.defaults)
      : imageInputSchemas(this.inputSchema, this.spec.defaults, this.spec);
    this.imageLimits = sdxl ? sdxlImageLimits(this.spec.defaults) : imageLimitsOf(this.schemas);
  }

  get setupOnDemand(): boolean {
    return this.spec.setupOnDemand === true;
  }

  get setupStarted(): boolean {
    return this.shared ? this.shared.setupStarted : this.loading !== undefined;
  }

  get state(): ModelState {
    return this.shared ? this.shared.state : this.ownState;
  }

  get setupError(): string | undefined {
    return this.shared ? this.shared.setupError : this.ownSetupError;
  }

  /** The engine process this model runs on (the shared one's, when it shares). */
  private get engineHost(): EngineHost | undefined {
    return this.shared ? this.shared.engine : this.engine;
  }

  get setupProgress(): SetupProgress | undefined {
    if (this.shared) return this.shared.setupProgress;
    if (this.state !== "STARTING") return undefined;
    const download = this.download?.progress;
    return download && this.phase === "downloading" ? { phase: "downloading", download } : { phase: this.phase };
  }

  validateInput(input: unknown): InvalidField[] {
    const cleaned =
      input !== null && typeof input === "object" && !Array.isArray(input)
        ? withoutNulls(input as Record<string, unknown>)
        : input;
    const errors = validate(this.schemas["Input"] as JsonSchema, cleaned, {
      root: { components: { schemas: this.schemas } },
      path: "input",
      name: "input",
    });
    if (errors.length > 0 || cleaned === null || typeof cleaned !== "object") return errors;
    // A file input that can never be fetched (a bad scheme, a malformed data: URI) is known now.
    for (const name of fileInputNames(this.schemas)) {
      const value = (cleaned as Record<string, unknown>)[name];
      if (value === undefined) continue;
      const problem = fileInputProblem(value);
      if (problem) errors.push({ type: "format", field: `input.${name}`, description: `${name} ${problem}` });
    }
    if (this.spec.family === "sdxl") {
      errors.push(...sdxlInvalidFields(cleaned as Record<string, unknown>));
      if (
        !this.takesReplicateWeights &&
        typeof (cleaned as Record<string, unknown>)["replicate_weights"] === "string"
      ) {
        errors.push({
          type: "not_supported",
          field: "input.replicate_weights",
          description: `replicate_weights is turned off for ${this.spec.name} on this server ("replicate_weights": false in its models-file entry)`,
        });
      }
    }
    return errors;
  }

  setup(): Promise<void> {
    if (this.shared) return this.shared.setup();
    // The hub was unreachable: the network may be back by now.
    const retryAfter = this.options.retryUnreachableMs ?? RETRY_UNREACHABLE_MS;
    if (this.failedTransiently && performance.now() - this.failedAt >= retryAfter) {
      this.loading = undefined;
      this.failedTransiently = false;
      this.ownState = "STARTING";
      this.ownSetupError = undefined;
    }
    this.loading ??= (async () => {
      const log = this.options.log ?? (() => {});
      const hub = parseHubId(this.spec.weights) !== undefined || parseHubFileId(this.spec.weights) !== undefined;
      this.phase = hub ? "downloading" : "loading";
      const download = hub ? new DownloadTracker(this.spec.weights, log) : undefined;
      this.download = download;
      const engine = new EngineHost({
        log,
        download: (event) => download?.handle(event),
        loading: () => {
          this.phase = "loading";
        },
        stopped: (why) => this.engineStopped(engine, why),
      });
      this.engine = engine;
      try {
        const { hub: hubSettings, cacheDir } = this.options;
        if (!hubSettings || !cacheDir) throw new Error("the model adapter was made without its hub and cache settings");
        await engine.setup({
          weights: this.spec.weights,
          variant: this.spec.variant,
          hub: hubSettings,
          cacheDir,
          optimizedCache: this.options.optimizedCache,
          threads: this.options.threads,
          provider: this.options.provider,
          engine: this.spec.engine,
          preview: this.spec.previewVae
            ? { vae: this.spec.previewVae, maxSize: this.options.previewSize ?? DEFAULT_PREVIEW_SIZE }
            : undefined,
          ...(this.spec.refiner === undefined ? {} : { refiner: this.spec.refiner }),
          // SDXL's schema takes replicate_weights: LoRAs per request, switched without a new session.
          ...(this.takesReplicateWeights ? { loraSupport: true } : {}),
        });
        this.ownState = "READY";
      } catch (err) {
        this.engine = undefined;
        await engine.close();
        this.ownState = "SETUP_FAILED";
        this.ownSetupError = setupFailure(err, this.spec, this.options.log);
        this.failedAt = performance.now();
        this.failedTransiently =
          (err instanceof HubError && err.kind === "unreachable") || err instanceof EngineStoppedError;
        throw new PredictionError(this.ownSetupError);
      }
    })();
    return this.loading;
  }

  /**
   * The engine process died (a fault in onnxruntime or the engine, or it was killed): the
   * predictions it ran have failed with EngineStoppedError; load the model again in a new one.
   */
  private engineStopped(engine: EngineHost, why: string): void {
    // An engine that dies while loading fails that setup instead (no loop of reloads).
    if (this.engine !== engine || this.closed || this.state !== "READY") return;
    this.engine = undefined;
    this.options.log?.(`${this.spec.name}: ${why}; loading the model again`);
    this.loading = undefined;
    this.ownState = "STARTING";
    this.ownSetupError = undefined;
    this.setup().catch(() => undefined);
  }

  async predict(raw: Record<string, unknown>, ctx: PredictContext): Promise<OutputFile[]> {
    await this.setup();
    const engine = this.engineHost;
    if (!engine) throw new PredictionError(`The model ${this.spec.name} is being loaded again; please retry.`);
    if (this.spec.family === "sdxl") return this.predictSdxl(engine, raw, ctx);
    const input = withDefaults(this.schemas, raw);
    const pictures = this.pictures(ctx);
    // predict.py: two random bytes when no seed is given, and the seed is always the first log line.
    const seed = input.seed ?? randomInt(0, 65536);
    ctx.log(`Using seed: ${seed}`);
    if (input.width !== undefined && input.height !== undefined && input.width * input.height > MAX_PIXELS) {
      throw new PredictionError(
        "Maximum size is 1024x768 or 768x1024 pixels, because of memory limits. Please select a lower width or height.",
      );
    }
    const hires = ctx.a1111?.hires;
    // The strength the engine gets (below): from a picture, it runs ⌊steps × strength⌋ steps.
    const strength =
      pictures && ctx.a1111?.strength !== undefined
        ? ctx.a1111.strength
        : pictures && this.inputSchema === "img2img"
          ? input.prompt_strength
          : undefined;
    const steps = input.num_inference_steps;
    // An LCM checkpoint's img2img runs every step (LatentConsistencyModelImg2ImgPipeline).
    const everyStep = this.spec.fewStep === "lcm" && input.scheduler === LCM_SCHEDULER && !pictures?.mask;
    // diffusers' bar counts the steps that run (img2img: get_timesteps' cut), the hires fix's two
    // passes as one run.
    const total =
      (strength === undefined || everyStep ? steps : Math.min(Math.floor(steps * strength), steps)) +
      (hires?.steps ?? 0);
    ctx.log(progressLine(0, total, 0));
    const onStep = ({ step: call, total: calls, seconds, elapsedSeconds, previews }: StepReport) => {
      // The engine counts UNet calls; diffusers' bar leaves out a scheduler's extra ones (PNDM's
      // warm-up call, Heun's first-order halves): after call s of L it stands at ⌊s × total / L⌋.
      const step = calls > 0 ? Math.min(total, Math.floor((call * total) / calls)) : call;
      ctx.stepTime?.(seconds);
      ctx.log(progressLine(step, total, elapsedSeconds));
      if (previews && ctx.preview) ctx.preview({ step, total, images: previews });
    };
    return this.run(
      () =>
        engine.generate(
          {
            prompt: input.prompt,
            negativePrompt: input.negative_prompt,
            width: input.width,
            height: input.height,
            // The first pass's steps; the hires fix adds its own (engine/hires.ts).
            numInferenceSteps: input.num_inference_steps,
            guidanceScale: input.guidance_scale,
            scheduler: input.scheduler,
            ...(ctx.a1111?.karras ? { useKarrasSigmas: true } : {}),
            seed,
            numOutputs: input.num_outputs,
            ...(ctx.promptSyntax ? { promptSyntax: ctx.promptSyntax } : {}),
            ...(ctx.a1111?.clipSkip === undefined ? {} : { clipSkip: ctx.a1111.clipSkip }),
            // A1111's step count for its denoising strength, where an /sdapi call says; else the input's.
            ...(strength === undefined ? {} : { strength }),
            ...(pictures?.mask && ctx.a1111?.maskedContent ? { maskedContent: ctx.a1111.maskedContent } : {}),
            ...(pictures && !pictures.mask && ctx.a1111?.latentResize
              ? { ...ctx.a1111.latentResize, latentResize: true }
              : {}),
          },
          {
            signal: ctx.signal,
            onStep,
            previewIntervalMs: ctx.preview ? PREVIEW_INTERVAL_MS : undefined,
            pictures,
            maxPixels: MAX_PIXELS,
            ...(hires ? { hires } : {}),
          },
        ),
      !ctx.a1111,
    );
  }

  /** stability-ai/sdxl's inputs (sdxl.ts): defaults filled in from its schema, refine modes, watermark. */
  private predictSdxl(engine: EngineHost, raw: Record<string, unknown>, ctx: PredictContext): Promise<OutputFile[]> {
    const props = (this.schemas["Input"] as JsonSchema).properties as Record<string, JsonSchema>;
    const given = withoutNulls(raw);
    const input = Object.fromEntries(Object.entries(props).map(([k, p]) => [k, k in given ? given[k] : p["default"]]));
    // cog-sdxl: a random seed from two bytes when none is given, logged first.
    const seed = (input["seed"] as number | undefined) ?? randomInt(0, 65536);
    ctx.log(`Using seed: ${seed}`);
    const weights = ctx.weights?.["replicate_weights"];
    const asked = typeof input["replicate_weights"] === "string" && input["replicate_weights"] !== "";
    if (asked && !weights) throw new PredictionError("replicate_weights could not be read");
    let job: ReturnType<typeof sdxlJob>;
    try {
      job = sdxlJob(input, seed, ctx.files, weights?.path, weights?.trainedTokens);
    } catch (err) {
      if (err instanceof ReplacedPromptTooLong) throw new PredictionError(err.message);
      throw err;
    }
    // /sdapi calls read prompts in A1111's syntax (emphasis, BREAK, chunks, <lora:…> from lora_dir).
    if (ctx.promptSyntax) job.request.promptSyntax = ctx.promptSyntax;
    if (ctx.a1111?.karras) job.request.useKarrasSigmas = true;
    // An /sdapi img2img call runs A1111's step count (its strength), as on SD models, and counts it.
    if (ctx.a1111?.strength !== undefined && job.request.strength !== undefined) {
      const steps = job.request.numInferenceSteps ?? 0;
      const base = (strength: number) => Math.min(Math.floor(steps * strength), steps);
      job.steps += base(ctx.a1111.strength) - base(job.request.strength);
      job.request.strength = ctx.a1111.strength;
    }
    // Its inpainting_fill 2 and 3: the area to repaint starts from a fresh draw of the seed, or zeros.
    if (ctx.a1111?.maskedContent && job.pictures?.mask) job.request.maskedContent = ctx.a1111.maskedContent;
    // Its resize_mode 3: the picture encoded at its own size, its latents resized to width × height.
    if (ctx.a1111?.latentResize && job.pictures && !job.pictures.mask) {
      Object.assign(job.request, { ...ctx.a1111.latentResize, latentResize: true });
    }
    if (input["image"] !== undefined && !job.pictures) throw new PredictionError("image could not be read");
    if (weights) {
      ctx.log(
        `Loading LoRA weights (replicate_weights, sha256 ${weights.sha256.slice(0, 12)}) at lora_scale ${input["lora_scale"]}`,
      );
      for (const note of weights.notes) ctx.log(note);
      if (weights.trainedTokens) ctx.log("Loading trained token embeddings (replicate_weights, embeddings.pti)");
    }
    // cog-sdxl prints the prompt (after special_params' replacements), then the pipeline it runs.
    ctx.log(`Prompt: ${job.request.prompt}`);
    ctx.log(job.pictures?.mask ? "inpainting mode" : job.pictures ? "img2img mode" : "txt2img mode");
    // A1111's hires fix (an /sdapi txt2img call): its second pass counts in the same run.
    const hires = ctx.a1111?.hires;
    const total = job.steps + (hires?.steps ?? 0);
    let done = 0;
    ctx.log(progressLine(0, total, 0));
    // The base's and the refiner's steps are counted as one run.
    const onStep = ({ seconds, elapsedSeconds, previews }: StepReport) => {
      done = Math.min(done + 1, total);
      ctx.stepTime?.(seconds);
      ctx.log(progressLine(done, total, elapsedSeconds));
      if (previews && ctx.preview) ctx.preview({ step: done, total, images: previews });
    };
    const run = this.run(() =>
      engine.generate(job.request, {
        signal: ctx.signal,
        onStep,
        previewIntervalMs: ctx.preview ? PREVIEW_INTERVAL_MS : undefined,
        pictures: job.pictures,
        ...(job.maxPixels ? { maxPixels: job.maxPixels } : {}),
        refine: job.refine,
        watermark: job.watermark,
        ...(hires ? { hires } : {}),
      }),
    );
    if (!weights) return run;
    // The engine names the cached file; the user knows it as replicate_weights.
    const pti = weights.trainedTokens?.path;
    return run.catch((err: unknown) => {
      if (err instanceof PredictionError && err.message.includes(weights.path)) {
        throw new PredictionError(err.message.split(weights.path).join("replicate_weights (lora.safetensors)"));
      }
      if (err instanceof PredictionError && pti && err.message.includes(pti)) {
        throw new PredictionError(err.message.split(pti).join("replicate_weights (embeddings.pti)"));
      }
      throw err;
    });
  }

  /** A generation's PNGs as output files; engine errors as the user should see them. */
  private async run(generate: () => Promise<Uint8Array[]>, inputNames?: boolean): Promise<OutputFile[]> {
    let images: Uint8Array[];
    try {
      images = await generate();
    } catch (err) {
      // The engine's strength is the input's prompt_strength (and its steps num_inference_steps).
      if (inputNames && err instanceof RequestError && err.field === "strength") {
        throw new PredictionError(
          err.message
            .replace(/\bsteps × strength\b/g, "num_inference_steps × strength")
            .replace(/\bstrength\b/g, "prompt_strength"),
        );
      }
      if (err instanceof RequestError || err instanceof ModelError) throw new PredictionError(err.message);
      if (err instanceof EngineStoppedError) {
        // What happened is in the server's log; its text may hold internals not meant for users.
        throw new PredictionError(
          "The engine stopped unexpectedly while making this prediction; the model is being loaded again, so a new prediction can be made shortly.",
        );
      }
      throw err;
    }
    return images.map((data, i) => ({ name: `out-${i}.png`, contentType: "image/png", data }));
  }

  /** The picture inputs, fetched by the worker before predict (ctx.files). */
  private pictures(ctx: PredictContext): PictureInputs | undefined {
    if (this.inputSchema === "text-to-image") return undefined;
    const image = ctx.files?.["image"];
    if (!image) throw new PredictionError("image is required");
    if (this.inputSchema === "img2img") return { image };
    const mask = ctx.files?.["mask"];
    if (!mask) throw new PredictionError("mask is required");
    return { image, mask };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.shared) return;
    await this.loading?.catch(() => undefined);
    await this.engine?.close();
    this.engine = undefined;
  }
}
