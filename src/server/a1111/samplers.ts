/**
 * A1111's sampler and schedule type names, and which Replicate scheduler of a model's input each
 * pair is: how a txt2img call's sampler_name / scheduler (and hr_sampler_name) are resolved.
 */

import type { ModelAdapter } from "../models/model.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import { httpException, invalid } from "./errors.js";

/**
 * A1111 samplers and the scheduler of a model's Replicate input each one runs as:
 * engine/schedulers/index.ts builds the same diffusers class for both names. A sampler is offered
 * where a served model's input lists its scheduler (stability-ai/stable-diffusion lists six;
 * models with more, such as UniPC or LCM, offer more). `karras`: whether the Karras schedule type
 * applies (the engine's Karras sigmas), and whether it is the sampler's own default, which
 * "Automatic" means since A1111 1.9 (DPM++ 2M: its options say scheduler "karras").
 */
export const SAMPLER_TABLE: readonly { sampler: string; replicate: string; karras: "no" | "allowed" | "default" }[] = [
  { sampler: "Euler", replicate: "K_EULER", karras: "allowed" },
  { sampler: "Euler a", replicate: "K_EULER_ANCESTRAL", karras: "no" },
  { sampler: "DPM++ 2M", replicate: "DPMSolverMultistep", karras: "default" },
  { sampler: "LMS", replicate: "KLMS", karras: "allowed" },
  { sampler: "Heun", replicate: "HeunDiscrete", karras: "allowed" },
  { sampler: "DDIM", replicate: "DDIM", karras: "no" },
  { sampler: "PLMS", replicate: "PNDM", karras: "no" },
  { sampler: "UniPC", replicate: "UniPCMultistep", karras: "allowed" },
  { sampler: "LCM", replicate: "LCM", karras: "no" },
];
/** A1111's default (sampler_index's default in models.py). */
export const DEFAULT_SAMPLER = "Euler";
/** A1111's schedule types; one it does not know means Automatic, as there. */
export const KNOWN_SCHEDULES = [
  "Automatic",
  "Uniform",
  "Karras",
  "Exponential",
  "Polyexponential",
  "SGM Uniform",
  "KL Optimal",
];
export const SCHEDULE_SUFFIXES = [" Karras", " Exponential"];

/** The schedulers a model's input takes (its scheduler enum). */
export function schedulersOf(m: ModelAdapter): string[] {
  return ((m.schemas["scheduler"] as JsonSchema | undefined)?.enum ?? []) as string[];
}

/**
 * The sampler and schedule of a request, as A1111 resolves them ("DPM++ 2M Karras" is sampler +
 * schedule): the model's scheduler to run, and whether with Karras sigmas.
 */
export function resolveSampler(
  samplerName: string | null,
  scheduler: string | null,
  field?: string,
): { sampler: string; schedule: string; replicate: string; karras: boolean } {
  let sampler = (samplerName ?? DEFAULT_SAMPLER).trim();
  let schedule = (scheduler ?? "Automatic").trim();
  // "DPM++ 2M Karras": the sampler and schedule type in one name, as A1111 before 1.9 named them.
  for (const suffix of SCHEDULE_SUFFIXES) {
    if (sampler.toLowerCase().endsWith(suffix.toLowerCase())) {
      sampler = sampler.slice(0, -suffix.length);
      schedule = suffix.trim();
    }
  }
  const row = SAMPLER_TABLE.find((r) => r.sampler.toLowerCase() === sampler.toLowerCase());
  // A1111 answers an unknown sampler_name with 404; an unknown hr_sampler_name is a field at fault.
  if (!row) {
    if (field) throw invalid(field, `sampler ${JSON.stringify(sampler)} not found`);
    throw httpException(404, "Sampler not found");
  }
  const known = KNOWN_SCHEDULES.find((k) => k.toLowerCase() === schedule.toLowerCase()) ?? "Automatic";
  if (known === "Automatic") {
    return { sampler: row.sampler, schedule: known, replicate: row.replicate, karras: row.karras === "default" };
  }
  if (known === "Karras" && row.karras !== "no") {
    // A1111's get_sampler_and_scheduler reports a sampler's own schedule as Automatic.
    const schedule = row.karras === "default" ? "Automatic" : known;
    return { sampler: row.sampler, schedule, replicate: row.replicate, karras: true };
  }
  const offered = row.karras === "no" ? "Automatic" : "Automatic or Karras";
  throw invalid("scheduler", `schedule type ${known} is not available for ${row.sampler} here; use ${offered}`);
}
