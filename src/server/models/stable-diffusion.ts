/**
 * stability-ai/stable-diffusion as Replicate publishes it (version ac732df8…77e4, Cog's
 * predict.py of replicate/cog-stable-diffusion): the input schema below is written once and
 * drives request validation (422 invalid_fields), the version's openapi_schema and the
 * server's OpenAPI document. predict() runs our engine with the weights the operator chose.
 */
import { randomInt } from "node:crypto";
import {
  a1111Parameters,
  encodePng,
  formatBytes,
  type HubSettings,
  loadPipeline,
  ModelError,
  type Pipeline,
  RequestError,
  resolveModelSource,
  type StepEvent,
} from "../../engine/index.js";
import { type InvalidField, type JsonSchema, validate } from "./json-schema.js";
import { canPreview, latentsToPreviewImages } from "./latent-preview.js";
import { type ModelAdapter, type ModelState, type OutputFile, type PredictContext, PredictionError } from "./model.js";
import { progressLine } from "./progress-bar.js";

export const STABLE_DIFFUSION_VERSION = "ac732df83cea7fff18b8472768c88ad041fa750ff7682a21affe81863cbe77e4";

const SIZES = [128, 256, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024];
const SCHEDULERS = ["DDIM", "K_EULER", "DPMSolverMultistep", "K_EULER_ANCESTRAL", "PNDM", "KLMS"];
const MAX_PIXELS = 786_432;
const SIZE_DESCRIPTION = "Maximum size is 1024x768 or 768x1024 because of memory limits";
/** At most two previews a second: enough to watch, little to send (each is a few kB per image). */
const PREVIEW_INTERVAL_MS = 500;

/** `components.schemas` as Cog (pydantic v1) renders predict.py's signature: enums are referenced through allOf. */
export const STABLE_DIFFUSION_SCHEMAS: Record<string, JsonSchema> = {
  Input: {
    type: "object",
    title: "Input",
    properties: {
      prompt: {
        type: "string",
        title: "Prompt",
        description: "Input prompt",
        default: "a photo of an astronaut riding a horse on mars",
        "x-order": 0,
      },
      negative_prompt: {
        type: "string",
        title: "Negative Prompt",
        description: "Specify things to not see in the output",
        "x-order": 1,
      },
      width: {
        allOf: [{ $ref: "#/components/schemas/width" }],
        description: `Width of output image. ${SIZE_DESCRIPTION}`,
        default: 768,
        "x-order": 2,
      },
      height: {
        allOf: [{ $ref: "#/components/schemas/height" }],
        description: `Height of output image. ${SIZE_DESCRIPTION}`,
        default: 768,
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
        default: 50,
        minimum: 1,
        maximum: 500,
        "x-order": 5,
      },
      guidance_scale: {
        type: "number",
        title: "Guidance Scale",
        description: "Scale for classifier-free guidance",
        default: 7.5,
        minimum: 1,
        maximum: 20,
        "x-order": 6,
      },
      scheduler: {
        allOf: [{ $ref: "#/components/schemas/scheduler" }],
        description: "Choose a scheduler.",
        default: "DPMSolverMultistep",
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
  width: { title: "width", description: "An enumeration.", type: "integer", enum: SIZES },
  height: { title: "height", description: "An enumeration.", type: "integer", enum: SIZES },
  scheduler: { title: "scheduler", description: "An enumeration.", type: "string", enum: SCHEDULERS },
  Output: { type: "array", title: "Output", items: { type: "string", format: "uri" } },
};

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
}

/** A null optional input means "not given", as it does in much client code (spec §3.1). */
function withoutNulls(input: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== null));
}

function withDefaults(input: Record<string, unknown>): SdInput {
  const props = (STABLE_DIFFUSION_SCHEMAS["Input"] as JsonSchema).properties as Record<string, JsonSchema>;
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
  };
}

export interface StableDiffusionOptions {
  /** A diffusers-format folder, a Hugging Face model id, or tiny-random. */
  source: string;
  /** The hub and its cache, for a hub id. */
  hub?: HubSettings;
  variant?: "fp32" | "fp16";
  threads?: number;
  provider?: "cpu" | "cuda";
  /** Where the engine's own messages go (which execution provider runs each network). */
  log?: (line: string) => void;
}

export class StableDiffusionAdapter implements ModelAdapter {
  readonly model = {
    owner: "stability-ai",
    name: "stable-diffusion",
    description:
      "A latent text-to-image diffusion model capable of generating photo-realistic images given any text input",
    githubUrl: "https://github.com/replicate/cog-stable-diffusion",
    paperUrl: "https://arxiv.org/abs/2112.10752",
    licenseUrl: "https://huggingface.co/spaces/CompVis/stable-diffusion-license",
  };
  // cog_version names the Cog line whose schema layout (pydantic v1, enums through allOf) is served here.
  readonly version = { id: STABLE_DIFFUSION_VERSION, createdAt: "2022-11-22T22:25:35.000000Z", cogVersion: "0.8.6" };
  readonly schemas = STABLE_DIFFUSION_SCHEMAS;
  state: ModelState = "STARTING";
  setupError: string | undefined;
  private pipeline: Pipeline | undefined;
  private label = "stable-diffusion";
  private loading: Promise<void> | undefined;

  constructor(private readonly options: StableDiffusionOptions) {}

  validateInput(input: unknown): InvalidField[] {
    const cleaned =
      input !== null && typeof input === "object" && !Array.isArray(input)
        ? withoutNulls(input as Record<string, unknown>)
        : input;
    return validate(this.schemas["Input"] as JsonSchema, cleaned, {
      root: { components: { schemas: this.schemas } },
      path: "input",
      name: "input",
    });
  }

  setup(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const source = await resolveModelSource(this.options.source, {
          hub: this.options.hub,
          variant: this.options.variant,
          onProgress: (e) => {
            if (e.type === "plan" && e.downloadBytes > 0) {
              this.options.log?.(`Downloading ${e.repo}: ${formatBytes(e.downloadBytes)}`);
            } else if (e.type === "file-done") {
              this.options.log?.(`Downloaded ${e.path} (${formatBytes(e.size)})`);
            } else if (e.type === "offline-fallback") {
              this.options.log?.(`${e.reason}; using the copy in the Hugging Face cache`);
            }
          },
        });
        this.label = source.label;
        this.pipeline = await loadPipeline(source.path, {
          variant: this.options.variant,
          threads: this.options.threads,
          provider: this.options.provider,
          log: this.options.log,
        });
        this.state = "READY";
      } catch (err) {
        this.state = "SETUP_FAILED";
        this.setupError = err instanceof Error ? err.message : String(err);
        throw err;
      }
    })();
    return this.loading;
  }

  async predict(raw: Record<string, unknown>, ctx: PredictContext): Promise<OutputFile[]> {
    await this.setup();
    const pipeline = this.pipeline as Pipeline;
    const input = withDefaults(raw);
    // predict.py: two random bytes when no seed is given, and the seed is always the first log line.
    const seed = input.seed ?? randomInt(0, 65536);
    ctx.log(`Using seed: ${seed}`);
    if (input.width * input.height > MAX_PIXELS) {
      throw new PredictionError(
        "Maximum size is 1024x768 or 768x1024 pixels, because of memory limits. Please select a lower width or height.",
      );
    }
    const total = input.num_inference_steps;
    ctx.log(progressLine(0, total, 0));
    const start = performance.now();
    let lastPreview = Number.NEGATIVE_INFINITY;
    const onStep = ({ step, latents }: StepEvent) => {
      const now = performance.now();
      ctx.log(progressLine(step, total, (now - start) / 1000));
      if (!ctx.preview || now - lastPreview < PREVIEW_INTERVAL_MS || !canPreview(latents)) return;
      lastPreview = now;
      ctx.preview({ step, total, images: latentsToPreviewImages(latents).map((image) => encodePng(image)) });
    };
    let result: Awaited<ReturnType<Pipeline["generate"]>>;
    try {
      result = await pipeline.generate(
        {
          prompt: input.prompt,
          negativePrompt: input.negative_prompt,
          width: input.width,
          height: input.height,
          numInferenceSteps: total,
          guidanceScale: input.guidance_scale,
          scheduler: input.scheduler,
          seed,
          numOutputs: input.num_outputs,
        },
        { signal: ctx.signal, onStep },
      );
    } catch (err) {
      if (err instanceof RequestError || err instanceof ModelError) throw new PredictionError(err.message);
      throw err;
    }
    const parameters = a1111Parameters({ ...result.parameters, model: this.label });
    return result.images.map((image, i) => ({
      name: `out-${i}.png`,
      contentType: "image/png",
      data: encodePng(image, { parameters }),
    }));
  }

  async close(): Promise<void> {
    await this.loading?.catch(() => undefined);
    await this.pipeline?.release();
    this.pipeline = undefined;
  }
}
