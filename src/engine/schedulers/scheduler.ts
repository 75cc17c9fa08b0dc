/**
 * What every scheduler shares: the interface the pipeline drives, reading a diffusers
 * `scheduler_config.json`, the noise schedule (betas, alphas_cumprod, sigmas), the timestep
 * spacings, and Karras sigmas.
 *
 * The reference is diffusers 0.29.2 (src/diffusers/schedulers/scheduling_*.py). Numbers are
 * computed the way diffusers computes them (torch float32 tensors, numpy float64), see float.ts.
 */
import { ModelError, RequestError } from "../errors.js";
import { cumprodF32, f32, numpyArange, numpyLinspace, numpyLogF32, roundHalfEven, torchLinspaceF32 } from "./float.js";

/** Noise for ancestral / SDE schedulers, drawn from the pipeline's torch-compatible generator. */
export interface StepContext {
  randn(shape: readonly number[]): Float32Array;
}

/**
 * A scheduler after diffusers' `set_timesteps(numInferenceSteps)`.
 *
 * The pipeline runs, for every index `i` of `timesteps` (there can be more of them than inference
 * steps: PNDM repeats one, Heun has 2n-1):
 * ```
 * latents *= initNoiseSigma             // img2img: latents = addNoise(image, noise, begin); startAt(begin)
 * for i in begin until timesteps.length:   // begin = 0 for text-to-image
 *   x = scaleModelInput(latents, i)          // same array back when the scheduler does not scale
 *   out = guidance(UNet(x, timesteps[i]))
 *   latents = step(out, i, latents, ctx, shape)
 * ```
 * Steps are addressed by index, not by timestep value: diffusers finds the index from the
 * timestep, which gives the same index here because every schedule's first timestep is unique.
 * Multistep schedulers keep history, so `step` must be called for i = 0, 1, 2, ... in order,
 * once each, on a fresh scheduler per generation.
 */
export interface Scheduler {
  /** The diffusers class this reproduces, e.g. "EulerDiscreteScheduler". */
  readonly name: string;
  /** The effective config (diffusers' keys): the class defaults overlaid with the model's file. */
  readonly config: Readonly<Record<string, unknown>>;
  /** What `scheduler.timesteps` holds: integers for DDIM/PNDM/DPM/UniPC, float values for the k-diffusion family. */
  readonly timesteps: readonly number[];
  /** `scheduler.sigmas` where the class has them (float32 values, ending with the final sigma). */
  readonly sigmas?: readonly number[];
  /** The pipeline multiplies the initial noise by this. */
  readonly initNoiseSigma: number;
  /** diffusers' `scheduler.order`: model calls per step (Heun 2, others 1). */
  readonly order: number;
  /**
   * diffusers' `add_noise(original, noise, timesteps[stepIndex])`: `original` brought to the
   * noise level of step `stepIndex` (img2img's starting latents, inpainting's re-noised known
   * region). New arrays; float32 as diffusers.
   */
  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array;
  /**
   * diffusers' `set_begin_index(stepIndex)` (or, for classes without it, slicing `timesteps`):
   * the run starts at `timesteps[stepIndex]` and steps from there in order. Call once, before
   * the first step.
   */
  startAt(stepIndex: number): void;
  /**
   * Schedulers that estimate the clean sample at every step (LCM) keep the last estimate here:
   * diffusers' `step(...).denoised`, what a preview should show.
   */
  readonly lastDenoised?: Float32Array;
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  /** Returns prev_sample. `shape` is the latents' shape (for noise draws). */
  step(
    modelOutput: Float32Array,
    stepIndex: number,
    sample: Float32Array,
    ctx: StepContext,
    shape: readonly number[],
  ): Float32Array;
}

/**
 * The keys of a diffusers scheduler config. All optional; keys may also be given in camelCase
 * (`numTrainTimesteps`). Each class reads only its own keys and takes its own defaults for the
 * rest, as diffusers' `Class.from_config(config)` does.
 */
export interface SchedulerConfig {
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: string;
  trained_betas?: number[] | null;
  prediction_type?: string;
  timestep_spacing?: string;
  steps_offset?: number;
  set_alpha_to_one?: boolean;
  clip_sample?: boolean;
  clip_sample_range?: number;
  thresholding?: boolean;
  dynamic_thresholding_ratio?: number;
  sample_max_value?: number;
  rescale_betas_zero_snr?: boolean;
  skip_prk_steps?: boolean;
  use_karras_sigmas?: boolean;
  sigma_min?: number | null;
  sigma_max?: number | null;
  interpolation_type?: string;
  timestep_type?: string;
  final_sigmas_type?: string;
  solver_order?: number;
  algorithm_type?: string;
  solver_type?: string;
  lower_order_final?: boolean;
  euler_at_final?: boolean;
  use_lu_lambdas?: boolean;
  lambda_min_clipped?: number;
  variance_type?: string | null;
  predict_x0?: boolean;
  disable_corrector?: number[];
  solver_p?: null;
  [key: string]: unknown;
}

export const CONFIG_FILE = "scheduler/scheduler_config.json";

/** `numTrainTimesteps` → `num_train_timesteps`; snake_case keys pass unchanged. */
function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function configError(field: string, message: string): ModelError {
  return new ModelError(message, { file: CONFIG_FILE, field });
}

/**
 * The config a diffusers class ends up with after `Class.from_config(modelConfig, **overrides)`:
 * for each of the class's own keys, the override, else the model file's value, else the class
 * default. Keys of other classes are ignored. Values are checked against the default's type
 * (a `null` default accepts anything; the scheduler checks those itself).
 */
export function resolveConfig<D extends Record<string, unknown>>(
  defaults: D,
  modelConfig: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
): D {
  const given: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(modelConfig)) if (value !== undefined) given[snakeCase(key)] = value;
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) given[snakeCase(key)] = value;
  const out: Record<string, unknown> = {};
  for (const [key, fallback] of Object.entries(defaults)) {
    if (!(key in given)) {
      out[key] = fallback;
      continue;
    }
    let value = given[key];
    // A `null` in the file means Python's None: falsy for flags.
    if (value === null && typeof fallback === "boolean") value = false;
    if (fallback !== null && value !== null && typeof value !== typeof fallback) {
      throw configError(key, `expected a ${typeof fallback}, got ${JSON.stringify(value)}`);
    }
    if (fallback !== null && value === null) throw configError(key, "must not be null");
    if (typeof value === "number" && Number.isNaN(value)) throw configError(key, "must be a number");
    out[key] = value;
  }
  return out as D;
}

/** Throws a ModelError naming `field` unless `value` is one of `allowed`. */
export function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[], what = "supported"): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw configError(field, `${JSON.stringify(value)} is not ${what}; expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/** Throws a ModelError naming `field` when an option this engine does not implement is switched on. */
export function unsupported(field: string, on: boolean, why = "is not supported by this engine"): void {
  if (on) throw configError(field, why);
}

/** The request's number of steps: a RequestError (field numInferenceSteps, as GenerateRequest names it). */
export function checkSteps(numInferenceSteps: number, numTrainTimesteps: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
    throw new RequestError(
      `number of inference steps must be a positive integer, got ${numInferenceSteps}`,
      "numInferenceSteps",
    );
  }
  if (numInferenceSteps > numTrainTimesteps) {
    throw new RequestError(
      `number of inference steps (${numInferenceSteps}) cannot exceed the model's num_train_timesteps (${numTrainTimesteps})`,
      "numInferenceSteps",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Noise schedule

export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: unknown;
  rescale_betas_zero_snr?: boolean;
}

export interface NoiseSchedule {
  betas: Float32Array;
  /** ᾱ_t = ∏_{s≤t} (1 − β_s), float32 as torch.cumprod stores it. */
  alphasCumprod: Float32Array;
}

/**
 * `betas_for_alpha_bar` (Nichol & Dhariwal 2021, "Improved DDPM", arXiv:2102.09672, eq. 17):
 * β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), 0.999), in Python floats, stored as float32.
 * "cosine": ᾱ(t) = cos²((t + 0.008) / 1.008 · π/2); "exp": ᾱ(t) = exp(−12 t).
 */
function betasForAlphaBar(n: number, transform: "cosine" | "exp"): Float32Array {
  const alphaBar =
    transform === "cosine"
      ? (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2
      : (t: number) => Math.exp(t * -12.0);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
  return out;
}

/**
 * Rescale to zero terminal SNR: Lin et al. 2023, "Common Diffusion Noise Schedules and Sample
 * Steps are Flawed" (arXiv:2305.08891), Algorithm 1; torch float32 like diffusers'
 * `rescale_zero_terminal_snr`.
 */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const sqrtAbar = cumprodF32(betas.map((b) => f32(1 - b))).map(Math.sqrt);
  const first = sqrtAbar[0] as number;
  const last = sqrtAbar[n - 1] as number;
  const scale = f32(first / f32(first - last));
  const abar = sqrtAbar.map((s) => {
    const shifted = f32(f32(s - last) * scale);
    return f32(shifted * shifted);
  });
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const alpha = i === 0 ? (abar[0] as number) : f32((abar[i] as number) / (abar[i - 1] as number));
    out[i] = f32(1 - alpha);
  }
  return out;
}

/**
 * betas and alphas_cumprod as every diffusers scheduler builds them in `__init__`:
 * linear: torch.linspace(β_start, β_end, T) (Ho et al. 2020);
 * scaled_linear: torch.linspace(√β_start, √β_end, T)² (latent diffusion, Rombach et al. 2022);
 * squaredcos_cap_v2: betas_for_alpha_bar (Nichol & Dhariwal 2021); exp (Heun only);
 * or `trained_betas` as given.
 */
export function noiseSchedule(cfg: BetaConfig, schedules: readonly string[] = BETA_SCHEDULES): NoiseSchedule {
  const n = cfg.num_train_timesteps;
  if (!Number.isInteger(n) || n < 2) throw configError("num_train_timesteps", `must be an integer >= 2, got ${n}`);
  let betas: Float32Array;
  if (cfg.trained_betas !== null && cfg.trained_betas !== undefined) {
    const tb = cfg.trained_betas;
    if (!Array.isArray(tb) || tb.length !== n || tb.some((b) => typeof b !== "number")) {
      throw configError("trained_betas", `must be a list of num_train_timesteps (${n}) numbers`);
    }
    betas = Float32Array.from(tb as number[]);
  } else {
    const schedule = oneOf("beta_schedule", cfg.beta_schedule, schedules);
    if (schedule === "linear") betas = torchLinspaceF32(cfg.beta_start, cfg.beta_end, n);
    else if (schedule === "scaled_linear") {
      betas = torchLinspaceF32(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, n).map((b) => f32(b * b));
    } else if (schedule === "squaredcos_cap_v2") betas = betasForAlphaBar(n, "cosine");
    else betas = betasForAlphaBar(n, "exp");
  }
  if (cfg.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprodF32(betas.map((b) => f32(1 - b)));
  return { betas, alphasCumprod };
}

export const BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"] as const;

/** σ_t = √((1 − ᾱ_t) / ᾱ_t), the variance-exploding noise level of each training timestep (float32). */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(f32(f32(1 - a) / a)));
}

// ---------------------------------------------------------------------------------------------
// Timestep spacing: Table 2 of Lin et al. 2023 (arXiv:2305.08891). All descending, float64.

/** "linspace": np.linspace(0, last, n), reversed (not rounded; callers round or cast). */
export function linspaceTimesteps(n: number, last: number): number[] {
  return numpyLinspace(0, last, n).reverse();
}

/** "leading": np.arange(n) * ratio, reversed, + steps_offset. */
export function leadingTimesteps(n: number, ratio: number, offset: number): number[] {
  const out: number[] = [];
  for (let i = n - 1; i >= 0; i--) out.push(i * ratio + offset);
  return out;
}

/** "trailing": np.round(np.arange(from, 0, -numTrain / n)) - 1. */
export function trailingTimesteps(n: number, numTrain: number, from: number): number[] {
  return numpyArange(from, 0, -numTrain / n).map((t) => roundHalfEven(t) - 1);
}

export type TimestepSpacing = "linspace" | "leading" | "trailing";

/**
 * The timesteps of the σ-based schedulers (Euler, Euler a, Heun, LMS): "linspace" keeps the
 * fractional float32 values, "leading" and "trailing" are whole numbers.
 */
export function sigmaSchedulerTimesteps(
  cfg: { timestep_spacing: unknown; num_train_timesteps: number; steps_offset: number },
  n: number,
): { spacing: TimestepSpacing; timesteps: number[] } {
  const total = cfg.num_train_timesteps;
  checkSteps(n, total);
  const spacing = oneOf("timestep_spacing", cfg.timestep_spacing, ["linspace", "leading", "trailing"] as const);
  let timesteps: number[];
  if (spacing === "linspace") timesteps = linspaceTimesteps(n, total - 1).map(f32);
  else if (spacing === "leading") timesteps = leadingTimesteps(n, Math.floor(total / n), cfg.steps_offset);
  else timesteps = trailingTimesteps(n, total, total);
  return { spacing, timesteps };
}

/**
 * init_noise_sigma of the σ-based schedulers: σ_max, except for "leading" schedules, which
 * do not start at the top, so the starting noise has variance σ_max² + 1.
 */
export function sigmaInitNoise(spacing: TimestepSpacing, sigmas: readonly number[]): number {
  const maxSigma = Math.max(...sigmas);
  return spacing === "leading" ? f32(Math.sqrt(f32(f32(maxSigma * maxSigma) + 1))) : maxSigma;
}

// ---------------------------------------------------------------------------------------------
// Karras sigmas and the sigma → timestep map

/**
 * Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"
 * (arXiv:2206.00364), eq. 5 with ρ = 7: σ_i = (σ_max^(1/ρ) + i/(n−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,
 * float64 as diffusers' numpy code (`_convert_to_karras`).
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7.0;
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return numpyLinspace(0, 1, n).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** `np.log` of the float32 training sigmas (numpy's own float32 log). */
export function logSigmasF32(sigmas: Float32Array): Float32Array {
  return sigmas.map(numpyLogF32);
}

/**
 * The fractional training timestep whose sigma is `sigma`: linear interpolation in log σ between
 * the two neighbouring training timesteps (diffusers' `_sigma_to_t`, after k-diffusion).
 * numpy 1.24 (the reference) does most of this in float32, because a float64 scalar meeting a
 * float32 array is demoted to float32; only the final blend of the indices is float64.
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = f32(Math.log(Math.max(sigma, 1e-10)));
  const n = logSigmas.length;
  // Last index whose log σ is ≤ log σ (the argmax of the cumulative count); 0 when there is none.
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigma >= (logSigmas[i] as number)) low = i;
  low = Math.min(low, n - 2);
  const high = low + 1;
  const lo = logSigmas[low] as number;
  const hi = logSigmas[high] as number;
  let w = f32(f32(lo - logSigma) / f32(lo - hi));
  w = Math.min(Math.max(w, 0), 1);
  return f32(1 - w) * low + w * high;
}

// ---------------------------------------------------------------------------------------------
// The k-diffusion parameterisation shared by Euler, Euler ancestral, LMS and Heun

/**
 * x / √(σ² + 1): the UNet was trained on variance-preserving inputs, the k-diffusion samplers
 * keep the variance-exploding x = x₀ + σ ε (Karras et al. 2022, Table 1, c_in). float32.
 */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const denom = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const out = new Float32Array(sample.length);
  for (let i = 0; i < sample.length; i++) out[i] = (sample[i] as number) / denom;
  return out;
}

export type PredictionType = "epsilon" | "v_prediction" | "sample";

/**
 * The denoised sample x₀ from the model output at noise level σ (float32, as diffusers):
 * epsilon: x − σ ε; v_prediction: −σ/√(σ²+1) · v + x/(σ²+1) (Salimans & Ho 2022, "Progressive
 * Distillation", arXiv:2202.00512, in the σ parameterisation); sample: the output itself.
 */
export function denoisedFromSigma(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  const out = new Float32Array(sample.length);
  if (prediction === "epsilon") {
    for (let i = 0; i < out.length; i++) out[i] = (sample[i] as number) - f32(sigma * (modelOutput[i] as number));
  } else if (prediction === "v_prediction") {
    const sigma2p1 = f32(f32(sigma * sigma) + 1);
    const cOut = f32(-sigma / f32(Math.sqrt(sigma2p1)));
    for (let i = 0; i < out.length; i++) {
      out[i] = f32((modelOutput[i] as number) * cOut) + f32((sample[i] as number) / sigma2p1);
    }
  } else out.set(modelOutput);
  return out;
}

/**
 * The variance-preserving view of a noise level σ (DPM-Solver, UniPC): α_t = 1/√(σ²+1),
 * σ_t = σ α_t, λ_t = log α_t − log σ_t (diffusers' `_sigma_to_alpha_sigma_t`), float32.
 * torch takes these logs (and the solvers' exps) with SLEEF's vectorised float32 functions,
 * which can be 1 ulp off the correctly rounded values used here: DPM-Solver and UniPC steps
 * agree with diffusers to about 4e-7 relative rather than bit for bit.
 */
export function vp(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const sigmaT = f32(sigma * alpha);
  return { alpha, sigma: sigmaT, lambda: f32(f32(Math.log(alpha)) - f32(Math.log(sigmaT))) };
}

/** Guards the history that multistep schedulers keep: steps must come in order, once each. */
export class StepOrder {
  private next = 0;
  constructor(private readonly name: string) {}
  /** The first step is `stepIndex` (set_begin_index); only before any step. */
  startAt(stepIndex: number, count: number): void {
    checkStartIndex(this.name, stepIndex, count);
    if (this.next !== 0 && this.next !== stepIndex) throw new Error(`${this.name}: startAt after the first step`);
    this.next = stepIndex;
  }
  check(stepIndex: number, count: number): void {
    if (stepIndex !== this.next || stepIndex >= count) {
      throw new Error(
        `${this.name}: step ${stepIndex} called, expected step ${this.next} of ${count} (steps run in order, once each)`,
      );
    }
    this.next++;
  }
}

/**
 * `sigma_min` / `sigma_max` for Karras sigmas in the classes that do not declare them (DPM-Solver,
 * UniPC, Heun): diffusers uses them whenever the config holds the key at all, e.g. carried over
 * from another class's file (`hasattr(self.config, "sigma_min")`).
 */
export function hiddenSigmaBound(modelConfig: Record<string, unknown>, key: "sigma_min" | "sigma_max"): number | null {
  const camel = key === "sigma_min" ? "sigmaMin" : "sigmaMax";
  const value = modelConfig[key] ?? modelConfig[camel] ?? null;
  if (value !== null && typeof value !== "number") throw configError(key, "must be a number or null");
  return value;
}

/** Throws unless `stepIndex` is a step of a schedule of `count` timesteps. */
export function checkStartIndex(name: string, stepIndex: number, count: number): void {
  if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= count) {
    throw new RangeError(`${name}: cannot start at step ${stepIndex} of ${count}`);
  }
}

function checkNoise(original: Float32Array, noise: Float32Array): void {
  if (noise.length !== original.length)
    throw new Error(`add_noise: ${noise.length} noise values for ${original.length}`);
}

/**
 * add_noise of the ᾱ-indexed schedulers (DDIM, PNDM, DDPM): √ᾱ_t x₀ + √(1 − ᾱ_t) ε, with ᾱ_t
 * the float32 training value at timestep t (torch's `** 0.5` on float32 is a correctly rounded sqrt).
 */
export function addNoiseAlphaBar(
  alphasCumprod: Float32Array,
  t: number,
  original: Float32Array,
  noise: Float32Array,
): Float32Array {
  checkNoise(original, noise);
  const abar = alphasCumprod[t];
  if (abar === undefined) throw new RangeError(`add_noise: no training timestep ${t}`);
  const a = f32(Math.sqrt(abar));
  const b = f32(Math.sqrt(f32(1 - abar)));
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(a * (original[i] as number)) + f32(b * (noise[i] as number));
  return out;
}

/** add_noise of the k-diffusion family (Euler, Euler a, Heun, LMS): x₀ + σ ε (variance exploding). */
export function addNoiseSigma(sigma: number, original: Float32Array, noise: Float32Array): Float32Array {
  checkNoise(original, noise);
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) out[i] = (original[i] as number) + f32((noise[i] as number) * sigma);
  return out;
}

/** add_noise of DPM-Solver and UniPC: α_t x₀ + σ_t ε with α_t, σ_t the variance-preserving view of σ. */
export function addNoiseVp(sigma: number, original: Float32Array, noise: Float32Array): Float32Array {
  checkNoise(original, noise);
  const { alpha, sigma: sigmaT } = vp(sigma);
  const out = new Float32Array(original.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = f32(alpha * (original[i] as number)) + f32(sigmaT * (noise[i] as number));
  }
  return out;
}
