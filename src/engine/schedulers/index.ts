/**
 * Scheduler names → diffusers scheduler classes.
 *
 * Three naming schemes are accepted (matched without regard to case), so users of Replicate,
 * diffusers and AUTOMATIC1111 can each say what they mean:
 * - Replicate's (stability-ai/stable-diffusion and stable-diffusion-xl): `DDIM`, `K_EULER`,
 *   `K_EULER_ANCESTRAL`, `DPMSolverMultistep`, `PNDM`, `KLMS`, `HeunDiscrete`, `UniPCMultistep`,
 *   `KarrasDPM` (DPM-Solver++ with Karras sigmas), `LCM` (latent consistency models);
 * - diffusers' class names (`EulerDiscreteScheduler`, ...), with `opts.karras` for `use_karras_sigmas`;
 * - AUTOMATIC1111's sampler names (`Euler a`, `DPM++ 2M Karras`, `PLMS`, ...).
 * Each is built as diffusers' `Class.from_config(modelSchedulerConfig, **overrides)` builds it.
 */
import { RequestError } from "../errors.js";
import { DDIMScheduler } from "./ddim.js";
import { DPMSolverMultistepScheduler } from "./dpm-solver-multistep.js";
import { EulerDiscreteScheduler } from "./euler.js";
import { EulerAncestralDiscreteScheduler } from "./euler-ancestral.js";
import { HeunDiscreteScheduler } from "./heun.js";
import { LCMScheduler } from "./lcm.js";
import { LMSDiscreteScheduler } from "./lms.js";
import { PNDMScheduler } from "./pndm.js";
import type { Scheduler } from "./scheduler.js";
import { UniPCMultistepScheduler } from "./unipc.js";

export { DDIMScheduler } from "./ddim.js";
export { DPMSolverMultistepScheduler } from "./dpm-solver-multistep.js";
export { EulerDiscreteScheduler } from "./euler.js";
export { EulerAncestralDiscreteScheduler } from "./euler-ancestral.js";
export { HeunDiscreteScheduler } from "./heun.js";
export { LCMScheduler } from "./lcm.js";
export { LMSDiscreteScheduler } from "./lms.js";
export { PNDMScheduler } from "./pndm.js";
export type { Scheduler, SchedulerConfig, StepContext } from "./scheduler.js";
export { noiseSchedule } from "./scheduler.js";
export { UniPCMultistepScheduler } from "./unipc.js";

type SchedulerClass = new (
  modelConfig: Record<string, unknown>,
  numInferenceSteps: number,
  overrides?: Record<string, unknown>,
) => Scheduler;

const CLASSES = {
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  LMSDiscreteScheduler,
  HeunDiscreteScheduler,
  UniPCMultistepScheduler,
  LCMScheduler,
} satisfies Record<string, SchedulerClass>;

export type SchedulerClassName = keyof typeof CLASSES;

/** The classes that take `use_karras_sigmas`. */
const KARRAS_CAPABLE: ReadonlySet<SchedulerClassName> = new Set([
  "EulerDiscreteScheduler",
  "DPMSolverMultistepScheduler",
  "LMSDiscreteScheduler",
  "HeunDiscreteScheduler",
  "UniPCMultistepScheduler",
]);

export interface SchedulerChoice {
  className: SchedulerClassName;
  /** Passed to from_config on top of the model's file, e.g. `{ use_karras_sigmas: true }`. */
  overrides: Record<string, unknown>;
}

const karras = { use_karras_sigmas: true };
const dpmpp2m = { algorithm_type: "dpmsolver++", solver_order: 2 };
const dpmpp2mSde = { algorithm_type: "sde-dpmsolver++", solver_order: 2 };

/** Replicate's scheduler names. */
export const REPLICATE_SCHEDULERS: Readonly<Record<string, SchedulerChoice>> = {
  DDIM: { className: "DDIMScheduler", overrides: {} },
  K_EULER: { className: "EulerDiscreteScheduler", overrides: {} },
  K_EULER_ANCESTRAL: { className: "EulerAncestralDiscreteScheduler", overrides: {} },
  DPMSolverMultistep: { className: "DPMSolverMultistepScheduler", overrides: {} },
  PNDM: { className: "PNDMScheduler", overrides: {} },
  KLMS: { className: "LMSDiscreteScheduler", overrides: {} },
  HeunDiscrete: { className: "HeunDiscreteScheduler", overrides: {} },
  UniPCMultistep: { className: "UniPCMultistepScheduler", overrides: {} },
  KarrasDPM: { className: "DPMSolverMultistepScheduler", overrides: karras },
  LCM: { className: "LCMScheduler", overrides: {} },
};

/** diffusers' class names. */
export const DIFFUSERS_SCHEDULERS: Readonly<Record<string, SchedulerChoice>> = Object.fromEntries(
  Object.keys(CLASSES).map((className) => [className, { className: className as SchedulerClassName, overrides: {} }]),
);

/** AUTOMATIC1111's sampler names and the diffusers equivalents (as diffusers' documentation maps them). */
export const A1111_SCHEDULERS: Readonly<Record<string, SchedulerChoice>> = {
  "Euler a": { className: "EulerAncestralDiscreteScheduler", overrides: {} },
  Euler: { className: "EulerDiscreteScheduler", overrides: {} },
  LMS: { className: "LMSDiscreteScheduler", overrides: {} },
  "LMS Karras": { className: "LMSDiscreteScheduler", overrides: karras },
  Heun: { className: "HeunDiscreteScheduler", overrides: {} },
  "DPM++ 2M": { className: "DPMSolverMultistepScheduler", overrides: dpmpp2m },
  "DPM++ 2M Karras": { className: "DPMSolverMultistepScheduler", overrides: { ...dpmpp2m, ...karras } },
  "DPM++ 2M SDE": { className: "DPMSolverMultistepScheduler", overrides: dpmpp2mSde },
  "DPM++ 2M SDE Karras": { className: "DPMSolverMultistepScheduler", overrides: { ...dpmpp2mSde, ...karras } },
  DDIM: { className: "DDIMScheduler", overrides: {} },
  PLMS: { className: "PNDMScheduler", overrides: { skip_prk_steps: true } },
  UniPC: { className: "UniPCMultistepScheduler", overrides: {} },
  LCM: { className: "LCMScheduler", overrides: {} },
};

/** Every accepted name, Replicate's first, then diffusers' classes, then AUTOMATIC1111's. */
export const SCHEDULER_NAMES: readonly string[] = [
  ...new Set([
    ...Object.keys(REPLICATE_SCHEDULERS),
    ...Object.keys(DIFFUSERS_SCHEDULERS),
    ...Object.keys(A1111_SCHEDULERS),
  ]),
];

const BY_LOWER_NAME = new Map<string, SchedulerChoice>();
for (const table of [A1111_SCHEDULERS, DIFFUSERS_SCHEDULERS, REPLICATE_SCHEDULERS]) {
  for (const [name, choice] of Object.entries(table)) BY_LOWER_NAME.set(name.toLowerCase(), choice);
}

/** The class and from_config overrides a name stands for; a RequestError listing the names if unknown. */
export function resolveSchedulerName(name: string): SchedulerChoice {
  const choice = BY_LOWER_NAME.get(name.trim().toLowerCase());
  if (!choice) {
    throw new RequestError(
      `unknown scheduler ${JSON.stringify(name)}; accepted: ${SCHEDULER_NAMES.join(", ")}`,
      "scheduler",
    );
  }
  return choice;
}

/**
 * Builds the scheduler `name` stands for from the model's `scheduler/scheduler_config.json`
 * (parsed), set up for `numInferenceSteps`. `opts.karras` asks for Karras sigmas
 * (`use_karras_sigmas=True`); `opts.lcmStrength` sets up LCMScheduler for LCM img2img (its
 * strength applied to the schedule, as LatentConsistencyModelImg2ImgPipeline does). Unsupported
 * config values raise a ModelError naming the field;
 * what the request asks (the name, Karras sigmas, the number of steps) a RequestError.
 */
export function createScheduler(
  name: string,
  modelSchedulerConfig: Record<string, unknown>,
  numInferenceSteps: number,
  opts: { karras?: boolean; lcmStrength?: number } = {},
): Scheduler {
  const { className, overrides } = resolveSchedulerName(name);
  const all = { ...overrides };
  if (opts.karras) {
    if (!KARRAS_CAPABLE.has(className)) {
      throw new RequestError(`Karras sigmas are not available for ${className}`, "scheduler");
    }
    all.use_karras_sigmas = true;
  }
  if (opts.lcmStrength !== undefined) {
    if (className !== "LCMScheduler") throw new Error(`lcmStrength is for LCMScheduler, not ${className}`);
    return new LCMScheduler(modelSchedulerConfig, numInferenceSteps, all, { strength: opts.lcmStrength });
  }
  const Class: SchedulerClass = CLASSES[className];
  return new Class(modelSchedulerConfig, numInferenceSteps, all);
}
