/** `sdserve generate`: text (and optionally a picture and a mask) to PNG files from the command line. */
import { mkdir, open, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { engineSettings, readSettings, settingFlags, settingsHelp } from "../config.js";
import { a1111Parameters, encodePng } from "../engine/image.js";
import { decodeImage } from "../engine/image-input.js";
import { parseLoraArg } from "../engine/lora.js";
import { loadPipeline, PROMPT_SYNTAXES, type PromptSyntax } from "../engine/pipeline.js";
import { resolveModelSource } from "../engine/sources.js";
import { PREDICTION_TYPES, type PredictionType } from "../engine/weights/single-file.js";
import { FileInputError, resolveFileInput } from "../server/files/file-inputs.js";
import { DownloadProgress } from "./download-progress.js";
import { StepProgress } from "./progress.js";

export const GENERATE_HELP = `Usage: sdserve generate "prompt" --model <folder|file|owner/name|tiny-random> [options]

Options:
  --model <source>          a diffusers-format Stable Diffusion folder (SD 1.x / 2.x, or SDXL, told
                            from model_index.json); a single-file checkpoint (model.safetensors
                            in the original SD 1.x / 2.x or SDXL layout); a Hugging Face
                            model id (owner/name[@revision], downloaded into the Hugging Face cache
                            on first use, see sdserve models --help); or tiny-random (a small
                            random-weight model built on the spot, to try things offline)
  --config <folder>         for a single-file checkpoint: a diffusers folder whose configs, scheduler
                            and tokenizer describe it (default: the published SD 1.5 / 2.1 /
                            SDXL base or refiner configs)
  --prediction-type <type>  epsilon, v_prediction or sample, overriding the model's (an SD 2.x
                            single file is taken as v-prediction, as diffusers does)
  --embeddings-dir <path>   a folder of textual-inversion embeddings (.safetensors; or one file;
                            SDXL: the clip_l / clip_g form), used by writing an embedding's file
                            name in a prompt; repeatable
  --lora <file[:scale]>     a LoRA (.safetensors, kohya/A1111 or diffusers/PEFT layout) at a scale
                            (default 1); repeat for several
  --lora-dir <folder>       where <lora:NAME:SCALE> prompt tags find NAME.safetensors (subfolders
                            too); needs --prompt-syntax a1111
  --prompt-syntax <syntax>  diffusers (default: the prompt as it is, cut at 77 tokens) or a1111
                            (AUTOMATIC1111's (emphasis:1.2), [less], BREAK, prompts of any length
                            in 75-token chunks, <lora:…> tags)
  --clip-skip <n>           1 (default) to 12: the text encoder's hidden state n layers from the
                            end, as AUTOMATIC1111's "Clip skip" (2 = diffusers' clip_skip=1);
                            SD 1.x/2.x only, as is a1111 syntax
  --negative-prompt <text>  what the image should not show (SDXL: left out, the negative is zeros)
  --width <px>              width, a multiple of the model's VAE scale factor (default: the model's size,
                            or with --image the picture's own size rounded down to that multiple)
  --height <px>             height, likewise
  --image <file|url>        img2img: start from this picture (PNG, JPEG or WebP; a file, an
                            http(s) URL or a data: URI; resized to --width/--height when given)
  --mask <file|url>         inpainting: white repaints, black keeps (resized to the picture)
  --strength <0-1>          with --image: how much of the schedule runs, i.e. how far the picture
                            may change (default 0.8 for img2img, 1 for inpainting)
  --steps <n>               denoising steps (default 50; 4 for LCM models)
  --guidance <scale>        classifier-free guidance scale (default 7.5, ≤ 1 turns it off; LCM
                            models: 8.5, taken as an input of the UNet at no extra cost)
  --scheduler <name>        Replicate, diffusers or AUTOMATIC1111 name (default DPMSolverMultistep;
                            LCM for LCM models)
  --vae <folder|file>       decode with this autoencoder folder instead of the model's VAE, e.g. the
                            tiny autoencoder (AutoencoderTiny, madebyollin/taesd): much faster, or
                            sd-vae-ft-mse for SD 1.5; or a .safetensors VAE file (AUTOMATIC1111's)
  --seed <n>                seed for torch-compatible noise (default: random, printed)
  --num-outputs <n>         images to make in one batch (default 1)
  --out <file.png|dir>      where to write (default: the current folder)

${settingsHelp("generate", ["options", "environment"])}
The Hugging Face Hub's HF_* variables apply as for sdserve serve (see sdserve serve --help).
`;

function intOption(values: Record<string, unknown>, key: string): number | undefined {
  const v = values[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`--${key} must be an integer, got "${v}"`);
  return n;
}

export class UsageError extends Error {}

export async function generateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      "negative-prompt": { type: "string" },
      width: { type: "string" },
      height: { type: "string" },
      steps: { type: "string" },
      guidance: { type: "string" },
      scheduler: { type: "string" },
      seed: { type: "string" },
      "num-outputs": { type: "string" },
      out: { type: "string" },
      image: { type: "string" },
      mask: { type: "string" },
      strength: { type: "string" },
      config: { type: "string" },
      "prediction-type": { type: "string" },
      lora: { type: "string", multiple: true },
      "embeddings-dir": { type: "string", multiple: true },
      vae: { type: "string" },
      "lora-dir": { type: "string" },
      "prompt-syntax": { type: "string" },
      "clip-skip": { type: "string" },
      ...settingFlags("generate"),
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(GENERATE_HELP);
    return 0;
  }
  const prompt = positionals.join(" ");
  if (!prompt) throw new UsageError('a prompt is required: sdserve generate "a photo of a cat" --model <folder>');
  if (!values.model) {
    throw new UsageError(
      "--model is required (a diffusers folder, a Hugging Face id such as stabilityai/sd-turbo, or tiny-random)",
    );
  }
  const guidance = values.guidance === undefined ? undefined : Number(values.guidance);
  if (guidance !== undefined && !Number.isFinite(guidance))
    throw new UsageError(`--guidance must be a number, got "${values.guidance}"`);
  let seed: bigint | undefined;
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed)) throw new UsageError(`--seed must be a non-negative integer, got "${values.seed}"`);
    seed = BigInt(values.seed);
  }
  const { lora: loraArgs, "embeddings-dir": embeddingsDirs, ...single } = values;
  const settings = readSettings("generate", single, process.env);
  const { variant, provider, threads } = settings;
  const engine = engineSettings(settings);

  const strength = values.strength === undefined ? undefined : Number(values.strength);
  if (strength !== undefined && !Number.isFinite(strength))
    throw new UsageError(`--strength must be a number, got "${values.strength}"`);
  if (values.image === undefined && (values.mask !== undefined || strength !== undefined))
    throw new UsageError(`--${values.mask !== undefined ? "mask" : "strength"} needs --image`);
  // Read and decoded before the model loads, so a bad file fails at once.
  const allowPrivate = settings.allowPrivateUrls;
  const image = values.image === undefined ? undefined : await readPicture(values.image, "image", allowPrivate);
  const mask = values.mask === undefined ? undefined : await readPicture(values.mask, "mask", allowPrivate);

  const predictionType = values["prediction-type"];
  if (predictionType !== undefined && !(PREDICTION_TYPES as readonly string[]).includes(predictionType)) {
    throw new UsageError(`--prediction-type must be one of ${PREDICTION_TYPES.join(", ")}, got "${predictionType}"`);
  }
  const promptSyntax = values["prompt-syntax"];
  if (promptSyntax !== undefined && !(PROMPT_SYNTAXES as readonly string[]).includes(promptSyntax)) {
    throw new UsageError(`--prompt-syntax must be one of ${PROMPT_SYNTAXES.join(", ")}, got "${promptSyntax}"`);
  }
  const clipSkip = intOption(values, "clip-skip");
  if (clipSkip !== undefined && (clipSkip < 1 || clipSkip > 12))
    throw new UsageError(`--clip-skip must be from 1 to 12, got "${values["clip-skip"]}"`);
  if (values["lora-dir"] !== undefined && promptSyntax !== "a1111")
    throw new UsageError("--lora-dir serves <lora:…> prompt tags: it needs --prompt-syntax a1111");
  const source = await resolveModelSource(values.model, {
    cacheDir: engine.cacheDir,
    hub: engine.hub,
    variant,
    onProgress: new DownloadProgress().handle,
  });
  const loadStart = performance.now();
  const pipeline = await loadPipeline(source.path, {
    threads,
    provider,
    variant,
    config: values.config,
    predictionType: predictionType as PredictionType | undefined,
    loras: (loraArgs ?? []).map(parseLoraArg),
    optimizedCache: engine.optimizedCache,
    vae: values.vae,
    embeddings: embeddingsDirs,
    loraDir: values["lora-dir"],
    promptSyntax: promptSyntax as PromptSyntax | undefined,
    clipSkip,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(`loaded ${source.label} in ${((performance.now() - loadStart) / 1000).toFixed(1)}s\n`);
  try {
    const steps = intOption(values, "steps");
    let progress: StepProgress | undefined;
    const start = performance.now();
    const result = await pipeline.generate(
      {
        prompt,
        negativePrompt: values["negative-prompt"],
        width: intOption(values, "width"),
        height: intOption(values, "height"),
        numInferenceSteps: steps,
        guidanceScale: guidance,
        scheduler: values.scheduler,
        seed,
        numOutputs: intOption(values, "num-outputs"),
        image,
        mask,
        strength,
      },
      {
        onStep: ({ step, total }) => {
          progress ??= new StepProgress(total, { label: "denoising", start });
          progress.update(step);
        },
      },
    );
    progress?.finish();
    const files = outputPaths(values.out, result.images.length, result.seed);
    await mkdir(path.dirname(files[0] as string), { recursive: true });
    const text = { parameters: a1111Parameters({ ...result.parameters, model: source.label }) };
    for (const [i, image] of result.images.entries()) await writeFile(files[i] as string, encodePng(image, text));
    const t = result.timings;
    process.stdout.write(`seed: ${result.seed}\n`);
    for (const f of files) process.stdout.write(`${f}\n`);
    process.stderr.write(
      `${image ? "text and image encoders" : "text encoder"} ${t.encodeSeconds.toFixed(2)}s, denoising ${t.denoiseSeconds.toFixed(2)}s, VAE decode ${t.decodeSeconds.toFixed(2)}s\n`,
    );
  } finally {
    await pipeline.release();
  }
  return 0;
}

/** `--out x.png` names the file (x-1.png, x-2.png, … for several); anything else is a folder. */
function outputPaths(out: string | undefined, count: number, seed: bigint): string[] {
  if (out?.toLowerCase().endsWith(".png")) {
    if (count === 1) return [out];
    const base = out.slice(0, -4);
    return Array.from({ length: count }, (_, i) => `${base}-${i + 1}.png`);
  }
  const dir = out ?? ".";
  return Array.from({ length: count }, (_, i) =>
    path.join(dir, count === 1 ? `sdserve-${seed}.png` : `sdserve-${seed}-${i + 1}.png`),
  );
}

/** Largest picture file read; the decoder then checks the pixel count from the header. */
const MAX_PICTURE_BYTES = 64 * 1024 * 1024;

async function readPicture(file: string, what: "image" | "mask", allowPrivate: boolean) {
  let bytes: Uint8Array;
  try {
    if (/^(https?:|data:)/i.test(file)) {
      // A URL is fetched as the server fetches file inputs: the same SSRF rules and limits.
      bytes = await resolveFileInput(file, what, "cli", { allowPrivate, maxBytes: MAX_PICTURE_BYTES });
      return await decodeImage(bytes, { field: what });
    }
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      if (size > MAX_PICTURE_BYTES) throw new UsageError(`${size} bytes, over the 64 MiB limit`);
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
    return await decodeImage(bytes, { field: what });
  } catch (err) {
    if (err instanceof FileInputError) throw new UsageError(`--${what}: ${err.message}`);
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EISDIR" ? "is a folder" : e.message;
    throw new UsageError(`--${what} ${file}: ${why}`);
  }
}
