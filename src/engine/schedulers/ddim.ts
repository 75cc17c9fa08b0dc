/**
 * DDIM: Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (arXiv:2010.02502),
 * deterministic (η = 0), as diffusers' DDIMScheduler (scheduling_ddim.py, v0.29.2).
 */
import { f32, roundHalfEven } from "./float.js";
import {
  addNoiseAlphaBar,
  checkStartIndex,
  checkSteps,
  leadingTimesteps,
  linspaceTimesteps,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  trailingTimesteps,
  unsupported,
} from "./scheduler.js";

export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  rescale_betas_zero_snr: false,
};

export class DDIMScheduler implements Scheduler {
  readonly name = "DDIMScheduler";
  readonly config: typeof DDIM_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly initNoiseSigma = 1.0;
  readonly order = 1;
  private readonly alphasCumprod: Float32Array;
  /** ᾱ used for the step past timestep 0. */
  private readonly finalAlphaCumprod: number;
  private readonly prediction: "epsilon" | "v_prediction" | "sample";
  private readonly stepRatio: number;

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(DDIM_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"] as const);
    unsupported(
      "thresholding",
      cfg.thresholding,
      "dynamic thresholding is not supported (it is meant for pixel-space models)",
    );
    this.alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    this.finalAlphaCumprod = cfg.set_alpha_to_one ? 1.0 : (this.alphasCumprod[0] as number);

    const n = numInferenceSteps;
    const total = cfg.num_train_timesteps;
    checkSteps(n, total);
    const spacing = oneOf("timestep_spacing", cfg.timestep_spacing, ["linspace", "leading", "trailing"] as const);
    if (spacing === "linspace") this.timesteps = linspaceTimesteps(n, total - 1).map(roundHalfEven);
    else if (spacing === "leading") this.timesteps = leadingTimesteps(n, Math.floor(total / n), cfg.steps_offset);
    else this.timesteps = trailingTimesteps(n, total, total);
    // diffusers steps back by T // n whatever the spacing.
    this.stepRatio = Math.floor(total / n);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseAlphaBar(this.alphasCumprod, t, original, noise);
  }

  startAt(stepIndex: number): void {
    checkStartIndex(this.name, stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new RangeError(`DDIMScheduler: no step ${stepIndex}`);
    const prevT = t - this.stepRatio;
    // 0-d float32 tensors in diffusers.
    const alphaProdT = this.alphasCumprod[t] as number;
    const alphaProdPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const sqrtAlpha = f32(Math.sqrt(alphaProdT));
    const sqrtBeta = f32(Math.sqrt(betaProdT));
    const sqrtAlphaPrev = f32(Math.sqrt(alphaProdPrev));
    // Eq. 12 with σ_t = 0: x_{t−1} = √ᾱ_{t−1} x̂₀ + √(1 − ᾱ_{t−1} − σ_t²) ε̂.
    const direction = f32(Math.sqrt(f32(1 - alphaProdPrev)));
    const clip = this.config.clip_sample ? this.config.clip_sample_range : Number.POSITIVE_INFINITY;

    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const x = sample[i] as number;
      const m = modelOutput[i] as number;
      let x0: number;
      let eps: number;
      if (this.prediction === "epsilon") {
        // x̂₀ = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t (eq. 12, "predicted x₀")
        x0 = f32(f32(x - f32(sqrtBeta * m)) / sqrtAlpha);
        eps = m;
      } else if (this.prediction === "sample") {
        x0 = m;
        eps = f32(f32(x - f32(sqrtAlpha * x0)) / sqrtBeta);
      } else {
        // v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022, arXiv:2202.00512, sec. 4)
        x0 = f32(f32(sqrtAlpha * x) - f32(sqrtBeta * m));
        eps = f32(f32(sqrtAlpha * m) + f32(sqrtBeta * x));
      }
      if (x0 > clip) x0 = clip;
      else if (x0 < -clip) x0 = -clip;
      out[i] = f32(sqrtAlphaPrev * x0) + f32(direction * eps);
    }
    return out;
  }
}
