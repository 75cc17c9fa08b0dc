/**
 * Latent consistency models: Luo et al. 2023, "Latent Consistency Models: Synthesizing
 * High-Resolution Images with Few-Step Inference" (arXiv:2310.04378), multistep sampling
 * (Algorithm 1 of Song et al. 2023, "Consistency Models", arXiv:2303.01469), as diffusers'
 * LCMScheduler (scheduling_lcm.py, v0.29.2).
 *
 * Each step maps x_t straight to an estimate of x₀ through the consistency function
 * f(x, t) = c_skip(t) x + c_out(t) x̂₀(x, t), then, unless it is the last step, noises that
 * estimate forward to the next timestep with fresh noise from the pipeline's generator.
 */
import { RequestError } from "../errors.js";
import { f32 } from "./float.js";
import {
  addNoiseAlphaBar,
  checkStartIndex,
  checkSteps,
  configError,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  type StepContext,
  unsupported,
} from "./scheduler.js";

export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null as unknown,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  // Kept for the config's sake: diffusers 0.29's LCMScheduler reads it nowhere; its schedule is
  // always the "leading" one below.
  timestep_spacing: "leading",
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};

/** σ_data of the consistency parameterisation (Song et al. 2023, appendix C). */
const SIGMA_DATA = 0.5;

/**
 * LCM's timesteps: the distillation schedule of `original` steps, t_k = (k + 1)·(T / original) − 1
 * (k = 0 … original − 1, the "leading" spacing the model was distilled on), taken from the top at
 * `n` evenly spaced positions floor(i · original / n).
 *
 * With `strength` < 1 (diffusers' LatentConsistencyModelImg2ImgPipeline passes it to
 * set_timesteps), only the lowest int(original · strength) distillation timesteps are kept and the
 * `n` steps are spread over them the same way: img2img starts lower and still runs `n` steps.
 */
export function lcmTimesteps(n: number, original: number, numTrain: number, strength = 1): number[] {
  const ratio = Math.floor(numTrain / original);
  // int(original_steps * strength): a float64 product, truncated.
  const kept = Math.floor(original * strength);
  const origin: number[] = [];
  for (let k = kept; k >= 1; k--) origin.push(k * ratio - 1);
  const out: number[] = [];
  // np.floor(np.linspace(0, kept, n, endpoint=False)): float64 i·(kept/n), floored.
  const step = kept / n;
  for (let i = 0; i < n; i++) out.push(origin[Math.floor(i * step)] as number);
  return out;
}

export class LCMScheduler implements Scheduler {
  readonly name = "LCMScheduler";
  readonly config: typeof LCM_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly initNoiseSigma = 1.0;
  readonly order = 1;
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly prediction: "epsilon" | "v_prediction" | "sample";

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
    /** LCM img2img's strength, applied to the schedule itself (see lcmTimesteps); default 1. */
    schedule: { strength?: number } = {},
  ) {
    const cfg = resolveConfig(LCM_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"] as const);
    unsupported(
      "thresholding",
      cfg.thresholding,
      "dynamic thresholding is not supported (it is meant for pixel-space models)",
    );
    if (!(cfg.timestep_scaling > 0)) throw configError("timestep_scaling", "must be a positive number");
    this.alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    this.finalAlphaCumprod = cfg.set_alpha_to_one ? 1.0 : (this.alphasCumprod[0] as number);

    const total = cfg.num_train_timesteps;
    const original = cfg.original_inference_steps;
    if (!Number.isInteger(original) || original < 1 || original > total) {
      throw configError(
        "original_inference_steps",
        `must be an integer from 1 to num_train_timesteps (${total}), got ${original}`,
      );
    }
    checkSteps(numInferenceSteps, total);
    if (numInferenceSteps > original) {
      // The schedule is a subset of the `original` distillation timesteps: there are no more.
      throw new RequestError(
        `LCM takes at most ${original} steps (the model's original_inference_steps), got ${numInferenceSteps}`,
        "num_inference_steps",
      );
    }
    const strength = schedule.strength ?? 1;
    if (!(strength > 0 && strength <= 1))
      throw new RequestError(`strength must be in (0, 1], got ${strength}`, "strength");
    const kept = Math.floor(original * strength);
    if (kept < numInferenceSteps) {
      // diffusers: "The combination of `original_steps x strength` ... is smaller than `num_inference_steps`".
      throw new RequestError(
        `LCM img2img at strength ${strength} keeps ${kept} of the model's ${original} distillation timesteps ` +
          `(original_inference_steps × strength), fewer than the ${numInferenceSteps} steps asked: lower the steps ` +
          `to at most ${kept} or raise the strength to at least ${numInferenceSteps / original}`,
        "strength",
      );
    }
    this.timesteps = lcmTimesteps(numInferenceSteps, original, total, strength);
  }

  /** diffusers' LCMScheduler.add_noise: the DDPM form √ᾱ_t x₀ + √(1 − ᾱ_t) ε. */
  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseAlphaBar(this.alphasCumprod, t, original, noise);
  }

  /** Each step depends only on its own index, so a late start needs no state. */
  startAt(stepIndex: number): void {
    checkStartIndex(this.name, stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  /**
   * The boundary-condition scalings c_skip(t) = σ_d² / ((s t)² + σ_d²) and
   * c_out(t) = s t / √((s t)² + σ_d²), with s = timestep_scaling, so that f(x, 0) ≈ x
   * (LCM paper, sec. 3; float32 as diffusers' tensors).
   */
  boundaryScalings(timestep: number): { cSkip: number; cOut: number } {
    const scaled = f32(timestep * this.config.timestep_scaling);
    const denom = f32(f32(scaled * scaled) + SIGMA_DATA * SIGMA_DATA);
    return { cSkip: f32((SIGMA_DATA * SIGMA_DATA) / denom), cOut: f32(scaled / f32(Math.sqrt(denom))) };
  }

  /**
   * The denoised estimate f(x_t, t) of the last `step` call: the pipeline's final latents
   * (diffusers' `step(...).denoised`; equal to the returned sample on the last step).
   */
  lastDenoised: Float32Array | undefined = undefined;

  step(
    modelOutput: Float32Array,
    stepIndex: number,
    sample: Float32Array,
    ctx: StepContext,
    shape: readonly number[],
  ): Float32Array {
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new RangeError(`${this.name}: no step ${stepIndex}`);
    const last = stepIndex === this.timesteps.length - 1;
    const prevT = last ? t : (this.timesteps[stepIndex + 1] as number);
    const alphaProdT = this.alphasCumprod[t] as number;
    const alphaProdPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const sqrtAlpha = f32(Math.sqrt(alphaProdT));
    const sqrtBeta = f32(Math.sqrt(f32(1 - alphaProdT)));
    const { cSkip, cOut } = this.boundaryScalings(t);
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Number.POSITIVE_INFINITY;

    const denoised = new Float32Array(sample.length);
    for (let i = 0; i < denoised.length; i++) {
      const x = sample[i] as number;
      const m = modelOutput[i] as number;
      let x0: number;
      // x̂₀ from the model's parameterisation (as DDIM, eq. 12; v: Salimans & Ho 2022, sec. 4).
      if (this.prediction === "epsilon") x0 = f32(f32(x - f32(sqrtBeta * m)) / sqrtAlpha);
      else if (this.prediction === "v_prediction") x0 = f32(f32(sqrtAlpha * x) - f32(sqrtBeta * m));
      else x0 = m;
      if (x0 > clip) x0 = clip;
      else if (x0 < -clip) x0 = -clip;
      denoised[i] = f32(cOut * x0) + f32(cSkip * x);
    }
    this.lastDenoised = denoised;
    if (last) return denoised;

    // Multistep consistency sampling: x_{t'} = √ᾱ_{t'} f(x_t, t) + √(1 − ᾱ_{t'}) z, one draw of the
    // latents' shape from the pipeline's generator (diffusers: randn_tensor(model_output.shape)).
    const noise = ctx.randn(shape);
    if (noise.length !== sample.length)
      throw new Error(`${this.name}: noise of ${noise.length} values for ${sample.length}`);
    const sqrtAlphaPrev = f32(Math.sqrt(alphaProdPrev));
    const sqrtBetaPrev = f32(Math.sqrt(f32(1 - alphaProdPrev)));
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      out[i] = f32(sqrtAlphaPrev * (denoised[i] as number)) + f32(sqrtBetaPrev * (noise[i] as number));
    }
    return out;
  }
}
