/**
 * A1111's infotext: what its PNGs and `info.infotexts` say of a generation.
 */
import type { ModelAdapter } from "../models/model.js";
import { modelName, shortHash } from "./checkpoints.js";

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
  const pairs = [
    `Steps: ${p.steps}`,
    `Sampler: ${p.sampler}`,
    `Schedule type: ${p.schedule}`,
    `CFG scale: ${p.cfg}`,
    `Seed: ${p.seed}`,
    `Size: ${p.width}x${p.height}`,
    `Model hash: ${shortHash(p.model)}`,
    `Model: ${modelName(p.model)}`,
    ...(p.denoising === undefined || p.denoising === null ? [] : [`Denoising strength: ${p.denoising}`]),
    ...(p.clipSkip !== 1 ? [`Clip skip: ${p.clipSkip}`] : []),
    ...p.extra.map(([k, v]) => `${k}: ${typeof v === "string" && /[,:\n"]/.test(v) ? JSON.stringify(v) : v}`),
    `Version: sdserve ${p.version}`,
  ];
  return `${p.prompt}${p.negative ? `\nNegative prompt: ${p.negative}` : ""}\n${pairs.join(", ")}`;
}
