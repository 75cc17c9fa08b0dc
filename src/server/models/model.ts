/**
 * A model adapter: what the server knows of one model — its name, its version, its input and
 * output schemas (as Cog publishes them) — and the one call that runs it. The server reaches
 * the engine only through an adapter; routes never reach either.
 */
import type { HiresFix } from "../../engine/index.js";
import type { WeightsFile } from "../files/weights-inputs.js";
import type { InvalidField, JsonSchema } from "../schemas/json-schema.js";

/**
 * What an AUTOMATIC1111 call (/sdapi/v1) asks beyond the model's Replicate input: A1111's own
 * settings, carried with the prediction to the engine. Never input keys, so the published input
 * schemas stay as they are.
 */
export interface A1111Settings {
  /** CLIP_stop_at_last_layers (1 = the last layer). */
  clipSkip?: number;
  /** The sampler's schedule type is Karras (the engine's Karras sigmas on the input's scheduler). */
  karras?: boolean;
  /** txt2img's hires fix (engine/hires.ts). */
  hires?: HiresFix;
  /**
   * img2img and inpainting: the engine's strength that runs A1111's step count for its
   * denoising_strength (over the input's prompt_strength; inpainting inputs have none).
   */
  strength?: number;
  /** img2img's resize_mode 3: the picture's latents (at its own size) resized to this size. */
  latentResize?: { width: number; height: number };
  /** Inpainting: A1111's inpainting_fill 2 ("noise") or 3 ("zeros"). */
  maskedContent?: "noise" | "zeros";
  /**
   * The /sdapi call this prediction is one image of, so that /progress, /interrupt and /skip
   * find the call in the store from any node: the call's id and job_timestamp, how many images
   * it makes, and the steps each runs. Not read by the engine.
   */
  call?: { id: string; timestamp: string; images: number; steps: number };
}

export interface ModelVersion {
  /** 64 hex characters, as Replicate's version ids. */
  id: string;
  createdAt: string;
  /** A string, never null: python's client types it `str`. */
  cogVersion: string;
  /** Other ids that also name this version (Replicate's published id, where the weights differ). */
  aliases?: readonly string[];
}

/** Whether `id` names the model's version, by its own id or an alias. */
export function isVersionOf(model: { version: ModelVersion }, id: string): boolean {
  return model.version.id === id || (model.version.aliases?.includes(id) ?? false);
}

export interface ModelDescription {
  owner: string;
  name: string;
  description: string;
  githubUrl: string | null;
  paperUrl: string | null;
  licenseUrl: string | null;
}

/** One file a prediction produced, e.g. out-0.png. */
export interface OutputFile {
  name: string;
  contentType: string;
  data: Uint8Array;
}

/** A rough look at the images while they are being made (not stored; see engine/latent-preview.ts). */
export interface PredictionPreview {
  /** Steps done of `total`. */
  step: number;
  total: number;
  /** One small PNG per output, in output order. */
  images: Uint8Array[];
}

export interface PredictContext {
  /** Appends one line to the prediction's logs. */
  log(line: string): void;
  /** Passes a preview to whoever follows the prediction; the adapter keeps the rate modest. */
  preview?(preview: PredictionPreview): void;
  /** Reports how long one denoising step took, in seconds (for /metrics). */
  stepTime?(seconds: number): void;
  /** Aborted on cancel, deadline or shutdown; the adapter stops at the next safe point. */
  signal: AbortSignal;
  /** The file inputs (format "uri") as bytes, by input name: fetched by the worker before predict. */
  files?: Readonly<Record<string, Uint8Array>>;
  /** How the prompts are read, where the API that made the prediction says (absent: the model's setting). */
  promptSyntax?: "a1111";
  /** A1111's settings of an /sdapi/v1 call. */
  a1111?: A1111Settings;
  /** The weights inputs (`weightsInputs`), fetched, unpacked and on disk: fetched by the worker before predict. */
  weights?: Readonly<Record<string, WeightsFile>>;
}

/** A prediction that failed for a reason the user should read, shown as the prediction's `error`. */
export class PredictionError extends Error {
  override readonly name = "PredictionError";
}

export type ModelState = "STARTING" | "READY" | "SETUP_FAILED";

/** What a model still STARTING is doing: fetching its weights, or loading them. */
export interface SetupProgress {
  phase: "downloading" | "loading";
  /** While downloading: where from, the file now coming, and bytes so far of what is missing. */
  download?: {
    source: string;
    file: string | undefined;
    doneBytes: number;
    totalBytes: number;
    bytesPerSecond: number | undefined;
    etaSeconds: number | undefined;
  };
}

/** What an image request may ask of the model: APIs with their own parameters (OpenAI's n and size) check against these. */
export interface ImageLimits {
  /** Images per prediction, at most. */
  maxOutputs: number;
  widths: readonly number[];
  heights: readonly number[];
  /** width × height, at most. */
  maxPixels: number;
  /** The size made when none is asked for. */
  defaultWidth: number;
  defaultHeight: number;
}

export interface ModelAdapter {
  readonly model: ModelDescription;
  readonly version: ModelVersion;
  /** `components.schemas` of the version's OpenAPI document: Input, Output and the enums they reference. */
  readonly schemas: Record<string, JsonSchema>;
  readonly imageLimits: ImageLimits;
  /** Checks an `input` object against the Input schema; [] when valid. Fields are named "input.<name>". */
  validateInput(input: unknown): InvalidField[];
  /** Loads the weights; predictions wait for it. */
  setup(): Promise<void>;
  readonly state: ModelState;
  /** Why setup failed, when it did. */
  readonly setupError: string | undefined;
  /** Set up when first asked for, not at start; until then `setupStarted` is false. */
  readonly setupOnDemand?: boolean;
  readonly setupStarted?: boolean;
  /** While STARTING, what setup is doing (absent where the adapter cannot tell). */
  readonly setupProgress?: SetupProgress;
  /** Runs one prediction; the input has passed validateInput. Rejects with PredictionError for user-facing failures. */
  predict(input: Record<string, unknown>, ctx: PredictContext): Promise<OutputFile[]>;
  /**
   * Inputs that name LoRA weights by URL (stability-ai/sdxl's replicate_weights): the worker
   * fetches and unpacks them into its weights cache (files/weights-inputs.ts) and passes their
   * paths as ctx.weights.
   */
  readonly weightsInputs?: readonly string[];
  /** The folders A1111 prompts call LoRAs and embeddings from (the models file's lora_dir, embeddings_dir). */
  readonly promptFolders?: { loraDir?: string; embeddingsDir?: string };
  close(): Promise<void>;
}
