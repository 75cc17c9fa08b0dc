/**
 * What SDXL does differently from the SD 1.x / 2.x recipe, as diffusers' StableDiffusionXLPipeline
 * (base, SDXL-Turbo) and StableDiffusionXLImg2ImgPipeline (the refiner) do it. pipeline.ts runs the
 * one denoising loop; this file supplies SDXL's conditioning and its hand-over arithmetic:
 *
 * - the prompt goes through every text encoder of the pipeline (base: CLIP ViT-L then OpenCLIP
 *   ViT-bigG; refiner: only the second), each with its own tokenizer; the penultimate hidden
 *   states are concatenated along the channels, and the last encoder's projected pooled output
 *   (`text_embeds`) is a second condition;
 * - an absent negative prompt under guidance is all zeros (embeddings and pooled) when
 *   model_index.json says `force_zeros_for_empty_prompt`; an empty string is encoded like any
 *   other text, as diffusers does;
 * - the micro-conditioning `time_ids`: original size, crop top-left, then the target size (base)
 *   or an aesthetic score (refiner: `requires_aesthetics_score`), each (height, width);
 * - the expert ensemble (diffusers' `denoising_end` / `denoising_start`): the base stops at a
 *   fraction of the schedule, the refiner takes its latents and runs the rest;
 * - AUTOMATIC1111's prompt syntax (`encodeA1111`), as A1111 runs SDXL: the same chunks and
 *   emphasis through each encoder, the pooled embedding from the first chunk, an empty negative
 *   prompt as zeros. Clip skip is not used there (A1111 ignores it for SDXL, whose encoders are
 *   read at the penultimate layer already).
 */
import type { EmbeddingPlacer } from "./embeddings.js";
import { ModelError, RequestError } from "./errors.js";
import type { AddedConditions, TensorF32 } from "./networks.js";
import { TextEncoder } from "./networks.js";
import type { PromptSyntax } from "./pipeline.js";
import { a1111Chunks, applyEmphasis, CHUNK_TOKENS, type PromptChunk } from "./prompt-a1111.js";
import type { Feeds, RuntimeOptions } from "./runtime.js";
import { ClipTokenizer } from "./tokenizer/clip.js";
import type { ModelFolder } from "./weights/model-folder.js";

/** model_index.json's StableDiffusionXL*Pipeline settings. */
export interface SdxlSettings {
  /** An absent negative prompt is zeros (diffusers' default true; the refiner's file says false). */
  forceZerosForEmptyPrompt: boolean;
  /** time_ids end with an aesthetic score instead of the target size (the refiner). */
  requiresAestheticsScore: boolean;
}

/** SDXL's micro-conditioning, all in pixels, (height, width) / (top, left) as diffusers orders them. */
export interface MicroConditioning {
  /** Default: the generated size. */
  originalSize?: readonly [number, number];
  /** Default (0, 0). */
  cropsCoordsTopLeft?: readonly [number, number];
  /** Default: the generated size. Not used by a model that requires an aesthetic score. */
  targetSize?: readonly [number, number];
  /** The refiner's conditions: default 6 for the prompt, 2.5 for the negative. */
  aestheticScore?: number;
  negativeAestheticScore?: number;
  /** Defaults: as the prompt's. */
  negativeOriginalSize?: readonly [number, number];
  negativeCropsCoordsTopLeft?: readonly [number, number];
  negativeTargetSize?: readonly [number, number];
}

/** Whether a model folder is an SDXL pipeline (two text encoders, or the refiner's second only). */
export function isSdxlFolder(folder: ModelFolder): boolean {
  const cls = folder.modelIndex["_class_name"];
  return (
    folder.textEncoder2 !== undefined ||
    folder.textEncoder.name === "text_encoder_2" ||
    (typeof cls === "string" && cls.startsWith("StableDiffusionXL"))
  );
}

export function readSdxlSettings(folder: ModelFolder): SdxlSettings {
  const flag = (key: string, fallback: boolean): boolean => {
    const v = folder.modelIndex[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") {
      throw new ModelError(`must be true or false, got ${JSON.stringify(v)}`, {
        file: `${folder.dir}/model_index.json`,
        field: key,
      });
    }
    return v;
  };
  return {
    forceZerosForEmptyPrompt: flag("force_zeros_for_empty_prompt", true),
    requiresAestheticsScore: flag("requires_aesthetics_score", false),
  };
}

/** One prompt's embeddings: the concatenated penultimate states [n, L, Σhidden] and the pooled [n, P]. */
export interface SdxlEmbeddings {
  promptEmbeds: TensorF32;
  pooled: TensorF32;
}

/** SDXL's text side: the encoders in order (the last one projects), and how time ids are made. */
export class SdxlConditioner {
  private constructor(
    readonly encoders: readonly { tokenizer: ClipTokenizer; encoder: TextEncoder }[],
    readonly settings: SdxlSettings,
  ) {}

  /**
   * Textual-inversion embeddings, one placer per encoder (in `encoders`' order): each places its
   * encoder's vectors (clip_l, clip_g) where a prompt names the embedding.
   */
  placers?: readonly EmbeddingPlacer[];

  /**
   * The pipeline's text encoders and tokenizers in diffusers' order. `first` is the pipeline's
   * already-loaded first encoder (folder.textEncoder), so it is not loaded twice. `adapters.lowRank`:
   * the second encoder's layers that take LoRA factors as inputs (TextEncoder.load).
   */
  static async load(
    folder: ModelFolder,
    first: { tokenizer: ClipTokenizer; encoder: TextEncoder },
    opts: RuntimeOptions,
    adapters: { lowRank?: (prefix: string) => boolean; embeddings?: boolean } = {},
  ): Promise<SdxlConditioner> {
    const encoders = [first];
    if (folder.textEncoder2) {
      const tokenizer = await ClipTokenizer.fromFolder(folder.tokenizer2Dir as string, folder.tokenizerVocabDir);
      encoders.push({ tokenizer, encoder: await TextEncoder.load(folder.textEncoder2, opts, adapters) });
    }
    const last = encoders[encoders.length - 1] as { encoder: TextEncoder };
    if (last.encoder.projectionDim === null) {
      throw new ModelError("SDXL's last text encoder must be a CLIPTextModelWithProjection (its pooled text_embeds)", {
        file: (folder.textEncoder2 ?? folder.textEncoder).configPath,
        field: "architectures",
      });
    }
    return new SdxlConditioner(encoders, readSdxlSettings(folder));
  }

  /** Σ hidden sizes: the UNet's cross_attention_dim. */
  get contextDim(): number {
    return this.encoders.reduce((a, e) => a + e.encoder.hiddenSize, 0);
  }

  /** Original size and crop, then the target size (6) or an aesthetic score (5). */
  get timeIdsCount(): number {
    return this.settings.requiresAestheticsScore ? 5 : 6;
  }

  get pooledDim(): number {
    return (this.encoders[this.encoders.length - 1] as { encoder: TextEncoder }).encoder.projectionDim as number;
  }

  /**
   * Encodes texts (one batch per encoder): diffusers' encode_prompt for each, without guidance
   * logic; with the "a1111" syntax, `encodeA1111`. `adapters`: each encoder's LoRA factor feeds,
   * in order.
   */
  async encode(
    texts: readonly string[],
    adapters: readonly Feeds[] = [],
    syntax: PromptSyntax = "diffusers",
  ): Promise<SdxlEmbeddings> {
    if (syntax === "a1111") return this.encodeA1111(texts, adapters);
    const parts: TensorF32[] = [];
    let pooled: TensorF32 | undefined;
    for (const [i, { tokenizer, encoder }] of this.encoders.entries()) {
      const placer = this.placers?.[i];
      const { ids, feeds } = placer
        ? placer.encode(texts)
        : { ids: texts.map((t) => tokenizer.encode(t).inputIds), feeds: {} };
      const last = i === this.encoders.length - 1;
      const out = await encoder.outputs(
        ids,
        last ? ["penultimate_hidden_state", "text_embeds"] : ["penultimate_hidden_state"],
        { ...feeds, ...adapters[i] },
      );
      parts.push(out["penultimate_hidden_state"] as TensorF32);
      if (last) pooled = out["text_embeds"];
    }
    return { promptEmbeds: concatLastAxis(parts), pooled: pooled as TensorF32 };
  }

  /**
   * AUTOMATIC1111's SDXL encoding (its custom-words wrapper around each of the SGM conditioner's
   * text embedders): each encoder cuts the texts into 75-token chunks with its own tokenizer
   * (the same BPE, so the same chunks and weights; CLIP ViT-L pads with its end-of-text token,
   * OpenCLIP with "!", id 0, after the first end-of-text, as diffusers' two tokenizers do),
   * encodes every chunk to its penultimate hidden states and applies the emphasis to them, each
   * encoder's mean restored on its own states. The chunks are joined along the sequence, the
   * encoders along the channels. The pooled embedding is the first chunk's (A1111's
   * `zs[0].pooled`), taken before emphasis, which never touches it.
   */
  private async encodeA1111(texts: readonly string[], adapters: readonly Feeds[]): Promise<SdxlEmbeddings> {
    const parts: TensorF32[] = [];
    let pooled: TensorF32 | undefined;
    let count: number | undefined;
    for (const [i, { tokenizer, encoder }] of this.encoders.entries()) {
      const { chunks, feeds } = a1111Chunks(texts, tokenizer, this.placers?.[i], encoder);
      if (count !== undefined && chunks.length !== count) {
        // Only tokenizers with different vocabularies can do this; the contexts could not be joined.
        throw new RequestError(
          `the prompt makes ${count} chunks for the first text encoder but ${chunks.length} for the second (their tokenizers differ)`,
          "prompt",
        );
      }
      count = chunks.length;
      const last = i === this.encoders.length - 1;
      const width = encoder.hiddenSize;
      const batch = texts.length;
      const item = (chunks[0]?.[0] as PromptChunk).ids.length * width;
      const out = new Float32Array(batch * chunks.length * item);
      for (const [c, chunk] of chunks.entries()) {
        const withPooled = last && c === 0;
        const z = await encoder.outputs(
          chunk.map((k) => k.ids),
          withPooled ? ["penultimate_hidden_state", "text_embeds"] : ["penultimate_hidden_state"],
          { ...feeds, ...adapters[i] },
        );
        if (withPooled) pooled = z["text_embeds"];
        const data = (z["penultimate_hidden_state"] as TensorF32).data;
        for (let b = 0; b < batch; b++) {
          const zb = data.subarray(b * item, (b + 1) * item);
          applyEmphasis(zb, (chunk[b] as PromptChunk).weights, width);
          out.set(zb, (b * chunks.length + c) * item);
        }
      }
      parts.push({ data: out, shape: [batch, chunks.length * (item / width), width] });
    }
    return { promptEmbeds: concatLastAxis(parts), pooled: pooled as TensorF32 };
  }

  /**
   * The UNet's conditioning for `batch` images of one prompt: [negative × batch, prompt × batch]
   * under guidance, else [prompt × batch], as encoder_hidden_states, text_embeds and time_ids.
   * With the "a1111" syntax an empty (or absent) negative prompt is zeros whatever
   * model_index.json says, as A1111's SDXL conditioning zeroes it; when the prompt has more chunks,
   * the zeros are followed by the empty prompt's encoding for the rest, as A1111's "pad
   * prompt/negative prompt" pads its negative.
   */
  async conditioning(
    req: { prompt: string; negativePrompt: string | undefined; width: number; height: number } & MicroConditioning,
    batch: number,
    guided: boolean,
    fromImage = false,
    adapters: readonly Feeds[] = [],
    syntax: PromptSyntax = "diffusers",
  ): Promise<{ context: TensorF32; added: AddedConditions }> {
    const timeIdsCount = this.timeIdsCount;
    const a1111 = syntax === "a1111";
    const zeroNegative =
      guided &&
      (a1111
        ? (req.negativePrompt ?? "") === ""
        : req.negativePrompt === undefined && this.settings.forceZerosForEmptyPrompt);
    const texts = guided && (a1111 || !zeroNegative) ? [req.negativePrompt ?? "", req.prompt] : [req.prompt];
    const enc = await this.encode(texts, adapters, syntax);
    const { positive, negative } = this.timeIds(req, fromImage);

    const rows = guided ? 2 * batch : batch;
    const seq = enc.promptEmbeds.shape[1] as number;
    const dim = enc.promptEmbeds.shape[2] as number;
    const pooledDim = enc.pooled.shape[1] as number;
    const context = new Float32Array(rows * seq * dim);
    const textEmbeds = new Float32Array(rows * pooledDim);
    const timeIds = new Float32Array(rows * timeIdsCount);
    const promptRow = texts.length - 1;
    for (let k = 0; k < rows; k++) {
      const isNegative = guided && k < batch;
      if (isNegative && zeroNegative) {
        // zeros_like: the arrays start zeroed. A1111: zeros for the first chunk, then the empty
        // prompt's chunks (row 0 encodes "" padded to the prompt's chunk count).
        const zeros = (CHUNK_TOKENS + 2) * dim;
        if (a1111 && seq * dim > zeros)
          context.set(enc.promptEmbeds.data.subarray(zeros, seq * dim), k * seq * dim + zeros);
      } else {
        const src = isNegative ? 0 : promptRow;
        context.set(enc.promptEmbeds.data.subarray(src * seq * dim, (src + 1) * seq * dim), k * seq * dim);
        textEmbeds.set(enc.pooled.data.subarray(src * pooledDim, (src + 1) * pooledDim), k * pooledDim);
      }
      timeIds.set(isNegative ? negative : positive, k * timeIdsCount);
    }
    return {
      context: { data: context, shape: [rows, seq, dim] },
      added: {
        textEmbeds: { data: textEmbeds, shape: [rows, pooledDim] },
        timeIds: { data: timeIds, shape: [rows, timeIdsCount] },
      },
    };
  }

  /**
   * diffusers' _get_add_time_ids: (original h, w, crop top, left, target h, w) or, for a model that
   * requires an aesthetic score, (original h, w, crop top, left, score); the pipeline has checked
   * at load that the UNet's add_embedding takes that many. The negative row as diffusers 0.29
   * makes it: text-to-image (StableDiffusionXLPipeline) repeats the prompt's row unless both
   * negative sizes are given (then with the negative crop, default (0, 0)); from an image
   * (Img2Img / Inpaint) the negative sizes default to the prompt's and the prompt's crop is used,
   * except in the aesthetic form, which takes the negative crop (default (0, 0)).
   */
  timeIds(
    req: { width: number; height: number } & MicroConditioning,
    fromImage = false,
  ): { positive: Float32Array; negative: Float32Array } {
    const size: [number, number] = [req.height, req.width];
    const original = req.originalSize ?? size;
    const crops = req.cropsCoordsTopLeft ?? [0, 0];
    const target = req.targetSize ?? size;
    const negOriginal = req.negativeOriginalSize ?? original;
    const negCrops = req.negativeCropsCoordsTopLeft ?? [0, 0];
    const negTarget = req.negativeTargetSize ?? target;
    for (const [field, pair] of Object.entries({
      originalSize: original,
      cropsCoordsTopLeft: crops,
      targetSize: target,
      negativeOriginalSize: negOriginal,
      negativeCropsCoordsTopLeft: negCrops,
      negativeTargetSize: negTarget,
    })) {
      if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((v) => Number.isFinite(v) && Math.abs(v) <= 1e6)) {
        throw new RequestError(`${field} must be two finite numbers (height, width or top, left)`, field);
      }
    }
    let positive: number[];
    let negative: number[];
    if (this.settings.requiresAestheticsScore) {
      const score = req.aestheticScore ?? 6;
      const negScore = req.negativeAestheticScore ?? 2.5;
      for (const [field, v] of [
        ["aestheticScore", score],
        ["negativeAestheticScore", negScore],
      ] as const) {
        if (!Number.isFinite(v) || Math.abs(v) > 1e6) throw new RequestError(`${field} must be a finite number`, field);
      }
      positive = [...original, ...crops, score];
      negative = [...negOriginal, ...negCrops, negScore];
    } else {
      positive = [...original, ...crops, ...target];
      if (fromImage) negative = [...negOriginal, ...crops, ...negTarget];
      else if (req.negativeOriginalSize && req.negativeTargetSize)
        negative = [...negOriginal, ...negCrops, ...negTarget];
      else negative = positive;
    }
    return { positive: Float32Array.from(positive), negative: Float32Array.from(negative) };
  }

  async release(): Promise<void> {
    // The first encoder belongs to the pipeline; only the ones loaded here are released.
    await Promise.all(this.encoders.slice(1).map((e) => e.encoder.session.release()));
  }
}

/** torch.cat(parts, dim=-1) for tensors that agree on every other axis. */
function concatLastAxis(parts: readonly TensorF32[]): TensorF32 {
  const first = parts[0] as TensorF32;
  if (parts.length === 1) return first;
  const lead = first.shape.slice(0, -1);
  const rows = lead.reduce((a, d) => a * d, 1);
  const widths = parts.map((p) => p.shape[p.shape.length - 1] as number);
  const total = widths.reduce((a, w) => a + w, 0);
  const out = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let at = r * total;
    for (const [i, p] of parts.entries()) {
      const w = widths[i] as number;
      out.set(p.data.subarray(r * w, (r + 1) * w), at);
      at += w;
    }
  }
  return { data: out, shape: [...lead, total] };
}

/**
 * The expert ensemble's split of one schedule (diffusers 0.29): the base runs the timesteps
 * t ≥ round(T − end·T) (T = num_train_timesteps), the refiner the last n that are
 * < round(T − start·T), one more for a second-order scheduler when n is even (so it does not
 * stop between Heun's two evaluations). Returns indices into `timesteps`: [begin, end).
 */
export function denoisingEndIndex(timesteps: readonly number[], fraction: number, trainSteps: number): number {
  const cutoff = roundHalfEven(trainSteps - fraction * trainSteps);
  return timesteps.filter((t) => t >= cutoff).length;
}

export function denoisingStartIndex(
  timesteps: readonly number[],
  fraction: number,
  trainSteps: number,
  order: number,
): number {
  const cutoff = roundHalfEven(trainSteps - fraction * trainSteps);
  let n = timesteps.filter((t) => t < cutoff).length;
  if (order === 2 && n % 2 === 0) n += 1;
  // diffusers' timesteps[-0:] would run the whole schedule; here that is refused by the caller.
  return Math.max(timesteps.length - n, 0);
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
