/**
 * A1111's sampler and schedule type names, and which Replicate scheduler of a model's input each
 * pair is: how a txt2img call's sampler_name / scheduler (and hr_sampler_name) are resolved.
 */

import type { ModelAdapter } from "../models/model.js";
import type { JsonSchema } from "../schemas/json-schema.js";
import { httpException, invalid } from "./errors.js";

/**
 * A1111 samplers (with their schedule type) and the scheduler of a model's Replicate input each
 * one is: engine/schedulers/index.ts builds the same diffusers class and config for both names.
 * A pair is offered where a served model's input lists its scheduler (stability-ai/stable-diffusion
 * lists six; models with more, such as KarrasDPM or LCM, offer more).
 */
export const SAMPLER_TABLE: readonly { sampler: string; schedule: "Automatic" | "Karras"; replicate: string }[] = [
  { sampler: "Euler", schedule: "Automatic", replicate: "K_EULER" },
  { sampler: "Euler a", schedule: "Automatic", replicate: "K_EULER_ANCESTRAL" },
  { sampler: "DPM++ 2M", schedule: "Automatic", replicate: "DPMSolverMultistep" },
  { sampler: "DPM++ 2M", schedule: "Karras", replicate: "KarrasDPM" },
  { sampler: "LMS", schedule: "Automatic", replicate: "KLMS" },
  { sampler: "Heun", schedule: "Automatic", replicate: "HeunDiscrete" },
  { sampler: "DDIM", schedule: "Automatic", replicate: "DDIM" },
  { sampler: "PLMS", schedule: "Automatic", replicate: "PNDM" },
  { sampler: "UniPC", schedule: "Automatic", replicate: "UniPCMultistep" },
  { sampler: "LCM", schedule: "Automatic", replicate: "LCM" },
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

/** The sampler and schedule of a request, as A1111 resolves them ("DPM++ 2M Karras" is sampler + schedule). */
export function resolveSampler(
  samplerName: string | null,
  scheduler: string | null,
  field?: string,
): { sampler: string; schedule: string; replicate: string } {
  let sampler = (samplerName ?? DEFAULT_SAMPLER).trim();
  let schedule = (scheduler ?? "Automatic").trim();
  // "DPM++ 2M Karras": the sampler and schedule type in one name, as A1111 before 1.9 named them.
  for (const suffix of SCHEDULE_SUFFIXES) {
    if (sampler.toLowerCase().endsWith(suffix.toLowerCase())) {
      sampler = sampler.slice(0, -suffix.length);
      schedule = suffix.trim();
    }
  }
  const rows = SAMPLER_TABLE.filter((r) => r.sampler.toLowerCase() === sampler.toLowerCase());
  // A1111 answers an unknown sampler_name with 404; an unknown hr_sampler_name is a field at fault.
  if (rows.length === 0) {
    if (field) throw invalid(field, `sampler ${JSON.stringify(sampler)} not found`);
    throw httpException(404, "Sampler not found");
  }
  const known = KNOWN_SCHEDULES.find((k) => k.toLowerCase() === schedule.toLowerCase()) ?? "Automatic";
  const row = rows.find((r) => r.schedule === known);
  if (!row) {
    throw invalid("scheduler", `schedule type ${known} is not available for ${rows[0]?.sampler} here; use Automatic`);
  }
  return { sampler: row.sampler, schedule: row.schedule, replicate: row.replicate };
}
