/**
 * A1111's infotext: what its PNGs and `info.infotexts` say of a generation.
 */
import type { ModelAdapter } from "../models/model.js";
import { modelName, shortHash } from "./checkpoints.js";

/** Extra parameters whose values are float fields of A1111's API model (hr_scale). */
const FLOAT_EXTRAS = new Set(["Hires upscale"]);

/** A1111's infotext: the prompt, the negative prompt, then "Key: value" pairs. */
export function infotext(p: {
  prompt: string;
  negative: string;
  steps: number;
  sampler: string;
  schedule: string;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  model: ModelAdapter;
  version: string;
  denoising?: number | null;
  clipSkip: number;
  extra: readonly (readonly [string, string | number])[];
}): string {
  const pairs: (readonly [string, string | number])[] = [
    ["Steps", p.steps],
    ["Sampler", p.sampler],
    ["Schedule type", p.schedule],
    ["CFG scale", pythonFloat(p.cfg)],
    ["Seed", p.seed],
    ["Size", `${p.width}x${p.height}`],
    ["Model hash", shortHash(p.model)],
    ["Model", modelName(p.model)],
    ...(p.denoising === undefined || p.denoising === null
      ? []
      : [["Denoising strength", pythonFloat(p.denoising)] as const]),
    ...(p.clipSkip !== 1 ? [["Clip skip", p.clipSkip] as const] : []),
    ...p.extra.map(([k, v]) => [k, FLOAT_EXTRAS.has(k) && typeof v === "number" ? pythonFloat(v) : v] as const),
    ["Version", `sdserve ${p.version}`],
  ];
  const params = pairs.map(([k, v]) => `${k}: ${quote(v)}`).join(", ");
  // create_infotext strips the whole text (an empty prompt leaves no blank first line).
  return `${p.prompt}${p.negative ? `\nNegative prompt: ${p.negative}` : ""}\n${params}`.trim();
}

/**
 * A float field as Python writes it (str(float)): the API's float fields (cfg_scale,
 * denoising_strength, hr_scale) are floats there, so 7 is written 7.0.
 */
export function pythonFloat(n: number): string {
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/**
 * A1111's quote (infotext_utils.quote): a value with a comma, a colon or a line break is written
 * as JSON (json.dumps, non-ASCII kept), any other as it is, quotes and all.
 */
export function quote(value: string | number): string | number {
  const text = String(value);
  return /[,:\n]/.test(text) ? JSON.stringify(text) : value;
}
