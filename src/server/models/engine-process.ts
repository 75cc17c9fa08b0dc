/**
 * The program of a model's engine process (engine-host.ts starts it, one per loaded model): it
 * downloads and loads the weights, runs the generations, makes the previews and encodes the
 * PNGs, so that none of that work holds the HTTP server's event loop. onnxruntime-node runs each
 * network synchronously on the thread that calls it, which is why the engine needs a thread of
 * its own and not just asynchronous calls; engine-host.ts says why that thread is a process's.
 *
 * The process holds the only copy of the model. It answers the messages below and sends small
 * things back: log lines, download events, step reports and PNG bytes. It follows its parent:
 * signals sent to the whole process group (Ctrl-C) are left to the parent, which cancels what
 * runs and then closes this process; when the parent is gone, this process ends.
 */

import { randomInt } from "node:crypto";
import { decodeImage } from "../../engine/image-input.js";
import {
  a1111Parameters,
  canPreview,
  decodedToImages,
  type ExecutionProvider,
  encodePng,
  type GenerateRequest,
  type GenerationParameters,
  generateHires,
  type HiresFix,
  HubError,
  type HubSettings,
  latentsToPreviewImages,
  loadPipeline,
  ModelError,
  type Pipeline,
  type PullEvent,
  RequestError,
  type RgbImage,
  resolveModelSource,
  type StepEvent,
  TorchCpuGenerator,
} from "../../engine/index.js";
import { watermarked } from "../../engine/watermark.js";
import type { WeightsVariant } from "../../engine/weights/model-folder.js";
import type { ModelEngineOptions } from "../../model-catalog.js";

export interface SetupParams {
  weights: string;
  variant: WeightsVariant | undefined;
  hub: HubSettings;
  /** sdserve's cache, where tiny-random is built. */
  cacheDir: string;
  optimizedCache: string | false | undefined;
  threads: number | undefined;
  provider: ExecutionProvider | undefined;
  /** The models file's engine fields (config, vae, loras, embeddings, prompt syntax, …). */
  engine?: ModelEngineOptions;
  /** Step previews drawn by an AutoencoderTiny (TAESD) folder, at most maxSize pixels a side; absent: the linear latent map. */
  preview?: { vae: string; maxSize: number };
  /** SDXL: the refiner's weights, loaded in this process on the first request that refines. */
  refiner?: string;
  /**
   * Build the base so that requests can bring LoRAs and trained tokens (replicate_weights); see
   * the engine's loraSupport and requestEmbeddings.
   */
  loraSupport?: boolean;
}

export type ToEngine =
  | { type: "setup"; params: SetupParams }
  | {
      type: "generate";
      id: number;
      request: GenerateRequest;
      /** Encoded pictures, decoded here (off the server's thread): they become request.image / request.mask. */
      pictures?: PictureInputs;
      /** Without width/height, a picture over this many pixels is generated scaled down to fit. */
      maxPixels?: number;
      /** Send a preview at most this often; absent: no previews. */
      previewIntervalMs?: number;
      /** SDXL: Replicate's refine modes (the refiner is loaded here on first use). */
      refine?: RefineParams;
      /** diffusers' SDXL invisible watermark on the outputs (watermark.ts). */
      watermark?: boolean;
      /** AUTOMATIC1111's hires fix (engine/hires.ts): text to image, then upscaled and run again. */
      hires?: HiresFix;
    }
  /** Stops the generation before its next step. */
  | { type: "cancel"; id: number }
  | { type: "close" };

/** Replicate's SDXL `refine` modes (cog-sdxl): the refiner after the base. */
export interface RefineParams {
  mode: "expert_ensemble_refiner" | "base_image_refiner";
  /** expert_ensemble_refiner: where the base stops and the refiner starts (denoising_end / _start). */
  highNoiseFrac: number;
  /** base_image_refiner: the refiner's steps (default: the request's). */
  steps?: number;
}

/** img2img and inpainting inputs as the bytes clients sent (PNG, JPEG or WebP). */
export interface PictureInputs {
  image: Uint8Array;
  /** White repaints, black keeps (OpenAI's transparency masks are turned into this at its route). */
  mask?: Uint8Array;
}

/**
 * Decodes the pictures into what the pipeline takes; bad bytes are RequestErrors naming the
 * input. A picture larger than `maxPixels`, with no size asked for, is generated at the largest
 * size of its shape that fits (multiples of 8), as memory allows no more.
 */
async function decodePictures(
  p: PictureInputs,
  request: GenerateRequest,
  maxPixels: number | undefined,
): Promise<Partial<GenerateRequest>> {
  const image = await decodeImage(p.image, { field: "image" });
  const out: Partial<GenerateRequest> = { image };
  if (maxPixels && request.width === undefined && request.height === undefined) {
    const scale = Math.sqrt(maxPixels / (image.width * image.height));
    if (scale < 1) {
      out.width = Math.max(8, Math.floor((image.width * scale) / 8) * 8);
      out.height = Math.max(8, Math.floor((image.height * scale) / 8) * 8);
    }
  }
  if (!p.mask) return out;
  out.mask = await decodeImage(p.mask, { field: "mask" });
  return out;
}

/** An error as it crosses the process boundary: its class by name, and what the classes carry. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  field?: string;
  hubKind?: HubError["kind"];
}

export type FromEngine =
  | { type: "log"; line: string }
  | { type: "download"; event: PullEvent }
  | { type: "loading" }
  | { type: "ready"; label: string }
  | { type: "setup-failed"; error: WireError }
  | {
      type: "step";
      id: number;
      step: number;
      total: number;
      /** Since the previous step (the first: since the generation began). */
      seconds: number;
      elapsedSeconds: number;
      previews?: Uint8Array[];
    }
  | { type: "done"; id: number; images: Uint8Array[] }
  | { type: "failed"; id: number; error: WireError };

/** On the command line of an engine process, so that importing this module elsewhere starts nothing. */
export const ENGINE_PROCESS_FLAG = "--sdserve-engine";

/** Progress events of a download come per chunk; the host needs a few a second at most. */
const DOWNLOAD_PROGRESS_MS = 100;

/** The share of the engine's time that previews may take (issue 17: a TAESD preview < 5 % of a step). */
const PREVIEW_SHARE = 0.05;

/**
 * How long after a preview began the next may be made: the client's interval, or longer when
 * previews are dear next to the steps (TAESD on a small or fast model), so that previews never
 * take more than PREVIEW_SHARE of the time, whatever the model and the machine.
 */
export function previewGapMs(intervalMs: number, previewMs: number): number {
  return Math.max(intervalMs, previewMs / PREVIEW_SHARE);
}

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: "Error", message: String(err) };
  return {
    name: err.name,
    message: err.message,
    stack: err.stack,
    ...(err instanceof RequestError || err instanceof ModelError ? { field: err.field } : {}),
    ...(err instanceof HubError ? { hubKind: err.kind } : {}),
  };
}

function runProcess(send: (message: FromEngine) => void): void {
  let pipeline: Pipeline | undefined;
  let label = "stable-diffusion";
  let setupParams: SetupParams | undefined;
  let refiner: Promise<Pipeline> | undefined;
  const running = new Set<Promise<void>>();
  const controllers = new Map<number, AbortController>();
  const post = send;

  async function setup(params: SetupParams): Promise<void> {
    setupParams = params;
    // At most one progress event per interval, but always a file's first (it says where a
    // resumed download starts) and, in the end, the latest (a stalled download shows how far it got).
    let lastSent = Number.NEGATIVE_INFINITY;
    let lastPath: string | undefined;
    let held: PullEvent | undefined;
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      if (held) post({ type: "download", event: held });
      held = undefined;
      lastSent = performance.now();
    };
    const onProgress = (event: PullEvent) => {
      if (event.type === "progress" && event.path === lastPath) {
        held = event;
        const wait = DOWNLOAD_PROGRESS_MS - (performance.now() - lastSent);
        if (wait <= 0) flush();
        else timer ??= setTimeout(flush, wait);
        return;
      }
      flush();
      if (event.type === "progress") lastPath = event.path;
      post({ type: "download", event });
    };
    try {
      const source = await resolveModelSource(params.weights, {
        hub: params.hub,
        cacheDir: params.cacheDir,
        variant: params.variant,
        onProgress,
      });
      flush();
      label = source.label;
      post({ type: "loading" });
      pipeline = await loadPipeline(source.path, {
        variant: params.variant,
        threads: params.threads,
        provider: params.provider,
        optimizedCache: params.optimizedCache,
        config: params.engine?.config,
        vae: params.engine?.vae,
        loras: params.engine?.loras,
        loraSupport: params.loraSupport,
        // replicate_weights' trained tokens (embeddings.pti) come with the LoRA.
        requestEmbeddings: params.loraSupport,
        embeddings: params.engine?.embeddingsDir === undefined ? undefined : [params.engine.embeddingsDir],
        promptSyntax: params.engine?.promptSyntax,
        clipSkip: params.engine?.clipSkip,
        loraDir: params.engine?.loraDir,
        previewVae: params.preview?.vae,
        previewMaxSize: params.preview?.maxSize,
        log: (line) => post({ type: "log", line }),
      });
      post({ type: "ready", label });
    } catch (err) {
      flush();
      post({ type: "setup-failed", error: toWire(err) });
    }
  }

  async function generate(message: Extract<ToEngine, { type: "generate" }>): Promise<void> {
    const { id } = message;
    const controller = new AbortController();
    controllers.set(id, controller);
    try {
      if (!pipeline) throw new Error("the engine process has no model loaded");
      const start = performance.now();
      let lastStep = start;
      let nextPreview = Number.NEGATIVE_INFINITY;
      const interval = message.previewIntervalMs;
      const onStep = async (event: StepEvent) => {
        const { step, total } = event;
        const now = performance.now();
        let previews: Uint8Array[] | undefined;
        // The last step's picture is the output itself, decoded next: a preview of it is wasted
        // work (with Turbo's single step, the only preview there would be).
        if (interval !== undefined && step < total && now >= nextPreview) {
          // A preview that fails costs the preview, not the prediction.
          const images = await previewImages(event).catch((err: unknown) => {
            post({ type: "log", line: `preview failed: ${err instanceof Error ? err.message : String(err)}` });
            return undefined;
          });
          if (images) {
            previews = images.map((image) => encodePng(image));
          }
          nextPreview = now + previewGapMs(interval, performance.now() - now);
        }
        post({
          type: "step",
          id,
          step,
          total,
          seconds: (now - lastStep) / 1000,
          elapsedSeconds: (now - start) / 1000,
          previews,
        });
        // A preview's own time is not the next step's (the step times feed /metrics).
        lastStep = performance.now();
        // onnxruntime holds this thread for a whole step: let a cancel that came meanwhile be
        // read now, so the generation stops before its next step, as it would in-process.
        await new Promise((resolve) => setImmediate(resolve));
      };
      const request = message.pictures
        ? { ...message.request, ...(await decodePictures(message.pictures, message.request, message.maxPixels)) }
        : message.request;
      const opts = { signal: controller.signal, onStep };
      if (message.hires && message.refine)
        throw new RequestError("the hires fix and a refiner do not go together", "hires");
      const result = message.hires
        ? await generateHires(pipeline, request, message.hires, opts)
        : message.refine
          ? await refined(pipeline, await refinerPipeline(), request, message.refine, opts)
          : await pipeline.generate(request, opts);
      const parameters = a1111Parameters({ ...result.parameters, model: label });
      const pictures = message.watermark ? result.images.map((image) => watermarked(image)) : result.images;
      const images = pictures.map((image) => encodePng(image, { parameters }));
      post({ type: "done", id, images });
    } catch (err) {
      post({ type: "failed", id, error: toWire(err) });
    } finally {
      controllers.delete(id);
    }
  }

  /** The tiny autoencoder's picture when the model has one, else the linear map of the latents. */
  async function previewImages(event: StepEvent): Promise<RgbImage[] | undefined> {
    if (pipeline?.previewer) return pipeline.preview(event);
    return canPreview(event.latents) ? latentsToPreviewImages(event.latents) : undefined;
  }

  /** The refiner, loaded once, beside the base in this process (the base is not released). */
  function refinerPipeline(): Promise<Pipeline> {
    const params = setupParams;
    if (!params?.refiner) {
      return Promise.reject(new RequestError("this model has no refiner: its models-file entry names none", "refine"));
    }
    if (!refiner) {
      const weights = params.refiner;
      const loading = (async () => {
        post({ type: "log", line: `loading the refiner ${weights}` });
        const source = await resolveModelSource(weights, {
          hub: params.hub,
          cacheDir: params.cacheDir,
          variant: params.variant,
        });
        return loadPipeline(source.path, {
          variant: params.variant,
          threads: params.threads,
          provider: params.provider,
          optimizedCache: params.optimizedCache,
          // cog-sdxl's refiner shares the base's OpenCLIP encoder, trained tokens included.
          requestEmbeddings: params.loraSupport,
          log: (line) => post({ type: "log", line }),
        });
      })();
      // A failed load is not kept: the next request that refines tries again.
      loading.catch(() => {
        if (refiner === loading) refiner = undefined;
      });
      refiner = loading;
    }
    return refiner;
  }

  async function close(): Promise<void> {
    await Promise.allSettled(running);
    await (await refiner?.catch(() => undefined))?.release();
    await pipeline?.release();
    pipeline = undefined;
    process.exit(0);
  }

  process.on("message", (message: ToEngine) => {
    switch (message.type) {
      case "setup":
        void setup(message.params);
        break;
      case "generate": {
        const run = generate(message).finally(() => running.delete(run));
        running.add(run);
        break;
      }
      case "cancel":
        controllers.get(message.id)?.abort();
        break;
      case "close":
        void close();
        break;
    }
  });
}

/**
 * base_image_refiner: the refiner runs as diffusers' StableDiffusionXLImg2ImgPipeline at its
 * default strength, which cog-sdxl does not change: the last ⌊refine_steps × 0.3⌋ steps.
 */
export const BASE_IMAGE_REFINER_STRENGTH = 0.3;

/**
 * cog-sdxl's refine modes, as its predict() runs diffusers: the base makes latents
 * (output_type="latent"), which are handed to the refiner as they are (`image=output.images`),
 * both with the one torch generator seeded once, so the refiner's draws continue the base's. The
 * refiner keeps its own scheduler (cog-sdxl sets the `scheduler` input on the base's pipeline
 * only) and decodes with the base's VAE, which cog-sdxl's refiner shares. The refiner gets the
 * same prompt, negative prompt, guidance and batch; no trained tokens: cog-sdxl's refiner shares
 * the base's OpenCLIP encoder but keeps its own tokenizer, which never learns <s0>, <s1>…, so it
 * reads the replaced prompt as plain text.
 * - expert_ensemble_refiner: the base stops at high_noise_frac (denoising_end), the refiner runs
 *   the rest of its own schedule of num_inference_steps (denoising_start), adding no noise. At
 *   high_noise_frac 0 or 1 (the ends of its range) diffusers ignores both fractions (it takes
 *   only 0 < x < 1): the base runs whole and the refiner as below, for num_inference_steps;
 * - base_image_refiner: the base runs to the end; the refiner noises its latents to its start
 *   (a draw of the generator) and runs refine_steps (default num_inference_steps) at
 *   BASE_IMAGE_REFINER_STRENGTH.
 */
export async function refined(
  base: Pipeline,
  refiner: Pipeline,
  request: GenerateRequest,
  refine: RefineParams,
  opts: { signal?: AbortSignal; onStep?: (e: StepEvent) => void | Promise<void> },
): Promise<{ images: RgbImage[]; parameters: GenerationParameters }> {
  const generator = new TorchCpuGenerator(request.seed ?? randomInt(0, 2 ** 32 - 1));
  const ensemble = refine.mode === "expert_ensemble_refiner" && refine.highNoiseFrac > 0 && refine.highNoiseFrac < 1;
  const high = await base.denoise(ensemble ? { ...request, denoisingEnd: refine.highNoiseFrac } : request, {
    ...opts,
    generator,
  });
  const [batch, , h, w] = high.latents.shape as [number, number, number, number];
  const shared = {
    prompt: request.prompt,
    negativePrompt: request.negativePrompt,
    guidanceScale: request.guidanceScale,
    numOutputs: batch,
    seed: generator.seed,
  };
  const low = await refiner.denoise(
    ensemble
      ? {
          ...shared,
          width: w * base.info.vaeScaleFactor,
          height: h * base.info.vaeScaleFactor,
          numInferenceSteps: request.numInferenceSteps,
          latents: high.latents,
          denoisingStart: refine.highNoiseFrac,
        }
      : {
          ...shared,
          numInferenceSteps:
            refine.mode === "base_image_refiner"
              ? (refine.steps ?? request.numInferenceSteps)
              : request.numInferenceSteps,
          initLatents: high.latents,
          strength: BASE_IMAGE_REFINER_STRENGTH,
        },
    { ...opts, generator },
  );
  const decoded = await base.decodeLatents(low.latents);
  return { images: decodedToImages(decoded), parameters: high.parameters };
}

if (process.send && process.argv.includes(ENGINE_PROCESS_FLAG)) {
  const send = process.send.bind(process);
  const quiet = () => {};
  // The parent decides when this process ends: it cancels, then sends "close".
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => {});
  process.on("disconnect", () => process.exit(0));
  // With the parent gone a send fails (EPIPE); "disconnect" ends this process just after.
  runProcess((message) => {
    if (process.connected) send(message, undefined, {}, quiet);
  });
}
