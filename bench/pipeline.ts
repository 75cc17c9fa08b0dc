/**
 * bench/pipeline: end-to-end text-to-image, img2img and inpainting through the engine's public
 * API (loadPipeline, then pipeline.generate), as a user of the library or `sdserve generate`
 * meets it: load time, seconds per image and per denoising step, the split into encoders /
 * denoise / VAE decode, and peak RSS. img2img and inpainting start from a synthetic picture
 * (and a mask over its middle) at --strength, so they run floor(steps × strength) steps plus
 * one VAE encode (inpainting: two, the picture and the masked picture). Models: the tiny-random model, and the full-size presets (SD 1.5,
 * SD 2.1, …) with random weights built from presets/ (compute does not depend on the values).
 *
 *   npx tsx bench/pipeline.ts [--model tiny|sd-1.5|sd-2.1|sd-2.1-base|sd-turbo|lcm-dreamshaper-v7|sdxl|sdxl-turbo|all]
 *     [--runs 3] [--warmup 1] [--steps 20] [--size N|WxH] [--scheduler DPMSolverMultistep]
 *     [--guidance 7.5] [--vae taesd|DIR] [--preview taesd|DIR] [--preview-size N] [--fast turbo|lcm] [--seed 42]
 *     [--threads N] [--provider cpu|cuda|cpu,cuda] [--json] [--cache DIR] [--matmul-runs 5]
 *     [--optimized-cache on|off|DIR] [--mode txt2img|img2img|inpaint|all (or a comma-separated list)]
 *     [--strength 0.75]
 *
 * --fast turbo: SD-Turbo, 512², 1 step of Euler (trailing), guidance 0, TAESD decode;
 * --fast lcm: SD 1.5, 512², 4 LCM steps, guidance 1, the full VAE, with TAESD previews at most
 * 256 px wide (`sdserve serve`'s default --preview-size: a TAESD decode of 2×2-averaged latents;
 * --preview-size 512 for full-size ones). Options given explicitly win.
 *
 * Each (model, provider, mode) runs in its own process when there are several, so its peak
 * RSS is its own. See bench/README.md for what is printed.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { isTinyAutoencoderConfig } from "../src/engine/graph/taesd.js";
import { a1111Parameters, encodePng, type RgbImage } from "../src/engine/image.js";
import type { GrayImage } from "../src/engine/image-input.js";
import { DEFAULT_SCHEDULER, type GenerateResult, loadPipeline, type Pipeline } from "../src/engine/pipeline.js";
import type { ExecutionProvider } from "../src/engine/runtime.js";
import { resolveSchedulerName } from "../src/engine/schedulers/index.js";
import { ensureTinyRandomModel } from "../src/engine/tiny-random.js";
import { writeRandomComponent } from "../src/engine/weights/random-weights.js";
import { intOption, optimizedCacheOption, printUsageAndExit, runChildren } from "./lib/cli.js";
import { textEncoderFlops, tinyDecodeFlops, unetFlops, vaeDecodeFlops, vaeEncodeFlops } from "./lib/flops.js";
import { readPresetConfig } from "./lib/inputs.js";
import { gpuInfo, type MatmulPeak, machineInfo, measureMatmulPeak } from "./lib/machine.js";
import { ensureRandomModelFolder } from "./lib/random-model.js";
import {
  bytesText,
  gib,
  gpuFigure,
  LABEL,
  machineFigure,
  matmulPeakFigure,
  pad,
  peakRssFigure,
  Report,
  round,
  secs,
  timedFigure,
} from "./lib/report.js";
import { median, summarize, type Timing, time, timeRuns } from "./lib/timing.js";

const BENCH = "pipeline";
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MODELS = [
  "tiny",
  "sd-1.5",
  "sd-2.1",
  "sd-2.1-base",
  "sd-turbo",
  "lcm-dreamshaper-v7",
  "sdxl",
  "sdxl-turbo",
] as const;
/** The ready-made few-step runs of issue 17 (see the usage above). */
const FAST = {
  turbo: { model: "sd-turbo", steps: 1, guidance: 0, scheduler: "K_EULER", size: 512, vae: "taesd" },
  lcm: { model: "sd-1.5", steps: 4, guidance: 1, scheduler: "LCM", size: 512, preview: "taesd", previewSize: 256 },
} as const;
/** `--vae taesd` / `--preview taesd`: TAESD (presets/taesd) with random weights. */
const TAESD = "taesd";
type Model = (typeof MODELS)[number];
/** What `--model all` runs. */
const ALL: readonly Model[] = ["tiny", "sd-1.5"];
const PROVIDERS: readonly ExecutionProvider[] = ["cpu", "cuda"];
const MODES = ["txt2img", "img2img", "inpaint"] as const;
type Mode = (typeof MODES)[number];
/** bench/unet-step's default weights seed: both benches share one copy of SD 1.5 in the cache. */
const WEIGHTS_SEED = 0;
/** The UNet's context length: CLIP pads every prompt to 77 tokens. */
const TOKENS = 77;
const PROMPT = "a lighthouse at dusk, oil painting, dramatic sky";
const NEGATIVE_PROMPT = "blurry, low quality";

interface Options {
  models: Model[];
  providers: ExecutionProvider[];
  modes: Mode[];
  /** img2img / inpainting strength. */
  strength: number;
  runs: number;
  warmup: number;
  steps: number;
  /** Pixels; undefined: the model's native size. */
  width: number | undefined;
  height: number | undefined;
  scheduler: string;
  guidance: number;
  seed: number;
  threads: number;
  json: boolean;
  cache: string;
  matmulRuns: number;
  /** A decoder folder to use instead of the model's VAE, or "taesd". */
  vae: string | undefined;
  /** A tiny-autoencoder folder (or "taesd") to draw a preview with after every step. */
  preview: string | undefined;
  /** The previews' longest side in pixels (default: the image's). */
  previewSize: number | undefined;
  /** The engine's optimised-model cache: undefined for its default folder, false for off, or a folder. */
  optimizedCache: string | false | undefined;
  child: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      fast: { type: "string" },
      vae: { type: "string" },
      preview: { type: "string" },
      "preview-size": { type: "string" },
      provider: { type: "string", default: "cpu" },
      mode: { type: "string", default: "txt2img" },
      strength: { type: "string", default: "0.75" },
      runs: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
      steps: { type: "string" },
      size: { type: "string" },
      scheduler: { type: "string" },
      guidance: { type: "string" },
      seed: { type: "string", default: "42" },
      threads: { type: "string", default: "0" },
      json: { type: "boolean", default: false },
      cache: { type: "string", default: path.join(REPO_ROOT, ".cache", "bench") },
      "matmul-runs": { type: "string", default: "5" },
      "optimized-cache": { type: "string", default: "on" },
      child: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) printUsageAndExit(import.meta.url);
  if (values.fast !== undefined && !(values.fast in FAST)) {
    throw new Error(`--fast must be one of ${Object.keys(FAST).join(", ")}, got ${values.fast}`);
  }
  const fast: Partial<(typeof FAST)[keyof typeof FAST]> & { vae?: string; preview?: string; previewSize?: number } =
    values.fast === undefined ? {} : FAST[values.fast as keyof typeof FAST];
  values.model ??= fast.model ?? "all";
  values.steps ??= String(fast.steps ?? 20);
  values.scheduler ??= fast.scheduler ?? DEFAULT_SCHEDULER;
  values.guidance ??= String(fast.guidance ?? 7.5);
  values.size ??= fast.size === undefined ? undefined : String(fast.size);
  values.vae ??= fast.vae;
  values.preview ??= fast.preview;
  values["preview-size"] ??= fast.previewSize === undefined ? undefined : String(fast.previewSize);
  const model = values.model === "tiny-random" ? "tiny" : values.model;
  if (model !== "all" && !(MODELS as readonly string[]).includes(model)) {
    throw new Error(`--model must be one of ${[...MODELS, "all"].join(", ")}, got ${values.model}`);
  }
  const providers = values.provider.split(",").map((p) => p.trim());
  for (const p of providers) {
    if (!(PROVIDERS as readonly string[]).includes(p)) {
      throw new Error(`--provider takes ${PROVIDERS.join(", ")} or a comma-separated list, got ${p}`);
    }
  }
  const modes = values.mode === "all" ? [...MODES] : values.mode.split(",").map((m) => m.trim());
  for (const m of modes) {
    if (!(MODES as readonly string[]).includes(m)) {
      throw new Error(`--mode takes ${MODES.join(", ")}, all or a comma-separated list, got ${m}`);
    }
  }
  const strength = Number(values.strength);
  if (!(strength > 0 && strength <= 1)) throw new Error(`--strength must be in (0, 1], got ${values.strength}`);
  const size = values.size === undefined ? undefined : /^(\d+)(?:x(\d+))?$/.exec(values.size);
  if (size === null) throw new Error(`--size must be N (N×N) or WxH, got ${values.size}`);
  const guidance = Number(values.guidance);
  if (!Number.isFinite(guidance) || guidance < 0) throw new Error(`--guidance must be a number ≥ 0`);
  return {
    models: model === "all" ? [...ALL] : [model as Model],
    providers: [...new Set(providers)] as ExecutionProvider[],
    modes: [...new Set(modes)] as Mode[],
    strength,
    runs: intOption("runs", values.runs, 1),
    warmup: intOption("warmup", values.warmup, 0),
    steps: intOption("steps", values.steps, 1),
    width: size && intOption("size", size[1] as string, 8),
    height: size && intOption("size", size[2] ?? (size[1] as string), 8),
    scheduler: values.scheduler,
    guidance,
    vae: values.vae,
    preview: values.preview,
    previewSize:
      values["preview-size"] === undefined ? undefined : intOption("preview-size", values["preview-size"], 8),
    seed: intOption("seed", values.seed, 0),
    threads: intOption("threads", values.threads, 0),
    json: values.json,
    cache: path.resolve(values.cache),
    matmulRuns: intOption("matmul-runs", values["matmul-runs"], 0),
    optimizedCache: optimizedCacheOption(values["optimized-cache"]),
    child: values.child,
  };
}

// ---------------------------------------------------------------- one model, one provider

/** What one generate() call took, in seconds. */
interface RunTimes {
  image: number;
  /** Encoding the images as PNG with their parameters, as `sdserve generate` and the server do. */
  png: number;
  encode: number;
  denoise: number;
  decode: number;
  /** Each step's TAESD preview (with --preview), left out of `image`, `denoise` and `steps`. */
  previews: number[];
  /** Each denoising step, from one onStep call to the next. */
  steps: number[];
  /** From the generate() call to the first preview picture (with --preview). */
  untilFirstPreview: number | undefined;
  /** From the generate() call to the end of its first step. */
  untilFirstStep: number;
}

async function prepareFolder(model: Model, cache: string): Promise<{ dir: string; written: boolean }> {
  if (model === "tiny") {
    const dir = await ensureTinyRandomModel(cache);
    return { dir, written: false };
  }
  const folder = await ensureRandomModelFolder(
    path.join(REPO_ROOT, "presets", model),
    path.join(cache, model),
    WEIGHTS_SEED,
  );
  return { dir: folder.dir, written: [...folder.components.values()].some((c) => !c.reused) };
}

/** A `--vae` / `--preview` value as a folder: "taesd" is presets/taesd with random weights. */
async function decoderFolder(value: string | undefined, cache: string): Promise<string | undefined> {
  if (value !== TAESD) return value && path.resolve(value);
  const config = JSON.parse(readFileSync(path.join(REPO_ROOT, "presets", TAESD, "config.json"), "utf8"));
  const dir = path.join(cache, TAESD);
  await writeRandomComponent(dir, "vae", config, { seed: WEIGHTS_SEED });
  return dir;
}

/** Classifier-free guidance doubles the batch, except for UNets that take the scale as an input (LCM). */
function isGuided(pipeline: Pipeline, guidance: number): boolean {
  return guidance > 1 && (pipeline.unet.config?.timeCondProjDim ?? null) === null;
}

/**
 * FLOPs of one image: text encoder once, the model's VAE encoder once per picture encoded
 * (img2img 1, inpainting 2), the UNet per step run, the decoder once; a TAESD preview.
 */
function imageFlops(
  pipeline: Pipeline,
  opts: SizedOptions,
  decoders: { vae: Record<string, unknown>; preview: Record<string, unknown> | undefined },
  mode: Mode,
  steps: number,
): { text: number; encode: number; step: number; vae: number; image: number; preview: number | undefined } {
  const guided = isGuided(pipeline, opts.guidance);
  const h = opts.height / pipeline.info.vaeScaleFactor;
  const w = opts.width / pipeline.info.vaeScaleFactor;
  const { folder } = pipeline;
  // SDXL runs both encoders (the bench always gives a negative prompt, so both halves are encoded).
  const text = [folder.textEncoder, folder.textEncoder2].reduce(
    (a, c) => a + (c ? textEncoderFlops(c.config, { batch: guided ? 2 : 1, sequence: TOKENS }) : 0),
    0,
  );
  const step = unetFlops(folder.unet.config, { batch: guided ? 2 : 1, height: h, width: w, sequence: TOKENS });
  const size = { batch: 1, height: h, width: w };
  const decode = (config: Record<string, unknown>) =>
    isTinyAutoencoderConfig(config) ? tinyDecodeFlops(config, size) : vaeDecodeFlops(config, size);
  const vae = decode(decoders.vae);
  // As the previewer does: latents averaged over f×f blocks until the preview fits previewSize.
  let f = 1;
  const previewScale = pipeline.previewer?.decoder.config.scaleFactor ?? 8;
  const limit = opts.previewSize ?? Number.POSITIVE_INFINITY;
  while (Math.max(h, w) * previewScale > limit * f && h % (2 * f) === 0 && w % (2 * f) === 0) f *= 2;
  const preview = decoders.preview && tinyDecodeFlops(decoders.preview, { batch: 1, height: h / f, width: w / f });
  const pictures = mode === "txt2img" ? 0 : mode === "img2img" ? 1 : 2;
  const encode = text + pictures * vaeEncodeFlops(pipeline.folder.vae.config, size);
  return { text, encode, step, vae, image: encode + steps * step + vae, preview };
}

/** Options with the image size settled: the asked one, else the model's native size. */
type SizedOptions = Options & { width: number; height: number };

function nativeSize(model: Model): number {
  // The tiny model's UNet is as small as it gets; 512² is the size SD 1.x users ask for.
  if (model === "tiny") return 512;
  return (readPresetConfig(model, "unet")["sample_size"] as number) * 8;
}

/** A deterministic picture (gradients and a disc) and, for inpainting, a mask over its middle. */
function syntheticInputs(width: number, height: number): { image: RgbImage; mask: GrayImage } {
  const data = new Uint8Array(width * height * 3);
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (Math.min(width, height) / 4) ** 2;
      data[i * 3] = Math.floor((255 * x) / width);
      data[i * 3 + 1] = Math.floor((255 * y) / height);
      data[i * 3 + 2] = disc ? 230 : 40;
      mask[i] = x >= width / 4 && x < (3 * width) / 4 && y >= height / 4 && y < (3 * height) / 4 ? 255 : 0;
    }
  }
  return { image: { width, height, data }, mask: { width, height, data: mask } };
}

async function benchOne(
  model: Model,
  provider: ExecutionProvider,
  mode: Mode,
  options: Options,
  report: Report,
): Promise<void> {
  const native = nativeSize(model);
  const opts: SizedOptions = { ...options, width: options.width ?? native, height: options.height ?? native };
  // LCM UNets take the guidance scale as an input: never a second batch.
  const lcmUNet = model !== "tiny" && readPresetConfig(model, "unet")["time_cond_proj_dim"] != null;
  const guided = opts.guidance > 1 && !lcmUNet;
  const decoderNote = opts.vae ? `, decoder ${opts.vae}` : "";
  const previewNote = opts.preview
    ? `, ${opts.preview} previews${opts.previewSize ? ` (at most ${opts.previewSize} px)` : ""}`
    : "";
  // img2img and inpainting run floor(steps × strength) of the schedule's steps (diffusers' get_timesteps);
  // LCM img2img on an LCM UNet runs them all, on lower timesteps (LatentConsistencyModelImg2ImgPipeline).
  const imageMode = mode !== "txt2img";
  const lcmImg2img = lcmUNet && mode === "img2img" && resolveSchedulerName(opts.scheduler).className === "LCMScheduler";
  const stepsRun = imageMode && !lcmImg2img ? Math.min(Math.floor(opts.steps * opts.strength), opts.steps) : opts.steps;
  report.heading(
    `${model === "tiny" ? "tiny-random" : `${model} (random weights, seed ${WEIGHTS_SEED}, fp32)`}: ` +
      `${mode}${imageMode ? ` (strength ${opts.strength}: ${stepsRun} of ${opts.steps} steps)` : ""}, ` +
      `${opts.width}×${opts.height}, ${opts.steps} steps, ${opts.scheduler}, guidance ${opts.guidance}` +
      `${guided ? " (UNet batch 2)" : ""}${decoderNote}${previewNote}, ${provider.toUpperCase()} execution provider`,
  );

  let prepared: { dir: string; written: boolean } | undefined;
  const prepareSeconds = await time(async () => {
    prepared = await prepareFolder(model, opts.cache);
  });
  const { dir, written } = prepared as { dir: string; written: boolean };
  const vaeDir = await decoderFolder(opts.vae, opts.cache);
  const previewDir = await decoderFolder(opts.preview, opts.cache);
  const shownDir = path.relative(process.cwd(), dir) || ".";

  // The MatMul peak is a CPU yardstick; a GPU's would need device-resident operands.
  let peak: MatmulPeak | undefined;
  if (provider === "cpu" && opts.matmulRuns > 0) {
    peak = await measureMatmulPeak({ threads: opts.threads, runs: opts.matmulRuns });
    report.emit(...matmulPeakFigure(peak));
  } else if (provider !== "cpu") {
    report.note(`${pad("", LABEL)} (no MatMul peak or FLOP rates: the peak is measured on the CPU)`);
  }

  const sessions: string[] = [];
  let pipeline: Pipeline | undefined;
  const loadSeconds = await time(async () => {
    pipeline = await loadPipeline(dir, {
      vae: vaeDir,
      previewVae: previewDir,
      previewMaxSize: opts.previewSize,
      threads: opts.threads,
      provider,
      optimizedCache: opts.optimizedCache,
      log: (line) => sessions.push(line),
    });
  });
  const pipe = pipeline as Pipeline;
  const rssAfterLoad = process.memoryUsage().rss;

  const components = [pipe.folder.textEncoder, pipe.folder.textEncoder2, pipe.folder.unet, pipe.folder.vae].filter(
    (c) => c !== undefined,
  );
  let parameters = 0;
  let weightBytes = 0;
  for (const c of components) {
    for (const t of c.tensors.values()) {
      parameters += t.shape.reduce((a, d) => a * d, 1);
      weightBytes += t.byteLength;
    }
  }
  report.emit(
    {
      figure: "model",
      folder: shownDir,
      parameters,
      bytes: weightBytes,
      written,
      prepare_seconds: round(prepareSeconds),
    },
    `${pad("model folder", LABEL)} ${shownDir}: ${(parameters / 1e6).toFixed(parameters < 1e7 ? 2 : 1)} M parameters, ` +
      `${bytesText(weightBytes)}; ${written ? "written" : "ready"} in ${secs(prepareSeconds)}`,
  );
  report.emit(
    {
      figure: "load",
      unit: "s",
      seconds: round(loadSeconds),
      rss_after_bytes: rssAfterLoad,
      sessions,
    },
    `${pad("load (loadPipeline)", LABEL)} ${pad(secs(loadSeconds), 9)} (RSS after: ${gib(rssAfterLoad)})\n` +
      sessions.map((line) => `${pad("", LABEL)}   ${line}`).join("\n"),
  );

  // Every run makes the same image (same seed), so every run does the same work.
  const inputs = syntheticInputs(opts.width, opts.height);
  const request = {
    prompt: PROMPT,
    negativePrompt: NEGATIVE_PROMPT,
    width: opts.width,
    height: opts.height,
    numInferenceSteps: opts.steps,
    guidanceScale: opts.guidance,
    scheduler: opts.scheduler,
    seed: opts.seed,
    ...(imageMode ? { image: inputs.image, strength: opts.strength } : {}),
    ...(mode === "inpaint" ? { mask: inputs.mask } : {}),
  };
  const all: RunTimes[] = [];
  let nonFinite = 0;
  const wall = await timeRuns(
    async () => {
      const stamps: number[] = [];
      // When each step's preview was done: the next step's time counts from there.
      const previewEnds: number[] = [];
      const start = performance.now();
      const result: GenerateResult = await pipe.generate(request, {
        onStep: async (e) => {
          stamps.push(performance.now());
          if (pipe.previewer) {
            await pipe.preview(e);
            previewEnds.push(performance.now());
          }
        },
      });
      const end = performance.now();
      const parameters = a1111Parameters(result.parameters);
      for (const picture of result.images) encodePng(picture, { parameters });
      const pngEnd = performance.now();
      const { encodeSeconds, decodeSeconds } = result.timings;
      const previews = previewEnds.map((t, i) => (t - (stamps[i] as number)) / 1000);
      const previewTotal = previews.reduce((a, b) => a + b, 0);
      const denoiseSeconds = result.timings.denoiseSeconds - previewTotal;
      // Step 1 is counted from the end of encoding (text, and the VAE encoder for image inputs); it
      // also holds the scheduler's first step set-up (microseconds next to a step).
      let prev = start + encodeSeconds * 1000;
      const steps = stamps.map((s, i) => {
        const d = (s - prev) / 1000;
        prev = previewEnds[i] ?? s;
        return d;
      });
      for (const v of result.decoded.data) if (!Number.isFinite(v)) nonFinite++;
      all.push({
        encode: encodeSeconds,
        denoise: denoiseSeconds,
        decode: decodeSeconds,
        steps,
        previews,
        image: (end - start) / 1000 - previewTotal,
        png: (pngEnd - end) / 1000,
        untilFirstStep: ((stamps[0] ?? end) - start) / 1000,
        untilFirstPreview: previewEnds[0] === undefined ? undefined : (previewEnds[0] - start) / 1000,
      });
    },
    { warmup: opts.warmup, runs: opts.runs },
  );
  const firstStep = loadSeconds + (all[0] as RunTimes).untilFirstStep;
  report.emit(
    { figure: "time_to_first_step", unit: "s", seconds: round(firstStep), load_seconds: round(loadSeconds) },
    `${pad("load to first step", LABEL)} ${pad(secs(firstStep), 9)} (loadPipeline, then the first image's text encoder and first step)`,
  );
  const first = opts.warmup > 0 ? all[0] : undefined;
  const measured = all.slice(opts.warmup);
  const part = (pick: (r: RunTimes) => number): Timing =>
    summarize(measured.map(pick), { first: first && pick(first), otherCpus: wall.otherCpus });
  const readConfig = (folder: string) => JSON.parse(readFileSync(path.join(folder, "config.json"), "utf8"));
  const flops = peak
    ? imageFlops(
        pipe,
        opts,
        {
          vae: vaeDir ? readConfig(vaeDir) : pipe.folder.vae.config,
          preview: previewDir && readConfig(previewDir),
        },
        mode,
        stepsRun,
      )
    : undefined;
  const withPeak = (f: number | undefined) => (flops && peak ? { flops: f, peak } : {});
  const firstLabel = "first image";

  if (opts.runs < 3) {
    report.note(
      `${pad("", LABEL)} ! ${opts.runs} measured run${opts.runs === 1 ? "" : "s"} (--runs ${opts.runs}): ` +
        `fewer than 3, so the median is ${opts.runs === 1 ? "that one run" : "their mean"} and min/max say little`,
    );
  }
  const shape = {
    width: opts.width,
    height: opts.height,
    steps: opts.steps,
    scheduler: opts.scheduler,
    ...(imageMode ? { strength: opts.strength, steps_run: stepsRun } : {}),
  };
  report.emit(
    ...timedFigure(
      "image",
      "image, end to end",
      part((r) => r.image),
      {
        fields: { ...shape, guidance: opts.guidance },
        ...withPeak(flops?.image),
        firstLabel,
      },
    ),
  );
  // Prompt to PNG with the model loaded: generate() and the PNG encoding (with A1111's parameters).
  report.emit(
    ...timedFigure(
      "prompt_to_png",
      "prompt to PNG (model loaded)",
      part((r) => r.image + r.png),
      {
        fields: { ...shape, guidance: opts.guidance, png_seconds: round(median(measured.map((r) => r.png))) },
        ...withPeak(flops?.image),
        firstLabel,
      },
    ),
  );
  // The VAE encoder loads on the first image input, so the first image's figure holds its load.
  report.emit(
    ...timedFigure(
      imageMode ? "encode" : "text_encoder",
      imageMode
        ? `  text + VAE encoder (${mode === "img2img" ? "1 picture" : "2 pictures"})`
        : `  text encoder (batch ${guided ? 2 : 1})`,
      part((r) => r.encode),
      {
        fields: { batch: guided ? 2 : 1, tokens: TOKENS },
        ...withPeak(flops?.encode),
        firstLabel,
      },
    ),
  );
  report.emit(
    ...timedFigure(
      "denoise",
      `  denoise (${stepsRun} steps)`,
      part((r) => r.denoise),
      {
        fields: { steps: stepsRun },
        ...withPeak(flops && flops.step * stepsRun),
        firstLabel,
      },
    ),
  );
  const singles = measured.flatMap((r) => r.steps);
  const [stepFigure, stepText] = timedFigure(
    "step",
    "    per step (denoise / steps)",
    part((r) => r.denoise / stepsRun),
    {
      fields: {
        batch: guided ? 2 : 1,
        single_steps: {
          count: singles.length,
          median: round(median(singles)),
          min: round(Math.min(...singles)),
          max: round(Math.max(...singles)),
        },
      },
      ...withPeak(flops?.step),
      firstLabel,
    },
  );
  report.emit(
    stepFigure,
    `${stepText}\n${pad("    single steps", LABEL)} ${pad(secs(median(singles)), 9)} median of ${singles.length} ` +
      `(min ${secs(Math.min(...singles))}, max ${secs(Math.max(...singles))})`,
  );
  report.emit(
    ...timedFigure(
      "vae_decode",
      `  ${pipe.info.decoderClass === "AutoencoderTiny" ? "TAESD" : "VAE"} decode (1 image)`,
      part((r) => r.decode),
      {
        fields: { batch: 1 },
        ...withPeak(flops?.vae),
        firstLabel,
      },
    ),
  );
  if (pipe.previewer) {
    const [previewFigure, previewText] = timedFigure(
      "preview",
      "  TAESD preview (per step)",
      summarize(
        measured.flatMap((r) => r.previews),
        { first: first?.previews[0], otherCpus: wall.otherCpus },
      ),
      { fields: { batch: 1 }, ...withPeak(flops?.preview), firstLabel },
    );
    const stepMedian = median(measured.map((r) => r.denoise / stepsRun));
    const previewMedian = median(measured.flatMap((r) => r.previews));
    const untilPreview = median(measured.map((r) => r.untilFirstPreview ?? Number.NaN));
    report.emit(
      {
        ...previewFigure,
        fraction_of_step: round(previewMedian / stepMedian),
        until_first_preview_seconds: round(untilPreview),
      },
      `${previewText}\n${pad("    as a fraction of a step", LABEL)} ${((100 * previewMedian) / stepMedian).toFixed(1)} %` +
        `\n${pad("    first preview after", LABEL)} ${pad(secs(untilPreview), 9)} (from generate(): text encoder, step 1, its preview)`,
    );
  }
  report.emit(
    ...timedFigure(
      "rest",
      "  rest (validation, RGB conversion)",
      part((r) => r.image - r.encode - r.denoise - r.decode),
      { firstLabel },
    ),
  );
  if (nonFinite > 0) {
    report.note(`${pad("", LABEL)} ! ${nonFinite} non-finite values in the decoded images (random weights)`);
  }

  await pipe.release();
  report.emit(...peakRssFigure(weightBytes));
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const opts = parseOptions();
  if (!opts.child) {
    const report = new Report(BENCH, opts.json);
    if (!opts.json) console.log(`bench/${BENCH} ${new Date().toISOString()}`);
    report.emit(...machineFigure(machineInfo(), opts.threads));
    if (opts.providers.includes("cuda")) {
      report.emit(...gpuFigure(gpuInfo()));
    }
  }
  const variants = opts.models.flatMap((model) =>
    opts.providers.flatMap((provider) => opts.modes.map((mode) => ({ model, provider, mode }))),
  );
  if (variants.length === 1) {
    const { model, provider, mode } = variants[0] as { model: Model; provider: ExecutionProvider; mode: Mode };
    await benchOne(model, provider, mode, opts, new Report(BENCH, opts.json, model, { provider, mode }));
    return;
  }
  // One process per model, provider and mode: peak RSS is each one's own.
  const failed = runChildren(
    BENCH,
    import.meta.url,
    variants.map((v) => ({
      name: `${v.model} (${v.provider}, ${v.mode})`,
      args: ["--model", v.model, "--provider", v.provider, "--mode", v.mode],
    })),
  );
  if (failed) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
