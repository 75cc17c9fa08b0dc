/**
 * loadPipeline: a Stable Diffusion model folder, loaded once, with its tokenizer, its three
 * networks ready to run (the VAE encoder too, on the first image input), and the scheduler
 * config the denoising loop is built from.
 *
 * One `generate` serves diffusers' three SD pipelines: text-to-image (StableDiffusionPipeline),
 * img2img (StableDiffusionImg2ImgPipeline: `image`) and inpainting
 * (StableDiffusionInpaintPipeline: `image` + `mask`, with a 9-channel inpainting UNet or an
 * ordinary 4-channel one). They differ only in where the denoising starts and in what the UNet
 * sees; see `prepareStart`.
 *
 * SDXL folders (StableDiffusionXLPipeline and its Img2Img / Inpaint forms, the refiner) run the
 * same loop; what differs is the conditioning (sdxl.ts: two text encoders, pooled text_embeds and
 * time_ids for the UNet), the defaults, and the expert ensemble's denoisingEnd / denoisingStart.
 */
import { randomInt } from "node:crypto";
import { stat } from "node:fs/promises";
import { EmbeddingPlacer, loadEmbeddings } from "./embeddings.js";
import { ModelError, RequestError } from "./errors.js";
import { MAX_CLIP_SKIP } from "./graph/clip.js";
import { ConfigReader } from "./graph/config.js";
import { guidanceScaleEmbedding, readUNetConfig } from "./graph/unet.js";
import { decodedToImages, type GenerationParameters, type RgbImage } from "./image.js";
import {
  binariseMask,
  type GrayImage,
  pixelsToTensor,
  resizeNearest,
  resizePixels,
  targetSize,
  toGray,
} from "./image-input.js";
import { interpolate } from "./latent-resize.js";
import {
  fileIdentity,
  folderTouchesConvolutions,
  isLoraTarget,
  type LoadedLora,
  type LoraModel,
  type LoraNames,
  type LoraSpec,
  ldmUNetNames,
  loadLora,
  loraFeeds,
  moduleShapes,
  touchesConvolutions,
} from "./lora.js";
import { findLora } from "./lora-dir.js";
import {
  type AddedConditions,
  type LatentDecoder,
  type TensorF32,
  TextEncoder,
  TinyVaeDecoder,
  UNet,
  VaeDecoder,
  VaeEncoder,
} from "./networks.js";
import { a1111Chunks, applyEmphasis, type PromptChunk, parseA1111Prompt } from "./prompt-a1111.js";
import { TorchCpuGenerator } from "./random/torch-cpu.js";
import type { Feeds, RuntimeOptions } from "./runtime.js";
import { createScheduler, resolveSchedulerName, type Scheduler } from "./schedulers/index.js";
import {
  denoisingEndIndex,
  denoisingStartIndex,
  isSdxlFolder,
  type MicroConditioning,
  SdxlConditioner,
} from "./sdxl.js";
import { TinyAutoencoderPreview } from "./taesd-preview.js";
import { ClipTokenizer } from "./tokenizer/clip.js";
import { type ModelFolder, openComponentFolder, openModelFolder, type WeightsVariant } from "./weights/model-folder.js";
import {
  isCheckpointFile,
  ldmUNetModules,
  openSingleFile,
  openVae,
  type PredictionType,
  UNET_RESNET,
} from "./weights/single-file.js";

export interface LoadPipelineOptions extends RuntimeOptions {
  /** Use `*.fp16.safetensors` weights where present (computation stays float32 on CPU). */
  variant?: WeightsVariant;
  /**
   * For a single-file checkpoint: a diffusers folder whose configs, scheduler and tokenizer
   * describe it (needed when its sizes are not those of a published model).
   */
  config?: string;
  /** Overrides the scheduler config's prediction type (e.g. an SD 2.x checkpoint the file cannot tell). */
  predictionType?: PredictionType;
  /**
   * A standalone autoencoder folder (config.json + diffusion_pytorch_model.safetensors) to decode
   * with instead of the model's VAE: diffusers' AutoencoderTiny (TAESD, e.g. madebyollin/taesd)
   * for speed, or another AutoencoderKL (e.g. sd-vae-ft-mse for SD 1.5); or one `.safetensors`
   * AutoencoderKL file in original or diffusers names, on the model's VAE config.
   */
  vae?: string;
  /** An AutoencoderTiny folder to draw step previews with (`Pipeline.preview`). */
  previewVae?: string;
  /** The longest side of a preview in pixels (default: the image's); see TinyAutoencoderPreview. */
  previewMaxSize?: number;
  /**
   * Textual-inversion embeddings (`.safetensors` files, or folders of them) that prompts call by
   * name (embeddings.ts).
   */
  embeddings?: readonly string[];
  /**
   * Build the text encoders so that requests can bring their own token vectors
   * (GenerateRequest.trainedTokens); implied by `embeddings`.
   */
  requestEmbeddings?: boolean;
  /** LoRAs applied to every request (part of the model, like a models-file entry's); implies loraSupport. */
  loras?: readonly LoraSpec[];
  /**
   * Build the text encoder and UNet so requests can bring their own LoRAs (lora.ts): switching
   * is then cheap, at the cost of a little work per step even without LoRAs. "all" also takes
   * LoRAs on the UNet's convolutions (LoCon, LCM-LoRA), at a higher cost per step; it is implied
   * when a LoRA in `loras` needs it.
   */
  loraSupport?: boolean | "all";
  /** How prompts are read unless a request says otherwise (default "diffusers"); see prompt-a1111.ts. */
  promptSyntax?: PromptSyntax;
  /** AUTOMATIC1111's clip skip unless a request says otherwise: 1 (default, the last layer) to 12. */
  clipSkip?: number;
  /**
   * Where `<lora:NAME:SCALE>` tags of AUTOMATIC1111 prompts find their files (NAME.safetensors,
   * subfolders included); implies loraSupport.
   */
  loraDir?: string;
}

/**
 * "diffusers": the prompt as it is, cut at 77 tokens (diffusers' pipelines). "a1111":
 * AUTOMATIC1111's emphasis, BREAK, 75-token chunks and `<lora:…>` tags (prompt-a1111.ts).
 */
export type PromptSyntax = "diffusers" | "a1111";
export const PROMPT_SYNTAXES: readonly PromptSyntax[] = ["diffusers", "a1111"];

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
  /**
   * An inpainting checkpoint (UNet in_channels = latents + 1 mask + latents, e.g. 9): it needs
   * `image` and `mask` on every request. Other models inpaint by blending (4-channel mode).
   */
  inpaintingUNet: boolean;
  variant: WeightsVariant;
  /** The decoder in use: "vae" (the model's) or the folder given as `vae`. */
  decoder: string;
  /** "AutoencoderKL" or "AutoencoderTiny". */
  decoderClass: string;
  defaults: GenerateDefaults;
  /** "sd" (one text encoder) or "sdxl" (SDXL's conditioning; see sdxl.ts). */
  family: "sd" | "sdxl";
}

export interface GenerateRequest extends MicroConditioning {
  prompt: string;
  /**
   * Empty or absent: the unconditional batch uses "" as diffusers does. SDXL: absent is all
   * zeros where the model says force_zeros_for_empty_prompt; "" is encoded as text.
   */
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
  /**
   * Starting latents [numOutputs, C, h, w] instead of drawing them (they are still scaled by the
   * scheduler's init sigma, except with denoisingStart: a hand-over's latents are used as they
   * are). Text-to-image only.
   */
  latents?: TensorF32;
  /**
   * Clean latents to denoise from at `strength`, as img2img starts from its picture's (already
   * × scaling factor; [numOutputs or 1, C, h, w]): the first draw of the seed's generator is the
   * noise, latents = add_noise(initLatents, noise, first timestep). AUTOMATIC1111's hires fix
   * starts its second pass so (hires.ts). Not with `image` or `latents`.
   */
  initLatents?: TensorF32;
  /** LoRAs for this request, on top of the pipeline's own; needs a pipeline loaded with loraSupport. */
  loras?: readonly LoraSpec[];
  /**
   * SDXL: a cog-sdxl `embeddings.pti` (Replicate's trained LoRAs): its vectors become the tokens
   * `<s0>`, `<s1>`… of both tokenizers for this request (text_encoders_0 for CLIP ViT-L,
   * text_encoders_1 for OpenCLIP), wherever either prompt writes them. Needs a pipeline loaded
   * with requestEmbeddings (or embeddings).
   */
  trainedTokens?: string;
  /** Default: the pipeline's. With "a1111", `<lora:…>` tags in either prompt are found in the pipeline's loraDir. */
  promptSyntax?: PromptSyntax;
  /** AUTOMATIC1111's CLIP_stop_at_last_layers: 1 (the last layer) to 12; default the pipeline's. */
  clipSkip?: number;
  /**
   * img2img / inpainting: the starting picture, 8-bit RGB. Resized (Lanczos) to width × height
   * when they are given; otherwise its own size rounded down to the VAE scale factor is used.
   */
  image?: RgbImage;
  /**
   * Inpainting: white (≥ 128) is repainted, black kept; binarised at full resolution. RGB is
   * made grey as PIL's convert("L"); a mask of another size is resized to the picture's.
   */
  mask?: GrayImage | RgbImage;
  /**
   * Inpainting: what the area to repaint starts from before the noise is added (AUTOMATIC1111's
   * inpainting_fill 2 and 3): "noise" replaces its latents with a fresh draw of the seed's
   * generator, "zeros" with zeros. Absent: the picture's latents (diffusers; A1111's "original").
   * Only matters with strength < 1.
   */
  maskedContent?: "noise" | "zeros";
  /**
   * img2img (no mask): encode the picture at its own size (rounded down to the VAE factor) and
   * resize its latents to width × height as F.interpolate(mode="bilinear") does, instead of
   * resizing the picture (AUTOMATIC1111's resize_mode 3, "Just resize (latent upscale)").
   */
  latentResize?: boolean;
  /**
   * How much of the schedule runs, in (0, 1]: the run starts at step
   * numInferenceSteps − floor(numInferenceSteps × strength). Default 0.8 for img2img, 1 for
   * inpainting (diffusers' defaults; SDXL's pipelines: 0.3 and 0.9999).
   */
  strength?: number;
  /**
   * The expert ensemble's first half (diffusers' denoising_end, in (0, 1)): stop before the
   * timesteps below round(T·(1 − denoisingEnd)); hand the latents (`denoise`) to a pipeline
   * with denoisingStart. When that leaves no step (the cutoff is above the first timestep run,
   * as a picture at a low strength makes it), none runs and the starting latents are handed on,
   * as diffusers does.
   */
  denoisingEnd?: number;
  /**
   * The second half (diffusers' denoising_start): `latents` (required) are taken as they are,
   * already noised, and only the timesteps below round(T·(1 − denoisingStart)) run.
   */
  denoisingStart?: number;
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
  /**
   * Draw from this generator, continuing where it is, instead of a new one seeded with the
   * request's seed: one torch generator handed from pipeline to pipeline, as cog-sdxl hands its
   * generator from the SDXL base to the refiner. The seed reported is the generator's.
   */
  generator?: TorchCpuGenerator;
}

export interface GenerateResult {
  images: RgbImage[];
  seed: bigint;
  /** Final latents before decoding [B, C, h, w]. */
  latents: TensorF32;
  /** The raw decoder output [B, 3, H, W] (about [-1, 1]). */
  decoded: TensorF32;
  parameters: GenerationParameters;
  /** encodeSeconds: the prompt and, with image inputs, the VAE encoding of the picture(s). */
  timings: { encodeSeconds: number; denoiseSeconds: number; decodeSeconds: number };
}

/** `denoise`'s result: the latents, not yet decoded. */
export interface DenoiseResult {
  seed: bigint;
  /** [B, C, h, w] */
  latents: TensorF32;
  parameters: GenerationParameters;
  /** encodeSeconds: the prompt and, with image inputs, the VAE encoding of the picture(s). */
  timings: { encodeSeconds: number; denoiseSeconds: number };
}

/** What the denoising loop starts from, as each of diffusers' three pipelines prepares it. */
interface Start {
  latents: Float32Array;
  /** Index into scheduler.timesteps of the first step (get_timesteps' t_start × order). */
  begin: number;
  /** Inpainting UNet: what is appended to the scaled latents, [B·(2 if guided), channels, h, w]. */
  extra?: { data: Float32Array; channels: number };
  /** 4-channel inpainting: after every step but the last, the known region is put back. */
  blend?: { mask: Float32Array; imageLatents: Float32Array; noise: Float32Array };
}

export const DEFAULT_SCHEDULER = "DPMSolverMultistep";

/** A request's LoRA factor feeds per network: the text encoder, SDXL's second one, the UNet. */
export interface AdapterFeeds {
  text: Feeds;
  text2: Feeds;
  unet: Feeds;
}

interface LoraState {
  model: LoraModel;
  /** Loaded LoRA files by identity (path, size, mtime), most recently used last. */
  cache: Map<string, { pending: Promise<LoadedLora>; bytes: number }>;
  fixed: { lora: LoadedLora; scale: number }[];
  /** The feeds of the last set of LoRAs asked for: a request repeating it reuses them. */
  last?: { active: { lora: LoadedLora; scale: number }[]; feeds: AdapterFeeds };
}

/**
 * LoRA factors kept loaded for later requests, beyond the ones in use (an SD 1.5 rank-128 LoRA
 * is about 150 MB as float32).
 */
const LORA_CACHE_BYTES = 1024 * 2 ** 20;

export class Pipeline {
  private lora?: LoraState;
  /** Set when loaded with embeddings: prompts are tokenized through it. */
  private embeddingPlacer?: EmbeddingPlacer;

  private constructor(
    readonly info: PipelineInfo,
    readonly folder: ModelFolder,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: TextEncoder,
    readonly unet: UNet,
    readonly vae: LatentDecoder,
    /** Draws step previews when the pipeline was loaded with `previewVae`. */
    readonly previewer: TinyAutoencoderPreview | undefined,
    /** SDXL's text side (both encoders, time ids); undefined for SD 1.x / 2.x. */
    readonly sdxl: SdxlConditioner | undefined,
    private readonly runtimeOptions: RuntimeOptions,
  ) {}

  private encoder?: Promise<VaeEncoder>;

  /** The VAE encoder, loaded on first use: text-to-image never pays for it. */
  vaeEncoder(): Promise<VaeEncoder> {
    if (!this.encoder) {
      const loading = VaeEncoder.load(this.folder.vae, this.runtimeOptions);
      // A failed load is not kept: the next request tries again.
      loading.catch(() => {
        if (this.encoder === loading) this.encoder = undefined;
      });
      this.encoder = loading;
    }
    return this.encoder;
  }

  static async load(source: string, opts: LoadPipelineOptions = {}): Promise<Pipeline> {
    const folder = isCheckpointFile(source)
      ? await openSingleFile(source, { config: opts.config, predictionType: opts.predictionType })
      : await openModelFolder(source, { variant: opts.variant });
    if (opts.predictionType)
      folder.schedulerConfig = { ...folder.schedulerConfig, prediction_type: opts.predictionType };
    checkPipelineKind(folder);
    const tokenizer = await ClipTokenizer.fromFolder(folder.tokenizerDir, folder.tokenizerVocabDir);
    // Sessions are created one after another: each uses every core while optimising.
    const lowRank =
      opts.loraSupport === true ||
      opts.loraSupport === "all" ||
      (opts.loras?.length ?? 0) > 0 ||
      opts.loraDir !== undefined;
    if (lowRank && isSdxlFolder(folder) && !folder.textEncoder2) {
      // The refiner's one encoder is SDXL's second: LoRAs trained on the base do not fit it.
      throw new ModelError("LoRAs apply to SDXL base models, not to the refiner (one text encoder, text_encoder_2)", {
        file: `${folder.dir}/model_index.json`,
      });
    }
    const loraNames = lowRank ? loraModelNames(folder) : undefined;
    const convs =
      opts.loraSupport === "all" ||
      (loraNames !== undefined &&
        ((await touchesConvolutions(
          (opts.loras ?? []).map((l) => l.path),
          loraNames,
        )) ||
          (opts.loraDir !== undefined && (await folderTouchesConvolutions(opts.loraDir, loraNames)))));
    const textEncoder = await TextEncoder.load(folder.textEncoder, opts, {
      lowRank: lowRank ? (p) => isLoraTarget("text_encoder", p) : undefined,
      embeddings: (opts.embeddings?.length ?? 0) > 0 || opts.requestEmbeddings === true,
    });
    const unet = await UNet.load(folder.unet, opts, lowRank ? (p) => isLoraTarget("unet", p, convs) : undefined);
    const sdxl = isSdxlFolder(folder)
      ? await SdxlConditioner.load(folder, { tokenizer, encoder: textEncoder }, opts, {
          lowRank: lowRank ? (p) => isLoraTarget("text_encoder_2", p) : undefined,
          embeddings: (opts.embeddings?.length ?? 0) > 0 || opts.requestEmbeddings === true,
        })
      : undefined;
    if (sdxl && (opts.promptSyntax ?? "diffusers") === "diffusers" && (opts.clipSkip ?? 1) !== 1) {
      // As promptOptions refuses per request: diffusers' SDXL clip skip is not built here.
      await Promise.all([textEncoder.session.release(), sdxl.release()]);
      throw new ModelError(
        'clip skip is not supported on SDXL with the diffusers prompt syntax (with "a1111" it is ignored, as AUTOMATIC1111 ignores it for SDXL)',
        { file: `${folder.dir}/model_index.json` },
      );
    }
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
    const contextDim = sdxl ? sdxl.contextDim : textEncoder.hiddenSize;
    if (contextDim && unet.config && unet.config.crossDim[0] !== contextDim) {
      throw new ModelError(
        sdxl
          ? `is ${unet.config.crossDim[0]}, but the text encoders' hidden sizes add up to ${contextDim}`
          : `is ${unet.config.crossDim[0]}, but the text encoder's hidden_size is ${textEncoder.hiddenSize}`,
        { file: folder.unet.configPath, field: "cross_attention_dim" },
      );
    }
    checkAddedConditions(folder, unet, sdxl);
    const predictionType =
      typeof folder.schedulerConfig["prediction_type"] === "string"
        ? (folder.schedulerConfig["prediction_type"] as string)
        : "epsilon";
    const sampleSize = typeof folder.unet.config["sample_size"] === "number" ? folder.unet.config["sample_size"] : 64;
    const latentChannels = vae.config.latentChannels;
    const unetIn = unet.config?.inChannels ?? latentChannels;
    if (unetIn !== latentChannels && unetIn !== 2 * latentChannels + 1) {
      throw new ModelError(
        `is ${unetIn}: expected ${latentChannels} (the VAE's latent channels) or ${2 * latentChannels + 1} (an inpainting UNet)`,
        { file: folder.unet.configPath, field: "in_channels" },
      );
    }
    const info: PipelineInfo = {
      source,
      vaeScaleFactor: vae.config.scaleFactor,
      vaeScalingFactor: vae.config.scalingFactor,
      latentChannels: vae.config.latentChannels,
      schedulerConfig: folder.schedulerConfig,
      predictionType,
      defaultSize: sampleSize * vae.config.scaleFactor,
      inpaintingUNet: unetIn !== latentChannels,
      variant: folder.variant,
      decoder: opts.vae ?? "vae",
      decoderClass: vae instanceof TinyVaeDecoder ? "AutoencoderTiny" : "AutoencoderKL",
      defaults: nativeDefaults(folder, unet, sdxl !== undefined),
      family: sdxl ? "sdxl" : "sd",
    };
    const pipeline = new Pipeline(info, folder, tokenizer, textEncoder, unet, vae, previewer, sdxl, opts);
    // requestEmbeddings alone: placers without embeddings of their own, for the rows requests bring.
    if ((opts.embeddings && opts.embeddings.length > 0) || opts.requestEmbeddings === true) {
      const sources = opts.embeddings ?? [];
      try {
        if (sdxl) {
          // SDXL's two-encoder form: CLIP ViT-L takes each file's clip_l vectors, OpenCLIP its
          // clip_g (the refiner has only the latter).
          const placers: EmbeddingPlacer[] = [];
          for (const { tokenizer: tok, encoder } of sdxl.encoders) {
            const part = encoder.projectionDim === null ? "clip_l" : "clip_g";
            const embeddings = await loadEmbeddings(sources, encoder.hiddenSize, part);
            placers.push(new EmbeddingPlacer(tok, embeddings, encoder.vocabSize, encoder.hiddenSize));
          }
          sdxl.placers = placers;
        } else {
          const embeddings = await loadEmbeddings(sources, textEncoder.hiddenSize);
          pipeline.embeddingPlacer = new EmbeddingPlacer(
            tokenizer,
            embeddings,
            textEncoder.vocabSize,
            textEncoder.hiddenSize,
          );
        }
      } catch (err) {
        await pipeline.release();
        throw err;
      }
    }
    if (loraNames) {
      const encoder2 = sdxl?.encoders[1]?.encoder;
      pipeline.lora = {
        model: {
          ...loraNames,
          targets: {
            unet: unet.lowRankTargets,
            text_encoder: textEncoder.lowRankTargets,
            ...(encoder2 ? { text_encoder_2: encoder2.lowRankTargets } : {}),
          },
        },
        cache: new Map(),
        fixed: [],
      };
      try {
        pipeline.lora.fixed = await pipeline.loadLoras(opts.loras ?? []);
      } catch (err) {
        await pipeline.release();
        throw err;
      }
    }
    return pipeline;
  }

  /** Reads (or finds in the cache) each LoRA file, checked against this model. */
  private async loadLoras(specs: readonly LoraSpec[]): Promise<{ lora: LoadedLora; scale: number }[]> {
    const state = this.lora as LoraState;
    const out: { lora: LoadedLora; scale: number }[] = [];
    for (const spec of specs) {
      const scale = spec.scale ?? 1;
      if (typeof spec.path !== "string" || spec.path === "") throw new RequestError("a LoRA needs a path", "loras");
      if (!Number.isFinite(scale)) throw new RequestError(`LoRA scale must be a number, got ${scale}`, "loras");
      const id = await fileIdentity(spec.path);
      let entry = state.cache.get(id);
      state.cache.delete(id);
      if (!entry) {
        entry = { pending: loadLora(spec.path, state.model), bytes: 0 };
        entry.pending.catch(() => state.cache.delete(id));
      }
      state.cache.set(id, entry);
      const lora = await entry.pending;
      entry.bytes = lora.layers.reduce((a, l) => a + 4 * (l.down.length + l.up.length), 0);
      // Least recently used first; the one just asked for stays.
      let total = [...state.cache.values()].reduce((a, e) => a + e.bytes, 0);
      for (const [key, e] of state.cache) {
        if (total <= LORA_CACHE_BYTES) break;
        if (key === id) continue;
        state.cache.delete(key);
        total -= e.bytes;
      }
      out.push({ lora, scale });
    }
    return out;
  }

  /** The LoRA factor feeds of the text encoder and UNet for a request's LoRAs on top of the pipeline's (empty without LoRA support). */
  async adapterFeeds(requested: readonly LoraSpec[] | undefined): Promise<AdapterFeeds> {
    const state = this.lora;
    if (!state) {
      if (requested && requested.length > 0) {
        throw new RequestError("this model was loaded without LoRA support (loadPipeline option loraSupport)", "loras");
      }
      return { text: {}, text2: {}, unet: {} };
    }
    const active = [...state.fixed, ...(await this.loadLoras(requested ?? []))];
    const same =
      state.last !== undefined &&
      state.last.active.length === active.length &&
      state.last.active.every((a, i) => a.lora === active[i]?.lora && a.scale === active[i]?.scale);
    if (!same) {
      state.last = {
        active,
        feeds: {
          text: loraFeeds(state.model.targets.text_encoder, "text_encoder", active),
          text2: loraFeeds(state.model.targets.text_encoder_2 ?? new Map(), "text_encoder_2", active),
          unet: loraFeeds(state.model.targets.unet, "unet", active),
        },
      };
    }
    return (state.last as NonNullable<LoraState["last"]>).feeds;
  }

  /**
   * Prompt → text embeddings: [n, 77, hidden], padded and truncated as the tokenizer says; with
   * the "a1111" syntax [n, 77 × chunks, hidden]. LoRA tags are not looked at here. SDXL: both
   * encoders' penultimate states concatenated (the pooled embedding: `sdxl.encode`).
   */
  async encodePrompts(
    prompts: readonly string[],
    loras?: readonly LoraSpec[],
    opts: { promptSyntax?: PromptSyntax; clipSkip?: number } = {},
  ): Promise<TensorF32> {
    const { syntax, clipSkip } = this.promptOptions(opts);
    const adapters = await this.adapterFeeds(loras);
    if (this.sdxl) return (await this.sdxl.encode(prompts, [adapters.text, adapters.text2], syntax)).promptEmbeds;
    return this.encodeText(prompts, syntax, clipSkip, adapters.text);
  }

  private promptOptions(req: { promptSyntax?: PromptSyntax; clipSkip?: number }): {
    syntax: PromptSyntax;
    clipSkip: number;
  } {
    const opts = this.runtimeOptions as LoadPipelineOptions;
    const syntax = req.promptSyntax ?? opts.promptSyntax ?? "diffusers";
    const clipSkip = req.clipSkip ?? opts.clipSkip ?? 1;
    if (!PROMPT_SYNTAXES.includes(syntax)) {
      throw new RequestError(
        `prompt syntax must be one of ${PROMPT_SYNTAXES.join(", ")}, got ${String(syntax)}`,
        "promptSyntax",
      );
    }
    if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > MAX_CLIP_SKIP) {
      throw new RequestError(`clip skip must be an integer from 1 to ${MAX_CLIP_SKIP}, got ${clipSkip}`, "clipSkip");
    }
    if (this.sdxl && clipSkip !== 1) {
      // A1111 reads SDXL's encoders at the penultimate layer whatever its clip skip says (unless
      // its "Clip skip for SDXL" option, off by default, is set): ignored with its syntax.
      // diffusers' SDXL clip_skip (deeper layers of both encoders) is not built.
      if (syntax === "a1111") return { syntax, clipSkip: 1 };
      throw new RequestError(
        `clip skip is not supported on SDXL with the diffusers prompt syntax (it conditions on the penultimate layer already), got ${clipSkip}`,
        "clipSkip",
      );
    }
    return { syntax, clipSkip };
  }

  private async encodeText(
    prompts: readonly string[],
    syntax: PromptSyntax,
    clipSkip: number,
    loraFeeds: Feeds,
  ): Promise<TensorF32> {
    if (syntax === "a1111") return this.encodeA1111(prompts, clipSkip, loraFeeds);
    const { ids, feeds } = this.tokenizePrompts(prompts);
    return this.textEncoder.encode(ids, { ...feeds, ...loraFeeds }, clipSkip);
  }

  /**
   * AUTOMATIC1111's encoding: each distinct prompt parsed and cut into 77-token chunks, every
   * prompt padded with empty chunks to the longest's count (the negative prompt too), each chunk
   * encoded and its emphasis applied, the chunks joined along the sequence.
   */
  private async encodeA1111(prompts: readonly string[], clipSkip: number, loraFeeds: Feeds): Promise<TensorF32> {
    const { chunks, feeds } = a1111Chunks(prompts, this.tokenizer, this.embeddingPlacer, this.textEncoder);
    const width = this.textEncoder.hiddenSize;
    const batch = prompts.length;
    const len = ((chunks[0] as PromptChunk[])[0] as PromptChunk).ids.length;
    const out = new Float32Array(batch * chunks.length * len * width);
    for (const [c, chunk] of chunks.entries()) {
      const z = await this.textEncoder.encode(
        chunk.map((k) => k.ids),
        { ...feeds, ...loraFeeds },
        clipSkip,
      );
      const item = len * width;
      for (let b = 0; b < batch; b++) {
        const zb = z.data.subarray(b * item, (b + 1) * item);
        applyEmphasis(zb, (chunk[b] as PromptChunk).weights, width);
        out.set(zb, (b * chunks.length + c) * item);
      }
    }
    return { data: out, shape: [batch, chunks.length * len, width] };
  }

  /** The LoRAs that `<lora:NAME:SCALE>` tags in AUTOMATIC1111 prompts ask for, found in loraDir. */
  private async taggedLoras(prompts: readonly string[]): Promise<LoraSpec[]> {
    const tags = prompts.flatMap((p) => parseA1111Prompt(p).loras);
    if (tags.length === 0) return [];
    const dir = (this.runtimeOptions as LoadPipelineOptions).loraDir;
    if (dir === undefined) {
      throw new RequestError(
        `the prompt asks for LoRA "${tags[0]?.name}", but this model has no LoRA folder (--lora-dir)`,
        "prompt",
      );
    }
    const out: LoraSpec[] = [];
    for (const tag of tags) out.push({ path: await findLora(dir, tag.name), scale: tag.scale });
    return out;
  }

  /** Token ids of each prompt, with the text encoder's embedding feeds when the pipeline has embeddings. */
  private tokenizePrompts(prompts: readonly string[]): { ids: number[][]; feeds: Feeds } {
    if (this.embeddingPlacer) return this.embeddingPlacer.encode(prompts);
    return { ids: prompts.map((p) => this.tokenizer.encode(p).inputIds), feeds: {} };
  }

  /**
   * The denoising of text to image, img2img or inpainting, as diffusers' pipelines do it: encode
   * [negative, prompt], prepare the starting latents (`prepareStart`), denoise with the scheduler
   * (one batched UNet call per step with guidance). The latents are not decoded: `generate` does
   * that; alone, this is the base's half of SDXL's expert ensemble (output_type="latent").
   */
  async denoise(req: GenerateRequest, opts: GenerateOptions = {}): Promise<DenoiseResult> {
    const r = await this.validate(req);
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
    const tagged = r.syntax === "a1111" ? await this.taggedLoras([r.prompt, r.negativePrompt]) : [];
    const adapters = await this.adapterFeeds([...(req.loras ?? []), ...tagged]);
    const { context, added } = await this.conditioning(req, r, guided, adapters);

    const scheduler = r.scheduler;
    const generator = opts.generator ?? new TorchCpuGenerator(r.seed);
    const shape = [
      batch,
      this.info.latentChannels,
      r.height / this.info.vaeScaleFactor,
      r.width / this.info.vaeScaleFactor,
    ];
    const start = req.initLatents
      ? this.startFromLatents(r, req.initLatents, shape, generator)
      : await this.prepareStart(r, req.latents, shape, generator, guided);
    let latents = start.latents;
    const t1 = performance.now();

    const ctx = { randn: (s: readonly number[]) => generator.randn(s) };
    const n = latents.length;
    const unetBatch = guided ? batch * 2 : batch;
    const extra = start.extra;
    const inputShape = [
      unetBatch,
      (shape[1] as number) + (extra?.channels ?? 0),
      shape[2] as number,
      shape[3] as number,
    ];
    const timesteps = scheduler.timesteps;
    const end = r.end;
    const total = end - start.begin;
    for (let i = start.begin; i < end; i++) {
      signal?.throwIfAborted();
      const t = timesteps[i] as number;
      const scaled = scheduler.scaleModelInput(latents, i);
      let input = scaled;
      if (guided) {
        input = new Float32Array(n * 2);
        input.set(scaled, 0);
        input.set(scaled, n);
      }
      // Inpainting UNet: cat([scaled latents, mask, masked-image latents], dim=1), per batch item.
      if (extra) input = concatChannels(input, extra.data, unetBatch);
      const out = await this.unet.run(
        { data: input, shape: inputShape },
        t,
        context,
        timestepCond,
        adapters.unet,
        added,
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
      if (start.blend) {
        // 4-channel inpainting: the known region put back, noised with the same noise to the next
        // step's level (after the last step run: as it is): (1 − m)·known + m·latents.
        const { mask, imageLatents, noise } = start.blend;
        const known = i + 1 < end ? scheduler.addNoise(imageLatents, noise, i + 1) : imageLatents;
        const plane = mask.length / batch;
        for (let j = 0; j < n; j++) {
          const m = mask[Math.floor(j / (n / batch)) * plane + (j % plane)] as number;
          latents[j] = Math.fround(
            Math.fround((1 - m) * (known[j] as number)) + Math.fround(m * (latents[j] as number)),
          );
        }
      }
      const denoised = scheduler.lastDenoised;
      await opts.onStep?.({
        step: i - start.begin + 1,
        total,
        timestep: t,
        latents: { data: latents, shape },
        denoised: denoised && { data: denoised, shape },
      });
    }
    signal?.throwIfAborted();
    const t2 = performance.now();
    return {
      seed: generator.seed,
      latents: { data: latents, shape },
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
        ...(r.image || req.initLatents ? { strength: r.strength } : {}),
        ...(r.clipSkip !== 1 ? { clipSkip: r.clipSkip } : {}),
      },
      timings: { encodeSeconds: (t1 - t0) / 1000, denoiseSeconds: (t2 - t1) / 1000 },
    };
  }

  /** Text to image, img2img or inpainting: `denoise`, then decode latents / scaling_factor. */
  async generate(req: GenerateRequest, opts: GenerateOptions = {}): Promise<GenerateResult> {
    const d = await this.denoise(req, opts);
    const t2 = performance.now();
    const decoded = await this.decodeLatents(d.latents);
    const t3 = performance.now();
    return {
      images: decodedToImages(decoded),
      seed: d.seed,
      latents: d.latents,
      decoded,
      parameters: d.parameters,
      timings: { ...d.timings, decodeSeconds: (t3 - t2) / 1000 },
    };
  }

  /** Latents → the decoder's raw output [B, 3, H, W] (about [-1, 1]): latents / scaling_factor, decoded. */
  async decodeLatents(latents: TensorF32): Promise<TensorF32> {
    const { data, shape } = latents;
    const scaled = new Float32Array(data.length);
    // diffusers divides by the scaling factor; x / s in float32.
    const s = Math.fround(this.info.vaeScalingFactor);
    for (let j = 0; j < data.length; j++) scaled[j] = Math.fround((data[j] as number) / s);
    return this.vae.decode({ data: scaled, shape });
  }

  /**
   * A picture → its latents × scaling_factor [1, C, H/f, W/f], sampled from the encoder's
   * distribution with ε drawn from `generator` (as img2img's start draws it). The size must be a
   * multiple of the VAE scale factor.
   */
  async encodePicture(image: RgbImage, generator: TorchCpuGenerator): Promise<TensorF32> {
    const f = this.info.vaeScaleFactor;
    if (image.width % f !== 0 || image.height % f !== 0) {
      throw new RequestError(`a picture to encode must be a multiple of ${f} pixels on each side`, "image");
    }
    const encoder = await this.vaeEncoder();
    const x = pixelsToTensor(image);
    return {
      data: await this.sampleEncoding(encoder, x, generator),
      shape: [1, this.info.latentChannels, image.height / f, image.width / f],
    };
  }

  /** latent_dist.sample() × scaling_factor of one picture tensor, ε from the generator. */
  private async sampleEncoding(encoder: VaeEncoder, x: TensorF32, generator: TorchCpuGenerator): Promise<Float32Array> {
    const { mean, std } = await encoder.encode(x);
    const eps = generator.randn(mean.shape);
    // The model's own VAE's scaling factor, also when another decoder (the tiny autoencoder,
    // which takes these latents as they are) decodes.
    const s = Math.fround(encoder.config.scalingFactor);
    const one = new Float32Array(mean.data.length);
    // latent_dist.sample() = mean + std · ε, then × scaling_factor, each in float32.
    for (let j = 0; j < one.length; j++) {
      const sample = Math.fround((mean.data[j] as number) + Math.fround((std.data[j] as number) * (eps[j] as number)));
      one[j] = Math.fround(s * sample);
    }
    return one;
  }

  /** initLatents (hires fix's second pass): noised to the first step's level with the generator's first draw. */
  private startFromLatents(r: Validated, init: TensorF32, shape: number[], generator: TorchCpuGenerator): Start {
    const [b, ...rest] = init.shape;
    if (init.shape.length !== 4 || rest.join() !== shape.slice(1).join() || (b !== 1 && b !== shape[0])) {
      throw new RequestError(
        `initLatents must have shape [${shape.join(", ")}] (or a batch of 1), got [${init.shape.join(", ")}]`,
        "initLatents",
      );
    }
    const clean = b === shape[0] ? init.data : repeatBatch(init.data, shape[0] as number);
    r.scheduler.startAt(r.begin);
    const noise = generator.randn(shape);
    return { latents: r.scheduler.addNoise(clean, noise, r.begin), begin: r.begin };
  }

  /**
   * What the UNet is conditioned on, for `numOutputs` images, [negative…, prompt…] under
   * guidance: SD's text embeddings, or SDXL's with its added conditions.
   */
  private async conditioning(
    req: GenerateRequest,
    r: Validated,
    guided: boolean,
    adapters: AdapterFeeds,
  ): Promise<{ context: TensorF32; added?: AddedConditions }> {
    const batch = r.numOutputs;
    if (this.sdxl) {
      const { prompt, width, height } = r;
      const texts = { ...req, prompt, width, height, negativePrompt: req.negativePrompt };
      return this.sdxl.conditioning(
        texts,
        batch,
        guided,
        r.image !== undefined,
        [adapters.text, adapters.text2],
        r.syntax,
      );
    }
    const prompts = guided
      ? [...new Array<string>(batch).fill(r.negativePrompt), ...new Array<string>(batch).fill(r.prompt)]
      : new Array<string>(batch).fill(r.prompt);
    return { context: await this.encodeText(prompts, r.syntax, r.clipSkip, adapters.text) };
  }

  /**
   * The starting latents and first step, with the generator's draws in diffusers' order:
   * - text-to-image: randn(latents) · init_noise_sigma (or the given latents);
   * - img2img: picture encode sample, then noise; latents = add_noise(scaling · sample, noise,
   *   first timestep), even at strength 1, and never × init_noise_sigma;
   * - inpainting: [picture encode sample, only when strength < 1 or the UNet has 4 channels],
   *   noise, masked-picture encode sample; strength 1 starts from noise · init_noise_sigma,
   *   otherwise from add_noise as img2img.
   */
  private async prepareStart(
    r: Validated,
    given: TensorF32 | undefined,
    shape: number[],
    generator: TorchCpuGenerator,
    guided: boolean,
  ): Promise<Start> {
    const scheduler = r.scheduler;
    if (!r.image) {
      let latents: Float32Array;
      if (given) {
        if (given.shape.join() !== shape.join()) {
          throw new RequestError(
            `latents must have shape [${shape.join(", ")}], got [${given.shape.join(", ")}]`,
            "latents",
          );
        }
        latents = Float32Array.from(given.data);
      } else {
        latents = generator.randn(shape);
      }
      if (r.begin > 0) {
        // The expert ensemble's hand-over: the latents are already at this step's noise level.
        scheduler.startAt(r.begin);
        return { latents, begin: r.begin };
      }
      scaleInPlace(latents, scheduler.initNoiseSigma);
      return { latents, begin: 0 };
    }

    const begin = r.begin;
    scheduler.startAt(begin);
    const encoder = await this.vaeEncoder();
    if (encoder.config.scaleFactor !== this.info.vaeScaleFactor) {
      throw new ModelError(
        `the VAE encoder's scale factor (${encoder.config.scaleFactor}) differs from the decoder's (${this.info.vaeScaleFactor})`,
        { file: this.folder.vae.configPath, field: "block_out_channels" },
      );
    }
    const batch = shape[0] as number;
    const pixels = pixelsToTensor(r.image);
    // One encoding of the picture, its sample repeated over the batch (diffusers' prepare_latents).
    const encodeSample = async (x: TensorF32): Promise<Float32Array> =>
      repeatBatch(await this.sampleEncoding(encoder, x, generator), batch);

    if (!r.mask) {
      let imageLatents = await encodeSample(pixels);
      const [, , eh, ew] = pixels.shape.map((v) => v / this.info.vaeScaleFactor) as number[];
      if (eh !== shape[2] || ew !== shape[3]) {
        // latentResize: the picture's latents to the generation size.
        const own = { data: imageLatents, shape: [batch, shape[1] as number, eh as number, ew as number] };
        imageLatents = interpolate(own, shape[2] as number, shape[3] as number, { mode: "bilinear" }).data;
      }
      const noise = generator.randn(shape);
      return { latents: scheduler.addNoise(imageLatents, noise, begin), begin };
    }

    const mask = binariseMask(r.mask);
    // masked_image = image · (mask < 0.5): the repainted area goes to 0 (mid grey).
    const masked = new Float32Array(pixels.data.length);
    const plane = mask.data.length;
    for (let j = 0; j < masked.length; j++)
      masked[j] = (mask.data[j % plane] as number) < 0.5 ? (pixels.data[j] as number) : 0;
    const ninth = this.info.inpaintingUNet;
    const fullStrength = r.strength === 1;
    const imageLatents = !ninth || !fullStrength ? await encodeSample(pixels) : undefined;
    const h = shape[2] as number;
    const w = shape[3] as number;
    const small = resizeNearest(mask, h, w).data;
    if (imageLatents && r.maskedContent) {
      // A1111: init_latent · (1 − m) + randn(seed) · m, or init_latent · (1 − m); its own generator.
      const fresh = r.maskedContent === "noise" ? new TorchCpuGenerator(r.seed).randn(shape) : undefined;
      const plane = h * w;
      const perItem = imageLatents.length / batch;
      for (let j = 0; j < imageLatents.length; j++) {
        const m = small[(j % perItem) % plane] as number;
        if (m === 0) continue;
        imageLatents[j] = Math.fround(
          Math.fround((1 - m) * (imageLatents[j] as number)) + m * (fresh ? (fresh[j] as number) : 0),
        );
      }
    }
    const noise = generator.randn(shape);
    let latents: Float32Array;
    if (fullStrength) {
      latents = Float32Array.from(noise);
      scaleInPlace(latents, scheduler.initNoiseSigma);
    } else {
      latents = scheduler.addNoise(imageLatents as Float32Array, noise, begin);
    }
    const maskedLatents = await encodeSample({ data: masked, shape: pixels.shape });
    const maskLatents = repeatBatch(small, batch);
    if (!ninth) {
      return { latents, begin, blend: { mask: maskLatents, imageLatents: imageLatents as Float32Array, noise } };
    }
    // Per UNet batch item: [mask (1 channel), masked-image latents (C)], twice under guidance.
    const copies = guided ? 2 : 1;
    const extraPerItem = (1 + (shape[1] as number)) * h * w;
    const extra = new Float32Array(copies * batch * extraPerItem);
    for (let k = 0; k < copies * batch; k++) {
      const b = k % batch;
      extra.set(small, k * extraPerItem);
      extra.set(
        maskedLatents.subarray(b * (extraPerItem - h * w), (b + 1) * (extraPerItem - h * w)),
        k * extraPerItem + h * w,
      );
    }
    return { latents, begin, extra: { data: extra, channels: 1 + (shape[1] as number) } };
  }

  /** Fills defaults and checks every field before any work starts. */
  private async validate(req: GenerateRequest): Promise<Validated> {
    const size = this.info.defaultSize;
    const f = this.info.vaeScaleFactor;
    const inputs = checkImageInputs(req, this.info);
    for (const key of ["denoisingEnd", "denoisingStart"] as const) {
      const v = req[key];
      if (v !== undefined && !(typeof v === "number" && v > 0 && v < 1)) {
        throw new RequestError(`${key} must be a number between 0 and 1 (exclusive), got ${v}`, key);
      }
    }
    if (req.trainedTokens !== undefined && (typeof req.trainedTokens !== "string" || !this.sdxl)) {
      throw new RequestError("trainedTokens (a cog-sdxl embeddings.pti) applies to SDXL models only", "trainedTokens");
    }
    if (req.denoisingStart !== undefined && !req.latents) {
      throw new RequestError("denoisingStart continues a hand-over: it needs the latents to start from", "latents");
    }
    // With a picture, its own size (rounded down to the VAE's multiple) unless width/height say
    // otherwise. diffusers' img2img does the same; its inpainting pipeline instead defaults to the
    // UNet's native size. One rule for both here: a picture is not stretched unless asked.
    const own = inputs.image ? targetSize(inputs.image, f, req.width, req.height) : undefined;
    // initLatents: their own size.
    const init = req.initLatents?.shape;
    const fromInit =
      init && init.length === 4 ? { width: (init[3] as number) * f, height: (init[2] as number) * f } : undefined;
    const r = {
      prompt: req.prompt,
      negativePrompt: req.negativePrompt ?? "",
      width: own?.width ?? req.width ?? fromInit?.width ?? size,
      height: own?.height ?? req.height ?? fromInit?.height ?? size,
      numInferenceSteps: req.numInferenceSteps ?? this.info.defaults.numInferenceSteps,
      guidanceScale: req.guidanceScale ?? this.info.defaults.guidanceScale,
      schedulerName: req.scheduler ?? this.info.defaults.scheduler,
      seed: req.seed ?? BigInt(randomInt(0, 2 ** 32 - 1)),
      numOutputs: req.numOutputs ?? 1,
    };
    if (typeof r.prompt !== "string") throw new RequestError("prompt must be a string", "prompt");
    if (typeof r.negativePrompt !== "string")
      throw new RequestError("negative prompt must be a string", "negativePrompt");
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
    // LCM img2img on a latent consistency UNet is diffusers' LatentConsistencyModelImg2ImgPipeline:
    // strength picks the schedule's lower timesteps and every step runs. (An LCM-LoRA on a plain
    // UNet is StableDiffusionImg2ImgPipeline with an LCMScheduler: the steps are cut as below.)
    const lcmImg2img =
      inputs.image !== undefined &&
      inputs.mask === undefined &&
      req.denoisingStart === undefined &&
      (this.unet.config?.timeCondProjDim ?? null) !== null &&
      resolveSchedulerName(r.schedulerName).className === "LCMScheduler";
    // The scheduler throws RequestError for what the request asks, ModelError for its config file.
    const scheduler = createScheduler(r.schedulerName, this.info.schedulerConfig, r.numInferenceSteps, {
      karras: req.useKarrasSigmas,
      ...(lcmImg2img ? { lcmStrength: inputs.strength } : {}),
    });
    if (req.latents && inputs.image) {
      throw new RequestError(
        "latents cannot be given with an image: img2img and inpainting start from the picture",
        "latents",
      );
    }
    // get_timesteps: init_timestep = min(int(steps · strength), steps), t_start = steps − init_timestep;
    // with denoising_start (a hand-over), the last steps below its cutoff instead.
    const steps = r.numInferenceSteps;
    const strength = inputs.strength;
    const initTimestep = lcmImg2img ? steps : Math.min(Math.floor(steps * strength), steps);
    const trainSteps = trainTimesteps(this.info.schedulerConfig);
    const begin =
      req.denoisingStart === undefined
        ? (steps - initTimestep) * scheduler.order
        : denoisingStartIndex(scheduler.timesteps, req.denoisingStart, trainSteps, scheduler.order);
    let end =
      req.denoisingEnd === undefined
        ? scheduler.timesteps.length
        : denoisingEndIndex(scheduler.timesteps, req.denoisingEnd, trainSteps);
    if ((inputs.image || req.initLatents) && initTimestep < 1) {
      throw new RequestError(
        `strength ${strength} with ${steps} steps runs no step (steps × strength must be at least 1)`,
        "strength",
      );
    }
    if (begin >= end && req.denoisingEnd !== undefined && req.denoisingStart === undefined) {
      // The hand-over's first half keeps no step when its cutoff comes before the start (a picture
      // at a low strength, or a small fraction): diffusers then hands on the latents as prepared.
      end = begin;
    } else if (begin >= end) {
      throw new RequestError(
        `denoising from ${req.denoisingStart ?? 0} to ${req.denoisingEnd ?? 1} of ${steps} steps runs no step`,
        req.denoisingStart === undefined ? "denoisingEnd" : "denoisingStart",
      );
    }
    // Pictures and masks at the generation size (the picture first, the mask to the picture).
    if (req.latentResize && (!inputs.image || inputs.mask)) {
      throw new RequestError("latentResize is for img2img without a mask", "latentResize");
    }
    const encodeSize =
      req.latentResize && inputs.image ? targetSize(inputs.image, f) : { width: r.width, height: r.height };
    const image = inputs.image ? await resizePixels(inputs.image, encodeSize.width, encodeSize.height) : undefined;
    const mask = inputs.mask ? await resizePixels(inputs.mask, r.width, r.height) : undefined;
    const { syntax, clipSkip } = this.promptOptions(req);
    const maskedContent = req.maskedContent;
    if (maskedContent !== undefined && ((maskedContent !== "noise" && maskedContent !== "zeros") || !mask)) {
      throw new RequestError('maskedContent is "noise" or "zeros", for inpainting only', "maskedContent");
    }
    return { ...r, scheduler, strength, begin, end, image, mask, syntax, clipSkip, maskedContent };
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
    const encoder = await this.encoder?.catch(() => undefined);
    await Promise.all([
      this.textEncoder.session.release(),
      this.sdxl?.release(),
      this.unet.session.release(),
      this.vae.session.release(),
      encoder?.session.release(),
      this.previewer?.release(),
    ]);
  }
}

/** A request with its defaults filled in, checked, and its scheduler built. */
interface Validated {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  numInferenceSteps: number;
  guidanceScale: number;
  schedulerName: string;
  seed: number | bigint;
  numOutputs: number;
  scheduler: Scheduler;
  /** 1 for text-to-image. */
  strength: number;
  /** The first step's index in scheduler.timesteps (0 for text-to-image). */
  begin: number;
  /** One past the last step's index (before denoisingEnd's cutoff; else every timestep). */
  end: number;
  /** At the generation size. */
  image?: RgbImage;
  mask?: GrayImage;
  syntax: PromptSyntax;
  clipSkip: number;
  maskedContent?: "noise" | "zeros";
}

/** The image inputs checked (types, sizes, strength range) and the mask made grey. */
function checkImageInputs(
  req: GenerateRequest,
  info: PipelineInfo,
): { image?: RgbImage; mask?: GrayImage; strength: number } {
  const { image, mask } = req;
  if (image !== undefined) checkPixels(image, 3, "image");
  if (mask !== undefined) {
    if (image === undefined) throw new RequestError("a mask needs an image to inpaint", "mask");
    checkPixels(mask, mask.data.length === mask.width * mask.height ? 1 : 3, "mask");
  }
  if (info.inpaintingUNet && (image === undefined || mask === undefined)) {
    throw new RequestError("this is an inpainting model: it needs an image and a mask", image ? "mask" : "image");
  }
  if (req.initLatents !== undefined && (image !== undefined || req.latents !== undefined)) {
    throw new RequestError("initLatents cannot be given with an image or latents", "initLatents");
  }
  const fromLatents = req.initLatents !== undefined;
  if (req.strength !== undefined && image === undefined && !fromLatents) {
    throw new RequestError("strength applies to image inputs only", "strength");
  }
  if (fromLatents && req.denoisingStart !== undefined) {
    throw new RequestError("denoisingStart continues from latents, not from initLatents", "denoisingStart");
  }
  if (req.denoisingStart !== undefined && image !== undefined) {
    throw new RequestError("denoisingStart continues from latents, not from an image", "denoisingStart");
  }
  // diffusers' defaults: SD img2img 0.8, inpainting 1; SDXL's Img2Img 0.3, Inpaint 0.9999.
  const sdxl = info.family === "sdxl";
  const strength =
    req.strength ??
    (image === undefined && !fromLatents ? 1 : mask === undefined ? (sdxl ? 0.3 : 0.8) : sdxl ? 0.9999 : 1);
  if (typeof strength !== "number" || !(strength > 0 && strength <= 1)) {
    throw new RequestError(`strength must be a number in (0, 1], got ${strength}`, "strength");
  }
  const gray =
    mask && mask.data.length !== mask.width * mask.height ? toGray(mask as RgbImage) : (mask as GrayImage | undefined);
  return { image, mask: gray, strength };
}

function checkPixels(im: { width: number; height: number; data: Uint8Array }, channels: number, field: string): void {
  if (
    !Number.isInteger(im.width) ||
    !Number.isInteger(im.height) ||
    im.width < 1 ||
    im.height < 1 ||
    !(im.data instanceof Uint8Array) ||
    im.data.length !== im.width * im.height * channels
  ) {
    throw new RequestError(`${field} must be ${channels === 3 ? "RGB" : "grey"} pixels of width × height`, field);
  }
}

function scaleInPlace(x: Float32Array, factor: number): void {
  const f = Math.fround(factor);
  if (f !== 1) for (let i = 0; i < x.length; i++) x[i] = Math.fround((x[i] as number) * f);
}

/** [1, …] → [batch, …] by copying. */
function repeatBatch(one: Float32Array, batch: number): Float32Array {
  if (batch === 1) return one;
  const out = new Float32Array(one.length * batch);
  for (let b = 0; b < batch; b++) out.set(one, b * one.length);
  return out;
}

/** torch.cat([a, b], dim=1) for [N, Ca, h, w] and [N, Cb, h, w]. */
function concatChannels(a: Float32Array, b: Float32Array, n: number): Float32Array {
  const pa = a.length / n;
  const pb = b.length / n;
  const out = new Float32Array(a.length + b.length);
  for (let k = 0; k < n; k++) {
    out.set(a.subarray(k * pa, (k + 1) * pa), k * (pa + pb));
    out.set(b.subarray(k * pb, (k + 1) * pb), k * (pa + pb) + pa);
  }
  return out;
}

/** The SD 1.x / 2.x and SDXL families are built here; say so for anything else. */
function checkPipelineKind(folder: ModelFolder): void {
  const file = `${folder.dir}/model_index.json`;
  const cls = folder.modelIndex["_class_name"];
  if (
    cls !== undefined &&
    (typeof cls !== "string" ||
      !/^((Onnx)?StableDiffusion(XL)?(Img2Img|Inpaint)?Pipeline|LatentConsistencyModel(Img2Img)?Pipeline)$/.test(cls))
  ) {
    throw new ModelError(
      `${JSON.stringify(cls)} is not supported: sdserve runs Stable Diffusion 1.x / 2.x and SDXL pipelines ` +
        "(StableDiffusionPipeline, StableDiffusionXLPipeline)",
      { file, field: "_class_name" },
    );
  }
}

/** A UNet with SDXL's added conditions needs SDXL's text side, and the other way round. */
function checkAddedConditions(folder: ModelFolder, unet: UNet, sdxl: SdxlConditioner | undefined): void {
  const textTime = unet.config?.textTime ?? null;
  if (!unet.config) {
    if (sdxl) throw new ModelError("SDXL is run from safetensors weights, not ONNX exports", { file: folder.unet.dir });
    return;
  }
  if (sdxl && textTime === null) {
    throw new ModelError('an SDXL pipeline needs a UNet with addition_embed_type "text_time"', {
      file: folder.unet.configPath,
      field: "addition_embed_type",
    });
  }
  if (!sdxl && textTime !== null) {
    throw new ModelError('a UNet with addition_embed_type "text_time" (SDXL) needs SDXL\'s text encoders', {
      file: folder.unet.configPath,
      field: "addition_embed_type",
    });
  }
  if (sdxl && textTime) {
    const ids = (textTime.inputDim - sdxl.pooledDim) / textTime.timeIdDim;
    // diffusers checks this at every call.
    const made = sdxl.timeIdsCount;
    if (ids !== made) {
      throw new ModelError(
        `is ${textTime.inputDim}: the pooled text embedding (${sdxl.pooledDim}) and ${made} time ids of ` +
          `${textTime.timeIdDim} make ${sdxl.pooledDim + made * textTime.timeIdDim} ` +
          `(model_index.json's requires_aesthetics_score is ${sdxl.settings.requiresAestheticsScore})`,
        { file: folder.unet.configPath, field: "projection_class_embeddings_input_dim" },
      );
    }
  }
}

/** The scheduler config's num_train_timesteps (diffusers' default 1000). */
function trainTimesteps(config: Readonly<Record<string, unknown>>): number {
  const t = config["num_train_timesteps"];
  return typeof t === "number" && Number.isInteger(t) && t > 0 ? t : 1000;
}

/** The model's VAE decoder, or the standalone autoencoder named by `opts.vae`. */
async function loadDecoder(folder: ModelFolder, opts: LoadPipelineOptions): Promise<LatentDecoder> {
  if (!opts.vae) return VaeDecoder.load(folder.vae, opts);
  // Another AutoencoderKL replaces the model's for encoding pictures too, as in diffusers; a
  // file takes the model's VAE config (single-file.ts), a folder brings its own.
  if ((await stat(opts.vae).catch(() => undefined))?.isFile()) {
    folder.vae = await openVae(opts.vae, folder.vae);
    return VaeDecoder.load(folder.vae, opts);
  }
  const files = await openComponentFolder(opts.vae, "vae", opts.variant);
  if (files.config["_class_name"] === "AutoencoderTiny") return TinyVaeDecoder.load(files, opts);
  folder.vae = files;
  return VaeDecoder.load(files, opts);
}

/**
 * A UNet distilled with the guidance embedding (SimianLuo/LCM_Dreamshaper_v7) defaults as
 * diffusers' LatentConsistencyModelPipeline: 4 steps of LCM at guidance 8.5, which costs nothing
 * extra (no second batch). A plain UNet with an LCMScheduler config (an LCM-LoRA fused in) takes
 * 4 LCM steps without classifier-free guidance, as LCM-LoRA's model card runs it (guidance 1).
 * Everything else as StableDiffusionPipeline (50 steps, 7.5) with Replicate's default scheduler.
 */
function nativeDefaults(folder: ModelFolder, unet: UNet, sdxl: boolean): GenerateDefaults {
  if (sdxl) return sdxlDefaults(folder);
  if ((unet.config?.timeCondProjDim ?? null) !== null) {
    return { numInferenceSteps: 4, guidanceScale: 8.5, scheduler: "LCMScheduler" };
  }
  if (folder.schedulerConfig["_class_name"] === "LCMScheduler") {
    return { numInferenceSteps: 4, guidanceScale: 1, scheduler: "LCMScheduler" };
  }
  return { numInferenceSteps: 50, guidanceScale: 7.5, scheduler: DEFAULT_SCHEDULER };
}

/**
 * Loads a diffusers-format Stable Diffusion folder (or a folder of ONNX exports), or a
 * single-file checkpoint in the original layout (`.safetensors`).
 */
export function loadPipeline(source: string, opts: LoadPipelineOptions = {}): Promise<Pipeline> {
  return Pipeline.load(source, opts);
}

/**
 * SDXL as diffusers' StableDiffusionXLPipeline runs it: 50 steps at guidance 5 with the folder's
 * own scheduler (SDXL base: Euler, also Replicate's K_EULER). A few-step distillation with
 * trailing timesteps (SDXL-Turbo: Euler ancestral) defaults as its model card runs it: one step
 * without guidance.
 */
function sdxlDefaults(folder: ModelFolder): GenerateDefaults {
  const own = folder.schedulerConfig["_class_name"];
  const scheduler = typeof own === "string" ? own : "EulerDiscreteScheduler";
  if (folder.schedulerConfig["timestep_spacing"] === "trailing") {
    return { numInferenceSteps: 1, guidanceScale: 0, scheduler };
  }
  return { numInferenceSteps: 50, guidanceScale: 5, scheduler };
}

/**
 * The names a LoRA's keys are matched against: each network's modules with their weight shapes
 * (SDXL's second text encoder too), and the UNet's original LDM/SGM names, which kohya's SDXL
 * LoRAs use.
 */
function loraModelNames(folder: ModelFolder): LoraNames {
  const unetModules = moduleShapes(folder.unet.tensors);
  const names: LoraNames = {
    modules: {
      unet: unetModules,
      text_encoder: moduleShapes(folder.textEncoder.tensors),
      ...(folder.textEncoder2 ? { text_encoder_2: moduleShapes(folder.textEncoder2.tensors) } : {}),
    },
  };
  if (folder.unet.onnxPath) return names;
  const config = readUNetConfig(new ConfigReader(folder.unet.configPath, folder.unet.config));
  return { ...names, ldmUNet: ldmUNetNames(ldmUNetModules(config), UNET_RESNET, unetModules.keys()) };
}
