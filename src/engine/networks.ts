/**
 * The networks of a Stable Diffusion model (text encoder, UNet, VAE decoder, and the VAE
 * encoder for image inputs), each an onnxruntime session with a typed
 * call. A network comes either from a graph built here from config.json + safetensors, or
 * from a ready ONNX export (Optimum's layout), whose input names and dtypes we follow.
 */

import { ModelError, RequestError } from "./errors.js";
import { buildClipTextGraph, MAX_CLIP_SKIP, readClipTextConfig } from "./graph/clip.js";
import { ConfigReader } from "./graph/config.js";
import type { GraphBuilder } from "./graph/onnx.js";
import { buildTinyDecoderGraph, buildTinyEncoderGraph, readTinyAutoencoderConfig } from "./graph/taesd.js";
import { buildUNetGraph, readUNetConfig } from "./graph/unet.js";
import { buildVaeDecoderGraph, buildVaeEncoderGraph, readVaeConfig } from "./graph/vae.js";
import { type LowRankTarget, WeightBinder } from "./graph/weights.js";
import { type Feeds, NetworkSession, ort, type RuntimeOptions } from "./runtime.js";
import type { ComponentFiles } from "./weights/model-folder.js";
import { readTensor, type TensorInfo } from "./weights/safetensors.js";

export interface TensorF32 {
  data: Float32Array;
  shape: number[];
}

function toF32(t: ort.Tensor): TensorF32 {
  return { data: t.data as Float32Array, shape: [...t.dims] };
}

async function openSession(
  name: string,
  files: ComponentFiles,
  build: (cfg: ConfigReader, weights: WeightBinder) => GraphBuilder,
  opts: RuntimeOptions,
  lowRank?: LowRankSupport,
  extraTokenRows = false,
): Promise<NetworkSession> {
  if (files.onnxPath) return NetworkSession.create(name, files.onnxPath, undefined, opts);
  const weights = new WeightBinder(name, files.tensors);
  weights.lowRankFilter = lowRank?.filter;
  weights.extraTokenRows = extraTokenRows;
  const graph = build(new ConfigReader(files.configPath, files.config), weights);
  for (const [prefix, target] of weights.lowRankTargets) lowRank?.targets.set(prefix, target);
  let fp32Bytes = 0;
  for (const t of files.tensors.values()) fp32Bytes += 4 * t.shape.reduce((a, d) => a * d, 1);
  return NetworkSession.create(name, graph.toModel(), { dir: weights.baseDir, files: weights.files, fp32Bytes }, opts);
}

/**
 * Which layers take LoRA factors as graph inputs (the filter, from lora.ts), and, once the
 * graph is built, those layers (filled in by the loader).
 */
export interface LowRankSupport {
  filter: (prefix: string) => boolean;
  targets: Map<string, LowRankTarget>;
}

export class TextEncoder {
  private constructor(
    readonly session: NetworkSession,
    readonly hiddenSize: number,
    /** CLIPTextModelWithProjection's text_embeds width (SDXL's pooled embedding), else null. */
    readonly projectionDim: number | null,
    /** Layers whose LoRA factors are inputs; empty unless loaded with LoRA support. */
    readonly lowRankTargets: ReadonlyMap<string, LowRankTarget> = new Map(),
    /** Token ids from here on pick rows of the `extra_token_rows` input (textual inversion). */
    readonly vocabSize = 0,
    /** final_layer_norm's weights and epsilon, for clip skip (absent for an ONNX export). */
    private readonly finalNorm?: { weight: TensorInfo; bias: TensorInfo; eps: number },
  ) {}

  private finalNormValues?: Promise<{ weight: Float32Array; bias: Float32Array; eps: number }>;

  /** Whether the encoder takes textual-inversion vectors (the `extra_token_rows` input). */
  get takesExtraTokens(): boolean {
    return this.session.inputNames.includes("extra_token_rows");
  }

  /**
   * `adapters.lowRank`: the layers that take LoRA factors as inputs; `adapters.embeddings`:
   * take textual-inversion vectors as the input `extra_token_rows` (clip.ts).
   */
  static async load(
    files: ComponentFiles,
    opts: RuntimeOptions,
    adapters: { lowRank?: (prefix: string) => boolean; embeddings?: boolean } = {},
  ): Promise<TextEncoder> {
    const cfg = readClipTextConfig(new ConfigReader(files.configPath, files.config));
    const lowRank = adapters.lowRank && { filter: adapters.lowRank, targets: new Map<string, LowRankTarget>() };
    const session = await openSession(
      files.name,
      files,
      buildClipTextGraph,
      opts,
      lowRank,
      adapters.embeddings === true,
    );
    const weight = files.tensors.get("text_model.final_layer_norm.weight");
    const bias = files.tensors.get("text_model.final_layer_norm.bias");
    const finalNorm = weight && bias ? { weight, bias, eps: cfg.layerNormEps } : undefined;
    return new TextEncoder(session, cfg.hiddenSize, cfg.projectionDim, lowRank?.targets, cfg.vocabSize, finalNorm);
  }

  /**
   * Token ids [B][L] → last_hidden_state [B, L, hidden] (what the SD pipeline uses as
   * prompt embeddings). No attention mask is passed, as diffusers does.
   */
  async encode(ids: readonly (readonly number[])[], adapters: Feeds = {}, clipSkip = 1): Promise<TensorF32> {
    if (clipSkip === 1) {
      return (await this.outputs(ids, ["last_hidden_state"], adapters))["last_hidden_state"] as TensorF32;
    }
    // AUTOMATIC1111's CLIP_stop_at_last_layers = N (diffusers' clip_skip = N − 1): transformers'
    // hidden_states[-N], through the final layer norm.
    const output = clipSkip === 2 ? "penultimate_hidden_state" : `hidden_state_minus_${clipSkip}`;
    if (!this.session.outputNames.includes(output) || !this.finalNorm) {
      const available = this.session.outputNames.filter((n) => n.startsWith("hidden_state_minus_")).length + 2;
      throw new RequestError(
        this.finalNorm
          ? `clip skip must be an integer from 1 to ${Math.min(available, MAX_CLIP_SKIP)} for this model, got ${clipSkip}`
          : "clip skip needs the text encoder built from safetensors weights (not an ONNX export)",
        "clipSkip",
      );
    }
    const z = (await this.outputs(ids, [output], adapters))[output] as TensorF32;
    const norm = this.finalNorm;
    this.finalNormValues ??= Promise.all([readTensor(norm.weight), readTensor(norm.bias)]).then(([weight, bias]) => ({
      weight,
      bias,
      eps: norm.eps,
    }));
    const { weight, bias, eps } = await this.finalNormValues;
    layerNormRows(z.data, weight, bias, eps);
    return z;
  }

  /** The named graph outputs (see graph/clip.ts: penultimate_hidden_state, text_embeds, …). */
  async outputs(
    ids: readonly (readonly number[])[],
    names: readonly string[],
    adapters: Feeds = {},
  ): Promise<Record<string, TensorF32>> {
    const batch = ids.length;
    const len = ids[0]?.length ?? 0;
    const meta = this.session.inputNames[0] ?? "input_ids";
    const flat = ids.flat();
    // Optimum's exports take int32 ids; our graphs take int64.
    const int32 = this.session.inputType(meta) === "int32";
    const tensor = int32
      ? new ort.Tensor("int32", Int32Array.from(flat), [batch, len])
      : new ort.Tensor(
          "int64",
          BigInt64Array.from(flat, (v) => BigInt(v)),
          [batch, len],
        );
    const out = await this.session.run({ [meta]: tensor, ...adapters }, [...names]);
    return Object.fromEntries(names.map((n) => [n, toF32(out[n] as ort.Tensor)]));
  }
}

/** SDXL's added conditions (diffusers' `added_cond_kwargs`), one row per UNet batch item. */
export interface AddedConditions {
  /** The pooled text embedding [B, projection_dim]. */
  textEmbeds: TensorF32;
  /** Micro-conditioning [B, n]: original size, crop top-left, then target size or aesthetic score. */
  timeIds: TensorF32;
}

export class UNet {
  private constructor(
    readonly session: NetworkSession,
    readonly config: ReturnType<typeof readUNetConfig> | undefined,
    /** Layers whose LoRA factors are inputs; empty unless loaded with LoRA support. */
    readonly lowRankTargets: ReadonlyMap<string, LowRankTarget> = new Map(),
  ) {}

  static async load(
    files: ComponentFiles,
    opts: RuntimeOptions,
    lowRankFilter?: (prefix: string) => boolean,
  ): Promise<UNet> {
    const cfg = files.onnxPath ? undefined : readUNetConfig(new ConfigReader(files.configPath, files.config));
    const lowRank = lowRankFilter && { filter: lowRankFilter, targets: new Map<string, LowRankTarget>() };
    return new UNet(await openSession("unet", files, buildUNetGraph, opts, lowRank), cfg, lowRank?.targets);
  }

  /**
   * One forward pass: the model's prediction (noise, v or sample, per the scheduler config).
   * `timestepCond` [B, time_cond_proj_dim] is required by, and only by, UNets with time_cond_proj_dim;
   * `adapters`: the LoRA factor feeds (lora.ts) when loaded with LoRA support; `added` (SDXL's
   * pooled text embedding and time ids) is required by, and only by, UNets with
   * addition_embed_type "text_time".
   */
  async run(
    sample: TensorF32,
    timestep: number,
    context: TensorF32,
    timestepCond?: TensorF32,
    adapters: Feeds = {},
    added?: AddedConditions,
  ): Promise<TensorF32> {
    const tType = this.session.inputType("timestep");
    const t =
      tType === "int64"
        ? new ort.Tensor("int64", BigInt64Array.of(BigInt(Math.round(timestep))), [1])
        : new ort.Tensor("float32", Float32Array.of(timestep), [1]);
    const feeds: Record<string, ort.Tensor> = {
      sample: new ort.Tensor("float32", sample.data, sample.shape),
      timestep: t,
      encoder_hidden_states: new ort.Tensor("float32", context.data, context.shape),
      ...adapters,
    };
    const wantsCond = this.session.inputNames.includes("timestep_cond");
    if (wantsCond !== (timestepCond !== undefined)) {
      throw new Error(
        wantsCond ? "this UNet needs timestep_cond (time_cond_proj_dim)" : "this UNet takes no timestep_cond",
      );
    }
    if (timestepCond) feeds["timestep_cond"] = new ort.Tensor("float32", timestepCond.data, timestepCond.shape);
    const wantsAdded = this.session.inputNames.includes("time_ids");
    if (wantsAdded !== (added !== undefined)) {
      throw new Error(
        wantsAdded ? "this UNet needs text_embeds and time_ids (SDXL)" : "this UNet takes no text_embeds or time_ids",
      );
    }
    if (added) {
      feeds["text_embeds"] = new ort.Tensor("float32", added.textEmbeds.data, added.textEmbeds.shape);
      feeds["time_ids"] = new ort.Tensor("float32", added.timeIds.data, added.timeIds.shape);
    }
    const out = await this.session.run(feeds);
    return toF32(out[this.session.outputNames[0] as string] as ort.Tensor);
  }
}

export class VaeDecoder {
  private constructor(
    readonly session: NetworkSession,
    readonly config: ReturnType<typeof readVaeConfig>,
  ) {}

  static async load(files: ComponentFiles, opts: RuntimeOptions): Promise<VaeDecoder> {
    const cfg = readVaeConfig(new ConfigReader(files.configPath, files.config));
    return new VaeDecoder(await openSession("vae_decoder", files, buildVaeDecoderGraph, opts), cfg);
  }

  /** Latents already divided by the scaling factor → raw decoder output (about [-1, 1]). */
  async decode(latents: TensorF32): Promise<TensorF32> {
    const name = this.session.inputNames[0] ?? "latent_sample";
    const out = await this.session.run({ [name]: new ort.Tensor("float32", latents.data, latents.shape) });
    return toF32(out[this.session.outputNames[0] as string] as ort.Tensor);
  }
}

export class VaeEncoder {
  private constructor(
    readonly session: NetworkSession,
    readonly config: ReturnType<typeof readVaeConfig>,
  ) {}

  static async load(files: ComponentFiles, opts: RuntimeOptions): Promise<VaeEncoder> {
    if (files.onnxPath) {
      throw new ModelError(
        "image inputs need the VAE encoder, which is built from the diffusers weights (vae/config.json and safetensors); this folder has only an ONNX VAE decoder",
        { file: files.onnxPath },
      );
    }
    const cfg = readVaeConfig(new ConfigReader(files.configPath, files.config));
    return new VaeEncoder(await openSession("vae_encoder", files, buildVaeEncoderGraph, opts), cfg);
  }

  /** Pixels [B, 3, H, W] in [-1, 1] → the latent distribution's mean and std (before scaling_factor). */
  async encode(pixels: TensorF32): Promise<{ mean: TensorF32; std: TensorF32 }> {
    const out = await this.session.run({ sample: new ort.Tensor("float32", pixels.data, pixels.shape) }, [
      "mean",
      "std",
    ]);
    return { mean: toF32(out["mean"] as ort.Tensor), std: toF32(out["std"] as ort.Tensor) };
  }
}

/** What the pipeline needs of a decoder: the full VAE's or the tiny autoencoder's. */
export interface LatentDecoder {
  readonly session: NetworkSession;
  readonly config: { latentChannels: number; scalingFactor: number; scaleFactor: number };
  /** Latents already divided by the scaling factor → raw decoder output (about [-1, 1]). */
  decode(latents: TensorF32): Promise<TensorF32>;
}

/** The decoder of diffusers' AutoencoderTiny (TAESD): a cheap stand-in for the VAE decoder. */
export class TinyVaeDecoder implements LatentDecoder {
  private constructor(
    readonly session: NetworkSession,
    readonly config: ReturnType<typeof readTinyAutoencoderConfig>,
  ) {}

  static async load(files: ComponentFiles, opts: RuntimeOptions): Promise<TinyVaeDecoder> {
    const cfg = readTinyAutoencoderConfig(new ConfigReader(files.configPath, files.config));
    return new TinyVaeDecoder(await openSession("taesd_decoder", files, buildTinyDecoderGraph, opts), cfg);
  }

  async decode(latents: TensorF32): Promise<TensorF32> {
    const out = await this.session.run({ latent_sample: new ort.Tensor("float32", latents.data, latents.shape) });
    return toF32(out["sample"] as ort.Tensor);
  }
}

/** The encoder of diffusers' AutoencoderTiny: deterministic, no distribution to sample. */
export class TinyVaeEncoder {
  private constructor(
    readonly session: NetworkSession,
    readonly config: ReturnType<typeof readTinyAutoencoderConfig>,
  ) {}

  static async load(files: ComponentFiles, opts: RuntimeOptions): Promise<TinyVaeEncoder> {
    const cfg = readTinyAutoencoderConfig(new ConfigReader(files.configPath, files.config));
    return new TinyVaeEncoder(await openSession("taesd_encoder", files, buildTinyEncoderGraph, opts), cfg);
  }

  /** Pictures [B, 3, H, W] in [-1, 1] → latents [B, C, H/f, W/f] (not yet multiplied by the scaling factor). */
  async encode(sample: TensorF32): Promise<TensorF32> {
    const out = await this.session.run({ sample: new ort.Tensor("float32", sample.data, sample.shape) });
    return toF32(out["latents"] as ort.Tensor);
  }
}

/** torch.nn.LayerNorm over the last axis of [rows, width], in place: statistics in float64, results in float32. */
export function layerNormRows(x: Float32Array, weight: Float32Array, bias: Float32Array, eps: number): void {
  const width = weight.length;
  for (let r = 0; r < x.length; r += width) {
    let mean = 0;
    for (let j = 0; j < width; j++) mean += x[r + j] as number;
    mean /= width;
    let variance = 0;
    for (let j = 0; j < width; j++) variance += ((x[r + j] as number) - mean) ** 2;
    variance /= width;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let j = 0; j < width; j++)
      x[r + j] = Math.fround(((x[r + j] as number) - mean) * inv * (weight[j] as number) + (bias[j] as number));
  }
}
