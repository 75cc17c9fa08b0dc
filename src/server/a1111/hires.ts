/**
 * txt2img's hires fix fields → the engine's HiresFix, as AUTOMATIC1111's
 * StableDiffusionProcessingTxt2Img reads them (modules/processing.py: init,
 * calculate_target_resolution, sample_hr_pass), with the generation parameters its infotext
 * writes (extra_generation_params, in its order).
 */
import { HIRES_UPSCALERS, type HiresFix, LATENT_UPSCALE_MODES } from "../../engine/index.js";
import { invalid } from "./errors.js";

/** txt2img's hires fields as the request schema lets them through. */
export interface HiresBody {
  enable_hr?: boolean;
  hr_scale?: number;
  hr_upscaler?: string;
  hr_second_pass_steps?: number;
  hr_resize_x?: number;
  hr_resize_y?: number;
  hr_sampler_name?: string;
  hr_scheduler?: string;
  hr_prompt?: string;
  hr_negative_prompt?: string;
  hr_checkpoint_name?: string;
  firstphase_width?: number;
  firstphase_height?: number;
  denoising_strength?: number;
}

/** A1111's latent_upscale_default_mode: what a hires fix without hr_upscaler uses. */
export const DEFAULT_HIRES_UPSCALER = "Latent";
/** StableDiffusionProcessingTxt2Img's denoising_strength. */
export const DEFAULT_HIRES_DENOISING = 0.75;
/** A1111's latent factor (opt_f): latents are 1/8 of the picture on each side. */
const OPT_F = 8;

export interface ResolvedHires {
  /** The first pass's size (firstphase_width/height where the old fields are used). */
  width: number;
  height: number;
  /** For the engine: the second pass's scheduler is filled in by the caller. */
  fix: Omit<HiresFix, "scheduler" | "useKarrasSigmas">;
  /** hr_sampler_name, when it names a sampler other than the first pass's. */
  sampler: string | undefined;
  /** The size made (after the crop): the upscaled latents' size × 8. */
  outWidth: number;
  outHeight: number;
  /** extra_generation_params, in A1111's order. */
  extra: [string, string | number][];
}

/**
 * The hires fix a txt2img body asks for (undefined: none), with A1111's defaults. `maxPixels`
 * bounds the size made (the model's limit): a larger one is a 422 on the field that asked.
 */
export function resolveHires(
  body: HiresBody,
  first: { width: number; height: number; steps: number; prompt: string; negative: string; sampler: string },
  maxPixels: number,
): ResolvedHires | undefined {
  if (body.enable_hr !== true) return undefined;
  const upscaler = body.hr_upscaler ?? DEFAULT_HIRES_UPSCALER;
  if (!HIRES_UPSCALERS.includes(upscaler)) {
    throw invalid("hr_upscaler", `could not find upscaler named ${upscaler}; available: ${HIRES_UPSCALERS.join(", ")}`);
  }
  const denoising = body.denoising_strength ?? DEFAULT_HIRES_DENOISING;
  if (!(denoising > 0)) throw invalid("denoising_strength", "the hires fix needs a denoising_strength above 0");

  let width = first.width;
  let height = first.height;
  let toX: number;
  let toY: number;
  let cropX = 0;
  let cropY = 0;
  const extra: [string, string | number][] = [];
  const fw = body.firstphase_width ?? 0;
  const fh = body.firstphase_height ?? 0;
  const rx = body.hr_resize_x ?? 0;
  const ry = body.hr_resize_y ?? 0;
  const scale = body.hr_scale ?? 2;
  // Hires sampler, prompt and negative prompt come first among the extra parameters.
  // "Use same sampler" (the web UI's choice, which its API does not translate) is the first pass's sampler.
  const hrSampler = body.hr_sampler_name === "Use same sampler" ? undefined : body.hr_sampler_name;
  const sampler = hrSampler && hrSampler !== first.sampler ? hrSampler : undefined;
  if (sampler) extra.push(["Hires sampler", sampler]);
  const hrPrompt = body.hr_prompt || first.prompt;
  const hrNegative = body.hr_negative_prompt || first.negative;
  if (hrPrompt !== first.prompt) extra.push(["Hires prompt", hrPrompt]);
  if (hrNegative !== first.negative) extra.push(["Hires negative prompt", hrNegative]);
  if (fw !== 0 || fh !== 0) {
    // The old fields: width/height are the final size, firstphase_* the first pass's.
    if (fw < OPT_F || fh < OPT_F)
      throw invalid("firstphase_width", "firstphase_width and firstphase_height go together");
    toX = width;
    toY = height;
    width = fw;
    height = fh;
  } else {
    toX = 0;
    toY = 0;
  }
  if (rx === 0 && ry === 0) {
    extra.push(["Hires upscale", scale]);
    if (fw === 0 && fh === 0) {
      toX = Math.trunc(width * scale);
      toY = Math.trunc(height * scale);
    }
  } else {
    extra.push(["Hires resize", `${rx}x${ry}`]);
    if (ry === 0) {
      toX = rx;
      toY = Math.floor((rx * height) / width);
    } else if (rx === 0) {
      toX = Math.floor((ry * width) / height);
      toY = ry;
    } else {
      // Both: cover the box keeping the first pass's ratio, then crop to it in the latents.
      if (width / height < rx / ry) {
        toX = rx;
        toY = Math.floor((rx * height) / width);
      } else {
        toX = Math.floor((ry * width) / height);
        toY = ry;
      }
      cropX = Math.floor((toX - rx) / OPT_F);
      cropY = Math.floor((toY - ry) / OPT_F);
    }
  }
  const field = rx !== 0 || ry !== 0 ? (rx !== 0 ? "hr_resize_x" : "hr_resize_y") : "hr_scale";
  const outWidth = (Math.floor(toX / OPT_F) - cropX) * OPT_F;
  const outHeight = (Math.floor(toY / OPT_F) - cropY) * OPT_F;
  if (outWidth < OPT_F || outHeight < OPT_F) {
    throw invalid(
      field,
      `the hires fix would make a ${outWidth}x${outHeight} picture: at least ${OPT_F} pixels a side`,
    );
  }
  if (Math.floor(toX / OPT_F) * Math.floor(toY / OPT_F) * OPT_F * OPT_F > maxPixels) {
    throw invalid(field, `the hires fix would make ${toX}x${toY}: at most ${maxPixels} pixels here`);
  }
  const steps = body.hr_second_pass_steps || first.steps;
  if (body.hr_second_pass_steps) extra.push(["Hires steps", body.hr_second_pass_steps]);
  if (body.hr_upscaler !== undefined) extra.push(["Hires upscaler", body.hr_upscaler]);
  return {
    width,
    height,
    fix: {
      width: toX,
      height: toY,
      cropX: cropX * OPT_F,
      cropY: cropY * OPT_F,
      upscaler,
      steps,
      denoisingStrength: denoising,
      prompt: hrPrompt,
      negativePrompt: hrNegative,
    },
    sampler,
    outWidth,
    outHeight,
    extra,
  };
}

/** /sdapi/v1/upscalers: the pixel upscalers served (A1111's "None" and "Lanczos"; no model upscalers). */
export function upscalerList(): Record<string, unknown>[] {
  return HIRES_UPSCALERS.filter((n) => !(n in LATENT_UPSCALE_MODES)).map((name) => ({
    name,
    model_name: null,
    model_path: null,
    model_url: null,
    scale: 4,
  }));
}

/** /sdapi/v1/latent-upscale-modes: A1111's six latent modes, all served. */
export function latentUpscaleModeList(): { name: string }[] {
  return Object.keys(LATENT_UPSCALE_MODES).map((name) => ({ name }));
}

/**
 * "Hires schedule type", where A1111 writes it: its sampler sets it when the second pass runs a
 * schedule of its own (not Automatic) other than the first pass's, in the place init reserved
 * for it (after the hires prompts, before "Hires upscale" / "Hires resize").
 */
export function addHiresSchedule(extra: [string, string | number][], first: string, second: string): void {
  if (second === "Automatic" || second === first) return;
  const at = extra.findIndex(([key]) => key === "Hires upscale" || key === "Hires resize");
  extra.splice(at < 0 ? extra.length : at, 0, ["Hires schedule type", second]);
}
