/**
 * AUTOMATIC1111's hires fix (StableDiffusionProcessingTxt2Img.sample_hr_pass in its
 * modules/processing.py): a first pass at width × height, the result upscaled, then an img2img
 * pass at the larger size.
 *
 * - Upscaling: a latent mode (LATENT_UPSCALE_MODES) interpolates the first pass's latents to
 *   (height/8, width/8) of the target, as torch's F.interpolate does; any other upscaler here
 *   ("None", "Lanczos") decodes them, makes 8-bit pixels, resizes with Lanczos and encodes again.
 * - A1111 then crops the latents when both hr_resize_x and hr_resize_y were given (`crop`).
 * - The second pass: A1111's sample_img2img with a step count given, which schedules
 *   int(steps / min(denoising, 0.999)) steps and runs the last `steps` of them, from the
 *   upscaled latents noised with a fresh draw of the image's seed at the new size (ImageRNG).
 *   Here: initLatents at a strength that runs exactly those steps.
 * - SDXL: the same, with the second pass's micro-conditioning at the size upscaled to.
 */
import { RequestError } from "./errors.js";
import { decodedToImages, type GenerationParameters, type RgbImage } from "./image.js";
import { resizePixels } from "./image-input.js";
import { interpolate, LATENT_UPSCALE_MODES } from "./latent-resize.js";
import type { TensorF32 } from "./networks.js";
import type { GenerateOptions, GenerateRequest, Pipeline, StepEvent } from "./pipeline.js";
import { TorchCpuGenerator } from "./random/torch-cpu.js";

/** The pixel upscalers served besides the latent modes: A1111's "None" resizes with Lanczos, as does "Lanczos". */
export const IMAGE_UPSCALERS: readonly string[] = ["None", "Lanczos"];
export const HIRES_UPSCALERS: readonly string[] = [...Object.keys(LATENT_UPSCALE_MODES), ...IMAGE_UPSCALERS];

export interface HiresFix {
  /** The size upscaled to (A1111's hr_upscale_to_x / _y), in pixels; latents are (h/f, w/f), rounded down. */
  width: number;
  height: number;
  /**
   * Pixels cut after upscaling (A1111's truncate_y / truncate_x × 8), in latent rows / columns
   * (pixels / the VAE factor): half before, the rest after.
   */
  cropY?: number;
  cropX?: number;
  /** A key of LATENT_UPSCALE_MODES, or one of IMAGE_UPSCALERS. */
  upscaler: string;
  /** Steps the second pass runs (A1111's hr_second_pass_steps, 0 meaning the first pass's count resolved). */
  steps: number;
  /** A1111's denoising_strength, in (0, 1]. */
  denoisingStrength: number;
  /** The second pass's scheduler (hr_sampler_name); default the first pass's. */
  scheduler?: string;
  useKarrasSigmas?: boolean;
  /** hr_prompt / hr_negative_prompt; default the first pass's. */
  prompt?: string;
  negativePrompt?: string;
}

export interface HiresResult {
  images: RgbImage[];
  seed: bigint;
  latents: TensorF32;
  /** The first pass's, with the hires fields A1111's infotext has. */
  parameters: GenerationParameters;
}

/**
 * The second pass's schedule: A1111's setup_img2img_steps with steps given. Schedules
 * int(steps / min(d, 0.999)) and runs `steps`; the strength returned makes the engine's
 * get_timesteps (floor(total · strength)) run exactly `steps`.
 */
export function hiresSchedule(steps: number, denoisingStrength: number): { total: number; strength: number } {
  const total = Math.trunc(steps / Math.min(denoisingStrength, 0.999));
  // floor(total · (steps + 0.5) / total) = steps, away from any rounding edge.
  return { total, strength: Math.min(1, (steps + 0.5) / total) };
}

function check(h: HiresFix, f: number): void {
  if (!HIRES_UPSCALERS.includes(h.upscaler)) {
    throw new RequestError(`upscaler must be one of ${HIRES_UPSCALERS.join(", ")}, got ${h.upscaler}`, "hires");
  }
  for (const [k, v] of [
    ["width", h.width],
    ["height", h.height],
  ] as const) {
    if (!Number.isInteger(v) || v < f)
      throw new RequestError(`hires ${k} must be an integer ≥ ${f}, got ${v}`, "hires");
  }
  if (!Number.isInteger(h.steps) || h.steps < 1 || h.steps > 1000) {
    throw new RequestError(`hires steps must be an integer from 1 to 1000, got ${h.steps}`, "hires");
  }
  if (!(typeof h.denoisingStrength === "number" && h.denoisingStrength > 0 && h.denoisingStrength <= 1)) {
    throw new RequestError(`hires denoising strength must be in (0, 1], got ${h.denoisingStrength}`, "hires");
  }
  for (const v of [h.cropX ?? 0, h.cropY ?? 0]) {
    if (!Number.isInteger(v) || v < 0) throw new RequestError(`hires crop must be an integer ≥ 0, got ${v}`, "hires");
  }
}

/** samples[:, :, cy//2 : H − (cy+1)//2, cx//2 : W − (cx+1)//2] */
function cropLatents(x: TensorF32, cropY: number, cropX: number): TensorF32 {
  if (cropX === 0 && cropY === 0) return x;
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const top = Math.floor(cropY / 2);
  const left = Math.floor(cropX / 2);
  const oh = h - cropY;
  const ow = w - cropX;
  if (oh < 1 || ow < 1) throw new RequestError("the hires crop leaves no latents", "hires");
  const out = new Float32Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < oh; y++) {
      const from = p * h * w + (y + top) * w + left;
      out.set(x.data.subarray(from, from + ow), (p * oh + y) * ow);
    }
  }
  return { data: out, shape: [n, c, oh, ow] };
}

/** Text to image with A1111's hires fix; steps are reported as one run of both passes. */
export async function generateHires(
  pipeline: Pipeline,
  req: GenerateRequest,
  hires: HiresFix,
  opts: GenerateOptions = {},
): Promise<HiresResult> {
  const f = pipeline.info.vaeScaleFactor;
  check(hires, f);
  if (req.image || req.latents || req.initLatents) {
    throw new RequestError("the hires fix is for text to image only", "hires");
  }
  const firstSteps = req.numInferenceSteps ?? pipeline.info.defaults.numInferenceSteps;
  const grand = firstSteps + hires.steps;
  let done = 0;
  const onStep = (e: StepEvent) => {
    done += 1;
    return opts.onStep?.({ ...e, step: done, total: grand });
  };
  const first = await pipeline.denoise(req, { ...opts, onStep });
  const th = Math.floor(hires.height / f);
  const tw = Math.floor(hires.width / f);
  const latentMode = LATENT_UPSCALE_MODES[hires.upscaler];
  let upscaled: TensorF32;
  if (latentMode) {
    upscaled = interpolate(first.latents, th, tw, latentMode);
  } else {
    // A1111 decodes, clamps (x + 1) / 2 to [0, 1], makes uint8 by truncation, resizes with Lanczos.
    const pictures = decodedToImages(await pipeline.decodeLatents(first.latents), { truncate: true });
    const encoded: Float32Array[] = [];
    for (const picture of pictures) {
      opts.signal?.throwIfAborted();
      const big = await resizePixels(picture, hires.width, hires.height);
      // The encoder reads (size / f) latents; the last few pixels of a size off the multiple are dropped.
      const cut = await cropPixels(big, tw * f, th * f);
      encoded.push((await pipeline.encodePicture(cut, new TorchCpuGenerator(first.seed))).data);
    }
    const data = new Float32Array(encoded.reduce((a, e) => a + e.length, 0));
    let at = 0;
    for (const e of encoded) {
      data.set(e, at);
      at += e.length;
    }
    upscaled = { data, shape: [pictures.length, pipeline.info.latentChannels, th, tw] };
  }
  const initLatents = cropLatents(upscaled, Math.floor((hires.cropY ?? 0) / f), Math.floor((hires.cropX ?? 0) / f));
  const [, , ih, iw] = initLatents.shape as [number, number, number, number];
  const { total, strength } = hiresSchedule(hires.steps, hires.denoisingStrength);
  // SDXL: A1111 conditions the second pass on the size upscaled to (before any crop), as
  // original and target size (calculate_hr_conds); the first pass on its own size.
  const upscaledSize = [hires.height, hires.width] as const;
  const second = await pipeline.generate(
    {
      ...req,
      ...(pipeline.info.family === "sdxl" ? { originalSize: upscaledSize, targetSize: upscaledSize } : {}),
      prompt: hires.prompt || req.prompt,
      negativePrompt: hires.negativePrompt || req.negativePrompt,
      width: iw * f,
      height: ih * f,
      numInferenceSteps: total,
      scheduler: hires.scheduler ?? req.scheduler,
      useKarrasSigmas: hires.scheduler === undefined ? req.useKarrasSigmas : hires.useKarrasSigmas,
      seed: first.seed,
      initLatents,
      strength,
    },
    { ...opts, onStep },
  );
  const extra: [string, string | number][] = [
    ["Denoising strength", hires.denoisingStrength],
    ["Hires steps", hires.steps],
    ["Hires upscaler", hires.upscaler],
  ];
  return {
    images: second.images,
    seed: first.seed,
    latents: second.latents,
    parameters: { ...first.parameters, extra: [...(first.parameters.extra ?? []), ...extra] },
  };
}

/** The top-left width × height of a picture (a no-op at its own size). */
async function cropPixels(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    data.set(image.data.subarray(y * image.width * 3, y * image.width * 3 + width * 3), y * width * 3);
  }
  return { width, height, data };
}
