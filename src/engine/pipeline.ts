/**
 * loadPipeline: a Stable Diffusion model folder, loaded once, with its tokenizer, its three
 * networks ready to run, and the scheduler config the denoising loop is built from.
 */
import { randomInt } from "node:crypto";
import { ModelError, RequestError } from "./errors.js";
import { guidanceScaleEmbedding } from "./graph/unet.js";
import { decodedToImages, type GenerationParameters, type RgbImage } from "./image.js";
import { type LatentDecoder, type TensorF32, TextEncoder, TinyVaeDecoder, UNet, VaeDecoder } from "./networks.js";
import { TorchCpuGenerator } from "./random/torch-cpu.js";
import type { RuntimeOptions } from "./runtime.js";
import { createScheduler } from "./schedulers/index.js";
import { TinyAutoencoderPreview } from "./taesd-preview.js";
import { ClipTokenizer } from "./tokenizer/clip.js";
import { type ModelFolder, openComponentFolder, openModelFolder, type WeightsVariant } from "./weights/model-folder.js";

export interface LoadPipelineOptions extends RuntimeOptions {
  /** Use `*.fp16.safetensors` weights where present (computation stays float32 on CPU). */
  variant?: WeightsVariant;
  /**
   * A standalone autoencoder folder (config.json + diffusion_pytorch_model.safetensors) to decode
   * with instead of the model's VAE: diffusers' AutoencoderTiny (TAESD, e.g. madebyollin/taesd)
   * for speed, or another AutoencoderKL.
   */
  vae?: string;
  /** An AutoencoderTiny folder to draw step previews with (`Pipeline.preview`). */
  previewVae?: string;
  /** The longest side of a preview in pixels (default: the image's); see TinyAutoencoderPreview. */
  previewMaxSize?: number;
}

/** What a request leaves out, as the model's own pipeline would fill it in. */
export interface GenerateDefaults {
  numInferenceSteps: number;
  guidanceScale: number;
  scheduler: string;
}

export interface PipelineInfo {
  /** The folder the model was loaded from. */
  source: string;
  /** Latent pixels per image pixel along each side (2^(VAE up blocks − 1)); sizes must be multiples of it. */
  vaeScaleFactor: number;
  /** Latents are multiplied by this after encoding and divided by it before decoding. */
  vaeScalingFactor: number;
  latentChannels: number;
  /** The folder's scheduler/scheduler_config.json. */
  schedulerConfig: Readonly<Record<string, unknown>>;
  /** "epsilon", "v_prediction" or "sample", from the scheduler config. */
  predictionType: string;
  /** The UNet's native sample size in pixels (sample_size × vaeScaleFactor), e.g. 512 or 768. */
  defaultSize: number;
  variant: WeightsVariant;
  /** The decoder in use: "vae" (the model's) or the folder given as `vae`. */
  decoder: string;
  /** "AutoencoderKL" or "AutoencoderTiny". */
  decoderClass: string;
  defaults: GenerateDefaults;
}

export interface GenerateRequest {
  prompt: string;
  /** Empty or absent: the unconditional batch uses "" as diffusers does. */
  negativePrompt?: string;
  /** Pixels; multiples of the VAE scale factor. Default: the model's native size. */
  width?: number;
  height?: number;
  numInferenceSteps?: number;
  /** Classifier-free guidance; ≤ 1 runs the UNet on the prompt alone. */
  guidanceScale?: number;
  /** Replicate, diffusers or AUTOMATIC1111 scheduler name; default DPMSolverMultistep. */
  scheduler?: string;
  /** Karras sigmas (diffusers' use_karras_sigmas), for the DPM-Solver / Euler / Heun / LMS family. */
  useKarrasSigmas?: boolean;
  /** torch.Generator().manual_seed(seed) is reproduced; absent: a random seed, reported back. */
  seed?: number | bigint;
  /** Images per prompt, generated as one batch. */
  numOutputs?: number;
  /** Starting latents [numOutputs, C, h, w] instead of drawing them (they are still scaled by the scheduler's init sigma). */
  latents?: TensorF32;
}

export interface StepEvent {
  /** 1-based index of the step just finished. */
  step: number;
  total: number;
  timestep: number;
  /** The latents after this step [B, C, h, w]. */
  latents: TensorF32;
  /** The scheduler's clean-sample estimate at this step, where it makes one (LCM) [B, C, h, w]. */
  denoised?: TensorF32;
}

export interface GenerateOptions {
  onStep?: (event: StepEvent) => void | Promise<void>;
  /** Aborting stops between steps and rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface GenerateResult {
  images: RgbImage[];
  seed: bigint;
  /** Final latents before decoding [B, C, h, w]. */
  latents: TensorF32;
  /** The raw decoder output [B, 3, H, W] (about [-1, 1]). */
  decoded: TensorF32;
  parameters: GenerationParameters;
  timings: { encodeSeconds: number; denoiseSeconds: number; decodeSeconds: number };
}

export const DEFAULT_SCHEDULER = "DPMSolverMultistep";

export class Pipeline {
  private constructor(
    readonly info: PipelineInfo,
    readonly folder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: TextEncoder,
    readonly unet: UNet,
    readonly vae: LatentDecoder,
    /** Draws step previews when the pipeline was loaded with `previewVae`. */
    readonly previewer: TinyAutoencoderPreview | undefined,
  ) {}

  static async load(source: string, opts: LoadPipelineOptions = {}): Promise<Pipeline> {
    const folder = await openModelFolder(source, { variant: opts.variant });
    checkPipelineKind(folder);
    const tokenizer = await ClipTokenizer.fromFolder(folder.tokenizerDir);
    // Sessions are created one after another: each uses every core while optimising.
    const textEncoder = await TextEncoder.load(folder.textEncoder, opts);
    const unet = await UNet.load(folder.unet, opts);
    const vae = await loadDecoder(folder, opts);
    if (unet.config && vae.config.latentChannels !== unet.config.outChannels) {
      throw new ModelError(
        `the decoder takes ${vae.config.latentChannels} latent channels, the UNet makes ${unet.config.outChannels}`,
        { file: opts.vae ?? folder.vae.configPath, field: "latent_channels" },
      );
    }
    const previewer = opts.previewVae
      ? await TinyAutoencoderPreview.load(opts.previewVae, { ...opts, maxSize: opts.previewMaxSize })
      : undefined;
    if (textEncoder.hiddenSize && unet.config && unet.config.crossDim[0] !== textEncoder.hiddenSize) {
      throw new ModelError(
        `is ${unet.config.crossDim[0]}, but the text encoder's hidden_size is ${textEncoder.hiddenSize}`,
        { file: folder.unet.configPath, field: "cross_attention_dim" },
      );
    }
    const predictionType =
      typeof folder.schedulerConfig["prediction_type"] === "string"
        ? (folder.schedulerConfig["prediction_type"] as string)
        : "epsilon";
    const sampleSize = typeof folder.unet.config["sample_size"] === "number" ? folder.unet.config["sample_size"] : 64;
    const info: PipelineInfo = {
      source,
      vaeScaleFactor: vae.config.scaleFactor,
      vaeScalingFactor: vae.config.scalingFactor,
      latentChannels: vae.config.latentChannels,
      schedulerConfig: folder.schedulerConfig,
      predictionType,
      defaultSize: sampleSize * vae.config.scaleFactor,
      variant: folder.variant,
      decoder: opts.vae ?? "vae",
      decoderClass: vae instanceof TinyVaeDecoder ? "AutoencoderTiny" : "AutoencoderKL",
      defaults: nativeDefaults(folder, unet),
    };
    return new Pipeline(info, folder, tokenizer, textEncoder, unet, vae, previewer);
  }

  /** Prompt → text embeddings [n, 77, hidden], padded and truncated as the tokenizer says. */
  async encodePrompts(prompts: readonly string[]): Promise<TensorF32> {
    const ids = prompts.map((p) => this.tokenizer.encode(p).inputIds);
    return this.textEncoder.encode(ids);
  }

  /**
   * Text to image, as diffusers' StableDiffusionPipeline.__call__: encode [negative, prompt],
   * draw latents from the seeded generator, denoise with the scheduler (one batched UNet
   * call per step with guidance), decode latents / scaling_factor.
   */
  async generate(req: GenerateRequest, opts: GenerateOptions = {}): Promise<GenerateResult> {
    const r = this.validate(req);
    const { signal } = opts;
    signal?.throwIfAborted();
    const t0 = performance.now();
    // Guidance-distilled (LCM) UNets take the scale as an input instead of a second batch, as
    // diffusers' pipelines do for any UNet with time_cond_proj_dim: w = guidance_scale − 1.
    const condDim = this.unet.config?.timeCondProjDim ?? null;
    const guided = r.guidanceScale > 1 && condDim === null;
    const batch = r.numOutputs;
    let timestepCond: TensorF32 | undefined;
    if (condDim !== null) {
      // The embedding's angles are 1000·w in float32: a scale past that range would make NaNs.
      if (!Number.isFinite(Math.fround((r.guidanceScale - 1) * 1000))) {
        throw new RequestError(`guidance scale ${r.guidanceScale} is too large for this model`, "guidanceScale");
      }
      const w = guidanceScaleEmbedding(r.guidanceScale - 1, condDim);
      const data = new Float32Array(batch * condDim);
      for (let b = 0; b < batch; b++) data.set(w, b * condDim);
      timestepCond = { data, shape: [batch, condDim] };
    }
    const prompts = guided
      ? [...new Array<string>(batch).fill(r.negativePrompt), ...new Array<string>(batch).fill(r.prompt)]
      : new Array<string>(batch).fill(r.prompt);
    const context = await this.encodePrompts(prompts);
    const t1 = performance.now();

    const scheduler = r.scheduler;
    const generator = new TorchCpuGenerator(r.seed);
    const shape = [
      batch,
      this.info.latentChannels,
      r.height / this.info.vaeScaleFactor,
      r.width / this.info.vaeScaleFactor,
    ];
    let latents: Float32Array;
    if (req.latents) {
      if (req.latents.shape.join() !== shape.join()) {
        throw new RequestError(
          `latents must have shape [${shape.join(", ")}], got [${req.latents.shape.join(", ")}]`,
          "latents",
        );
      }
      latents = Float32Array.from(req.latents.data);
    } else {
      latents = generator.randn(shape);
    }
    const sigma0 = Math.fround(scheduler.initNoiseSigma);
    if (sigma0 !== 1)
      for (let i = 0; i < latents.length; i++) latents[i] = Math.fround((latents[i] as number) * sigma0);

    const ctx = { randn: (s: readonly number[]) => generator.randn(s) };
    const n = latents.length;
    const total = scheduler.timesteps.length;
    for (let i = 0; i < total; i++) {
      signal?.throwIfAborted();
      const t = scheduler.timesteps[i] as number;
      const scaled = scheduler.scaleModelInput(latents, i);
      let input = scaled;
      if (guided) {
        input = new Float32Array(n * 2);
        input.set(scaled, 0);
        input.set(scaled, n);
      }
      const out = await this.unet.run(
        { data: input, shape: [guided ? batch * 2 : batch, ...shape.slice(1)] },
        t,
        context,
        timestepCond,
      );
      let noisePred = out.data;
      if (guided) {
        // uncond + scale · (cond − uncond), elementwise in float32
        noisePred = new Float32Array(n);
        const g = Math.fround(r.guidanceScale);
        for (let j = 0; j < n; j++) {
          const u = out.data[j] as number;
          const c = out.data[n + j] as number;
          noisePred[j] = Math.fround(u + Math.fround(g * Math.fround(c - u)));
        }
      }
      latents = scheduler.step(noisePred, i, latents, ctx, shape);
      const denoised = scheduler.lastDenoised;
      await opts.onStep?.({
        step: i + 1,
        total,
        timestep: t,
        latents: { data: latents, shape },
        denoised: denoised && { data: denoised, shape },
      });
    }
    signal?.throwIfAborted();
    const t2 = performance.now();

    const scaledLatents = new Float32Array(n);
    // diffusers divides by the scaling factor; x / s in float32.
    const s = Math.fround(this.info.vaeScalingFactor);
    for (let j = 0; j < n; j++) scaledLatents[j] = Math.fround((latents[j] as number) / s);
    const decoded = await this.vae.decode({ data: scaledLatents, shape });
    const t3 = performance.now();
    return {
      images: decodedToImages(decoded),
      seed: generator.seed,
      latents: { data: latents, shape },
      decoded,
      parameters: {
        prompt: r.prompt,
        negativePrompt: r.negativePrompt || undefined,
        steps: r.numInferenceSteps,
        sampler: req.useKarrasSigmas ? `${r.schedulerName} Karras` : r.schedulerName,
        guidanceScale: r.guidanceScale,
        seed: generator.seed,
        width: r.width,
        height: r.height,
        model: this.info.source,
      },
      timings: { encodeSeconds: (t1 - t0) / 1000, denoiseSeconds: (t2 - t1) / 1000, decodeSeconds: (t3 - t2) / 1000 },
    };
  }

  /** Fills defaults and checks every field before any work starts. */
  private validate(req: GenerateRequest) {
    const size = this.info.defaultSize;
    const r = {
      prompt: req.prompt,
      negativePrompt: req.negativePrompt ?? "",
      width: req.width ?? size,
      height: req.height ?? size,
      numInferenceSteps: req.numInferenceSteps ?? this.info.defaults.numInferenceSteps,
      guidanceScale: req.guidanceScale ?? this.info.defaults.guidanceScale,
      schedulerName: req.scheduler ?? this.info.defaults.scheduler,
      seed: req.seed ?? BigInt(randomInt(0, 2 ** 32 - 1)),
      numOutputs: req.numOutputs ?? 1,
    };
    if (typeof r.prompt !== "string") throw new RequestError("prompt must be a string", "prompt");
    if (typeof r.negativePrompt !== "string")
      throw new RequestError("negative prompt must be a string", "negativePrompt");
    const f = this.info.vaeScaleFactor;
    for (const key of ["width", "height"] as const) {
      const v = r[key];
      if (!Number.isInteger(v) || v < f || v % f !== 0) {
        throw new RequestError(
          `${key} must be a positive multiple of ${f} (the model's VAE scale factor), got ${v}`,
          key,
        );
      }
    }
    if (!Number.isInteger(r.numInferenceSteps) || r.numInferenceSteps < 1 || r.numInferenceSteps > 1000) {
      throw new RequestError(
        `number of inference steps must be an integer from 1 to 1000, got ${r.numInferenceSteps}`,
        "numInferenceSteps",
      );
    }
    if (!Number.isFinite(r.guidanceScale) || r.guidanceScale < 0) {
      throw new RequestError(`guidance scale must be a number ≥ 0, got ${r.guidanceScale}`, "guidanceScale");
    }
    if (!Number.isInteger(r.numOutputs) || r.numOutputs < 1 || r.numOutputs > 64) {
      throw new RequestError(`number of outputs must be an integer from 1 to 64, got ${r.numOutputs}`, "numOutputs");
    }
    if (typeof r.seed === "number" && !Number.isSafeInteger(r.seed)) {
      throw new RequestError(`seed must be an integer, got ${r.seed}`, "seed");
    }
    // The scheduler throws RequestError for what the request asks, ModelError for its config file.
    const scheduler = createScheduler(r.schedulerName, this.info.schedulerConfig, r.numInferenceSteps, {
      karras: req.useKarrasSigmas,
    });
    return { ...r, scheduler };
  }

  /**
   * Step previews with the tiny autoencoder (when loaded with `previewVae`): one picture per
   * image of the batch, at full size, from the step's denoised estimate where the scheduler makes
   * one, else from its latents. Undefined without a preview decoder.
   */
  async preview(event: Pick<StepEvent, "latents" | "denoised">): Promise<RgbImage[] | undefined> {
    return this.previewer?.images(event.denoised ?? event.latents);
  }

  async release(): Promise<void> {
    await Promise.all([
      this.textEncoder.session.release(),
      this.unet.session.release(),
      this.vae.session.release(),
      this.previewer?.release(),
    ]);
  }
}

/** Only the SD 1.x / 2.x text-to-image family is built here; say so for anything else. */
function checkPipelineKind(folder: ModelFolder): void {
  const file = `${folder.dir}/model_index.json`;
  const cls = folder.modelIndex["_class_name"];
  if (
    cls !== undefined &&
    (typeof cls !== "string" ||
      !/^((Onnx)?StableDiffusion(Img2Img)?Pipeline|LatentConsistencyModel(Img2Img)?Pipeline)$/.test(cls))
  ) {
    throw new ModelError(
      `${JSON.stringify(cls)} is not supported: sdserve runs Stable Diffusion 1.x / 2.x pipelines (StableDiffusionPipeline)`,
      { file, field: "_class_name" },
    );
  }
  if (folder.modelIndex["text_encoder_2"] !== undefined) {
    throw new ModelError("a second text encoder (SDXL) is not supported", { file, field: "text_encoder_2" });
  }
}

/** The model's VAE decoder, or the standalone autoencoder named by `opts.vae`. */
async function loadDecoder(folder: ModelFolder, opts: LoadPipelineOptions): Promise<LatentDecoder> {
  if (!opts.vae) return VaeDecoder.load(folder.vae, opts);
  const files = await openComponentFolder(opts.vae, "vae", opts.variant);
  return files.config["_class_name"] === "AutoencoderTiny"
    ? TinyVaeDecoder.load(files, opts)
    : VaeDecoder.load(files, opts);
}

/**
 * A UNet distilled with the guidance embedding (SimianLuo/LCM_Dreamshaper_v7) defaults as
 * diffusers' LatentConsistencyModelPipeline: 4 steps of LCM at guidance 8.5, which costs nothing
 * extra (no second batch). A plain UNet with an LCMScheduler config (an LCM-LoRA fused in) takes
 * 4 LCM steps without classifier-free guidance, as LCM-LoRA's model card runs it (guidance 1).
 * Everything else as StableDiffusionPipeline (50 steps, 7.5) with Replicate's default scheduler.
 */
function nativeDefaults(folder: ModelFolder, unet: UNet): GenerateDefaults {
  if ((unet.config?.timeCondProjDim ?? null) !== null) {
    return { numInferenceSteps: 4, guidanceScale: 8.5, scheduler: "LCMScheduler" };
  }
  if (folder.schedulerConfig["_class_name"] === "LCMScheduler") {
    return { numInferenceSteps: 4, guidanceScale: 1, scheduler: "LCMScheduler" };
  }
  return { numInferenceSteps: 50, guidanceScale: 7.5, scheduler: DEFAULT_SCHEDULER };
}

/** Loads a diffusers-format Stable Diffusion folder (or a folder of ONNX exports). */
export function loadPipeline(source: string, opts: LoadPipelineOptions = {}): Promise<Pipeline> {
  return Pipeline.load(source, opts);
}
