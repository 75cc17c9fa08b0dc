/**
 * Heun: the second-order ODE sampler of Karras et al. 2022, "Elucidating the Design Space of
 * Diffusion-Based Generative Models" (arXiv:2206.00364), Algorithm 1 (deterministic), as diffusers'
 * HeunDiscreteScheduler (scheduling_heun_discrete.py, v0.29.2).
 *
 * Each step from σ_i to σ_{i+1} takes an Euler step, evaluates the model again at the end point
 * and corrects with the average slope; the last step (to σ = 0) is a plain Euler step. diffusers
 * lays this out as 2n−1 scheduler steps over duplicated timesteps/sigmas:
 *   timesteps [t0, t1, t1, t2, t2, ..., t_{n−1}, t_{n−1}], sigmas [σ0, σ1, σ1, ..., σ_{n−1}, σ_{n−1}, 0];
 * even step indices are the first-order (Euler) halves, odd ones the corrections. The pipeline
 * just runs every index in order, one model call each.
 */
import { f32, interpOnIndexGrid } from "./float.js";
import {
  addNoiseSigma,
  denoisedFromSigma,
  hiddenSigmaBound,
  karrasSigmas,
  logSigmasF32,
  noiseSchedule,
  oneOf,
  type PredictionType,
  resolveConfig,
  type Scheduler,
  StepOrder,
  scaleBySigma,
  sigmaInitNoise,
  sigmaSchedulerTimesteps,
  sigmasFromAlphasCumprod,
  sigmaToT,
} from "./scheduler.js";

export const HEUN_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  use_karras_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: "linspace",
  steps_offset: 0,
};

export class HeunDiscreteScheduler implements Scheduler {
  readonly name = "HeunDiscreteScheduler";
  readonly config: typeof HEUN_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  readonly order = 2;
  private readonly prediction: PredictionType;
  private readonly stepOrder = new StepOrder("HeunDiscreteScheduler");
  // Saved by the first-order half for the correction.
  private prevDerivative: Float32Array | null = null;
  private dt = 0;
  private prevSample: Float32Array | null = null;

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(HEUN_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"] as const);
    const alphasCumprod = noiseSchedule(cfg, ["linear", "scaled_linear", "squaredcos_cap_v2", "exp"]).alphasCumprod;
    const trainSigmas = sigmasFromAlphasCumprod(alphasCumprod);

    const n = numInferenceSteps;
    const spaced = sigmaSchedulerTimesteps(cfg, n);
    const spacing = spaced.spacing;
    let timesteps = spaced.timesteps;

    let sigmas = timesteps.map((t) => interpOnIndexGrid(t, trainSigmas));
    if (cfg.use_karras_sigmas) {
      const sigmaMin = hiddenSigmaBound(modelConfig, "sigma_min") ?? (sigmas[sigmas.length - 1] as number);
      const sigmaMax = hiddenSigmaBound(modelConfig, "sigma_max") ?? (sigmas[0] as number);
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      const logSigmas = logSigmasF32(trainSigmas);
      // Kept in float64, as diffusers' Heun keeps them.
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    const s = [...sigmas, 0].map(f32);
    this.sigmas = [s[0] as number, ...s.slice(1, -1).flatMap((v) => [v, v]), s[s.length - 1] as number];
    this.timesteps = [timesteps[0] as number, ...timesteps.slice(1).flatMap((t) => [t, t])];
    this.initNoiseSigma = sigmaInitNoise(spacing, this.sigmas);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmas[stepIndex];
    if (sigma === undefined || stepIndex >= this.timesteps.length)
      throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseSigma(sigma, original, noise);
  }

  startAt(stepIndex: number): void {
    this.stepOrder.startAt(stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmas[stepIndex];
    if (sigma === undefined || stepIndex >= this.timesteps.length)
      throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return scaleBySigma(sample, sigma);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.stepOrder.check(stepIndex, this.timesteps.length);
    const firstOrder = stepIndex % 2 === 0;
    // First half: from σ_i (this index) to σ_{i+1}; correction: the model was evaluated at the end point.
    const sigma = this.sigmas[firstOrder ? stepIndex : stepIndex - 1] as number;
    const sigmaNext = this.sigmas[firstOrder ? stepIndex + 1 : stepIndex] as number;
    const sigmaHat = sigma; // σ̂ = σ (γ + 1) with γ = 0
    const sigmaInput = firstOrder ? sigmaHat : sigmaNext;
    const denoised = denoisedFromSigma(this.prediction, modelOutput, sample, sigmaInput);
    if (this.config.clip_sample) {
      const r = this.config.clip_sample_range;
      for (let i = 0; i < denoised.length; i++) denoised[i] = Math.min(Math.max(denoised[i] as number, -r), r);
    }

    let derivative: Float32Array;
    let dt: number;
    let x: Float32Array;
    if (firstOrder) {
      // d = (x − x̂₀) / σ̂;  x̃ = x + d (σ_next − σ̂)   (Algorithm 1, lines 5–6)
      derivative = sample.map((v, i) => f32(v - (denoised[i] as number)) / sigmaHat);
      dt = f32(sigmaNext - sigmaHat);
      x = sample;
      this.prevDerivative = derivative;
      this.dt = dt;
      this.prevSample = sample;
    } else {
      // d' = (x̃ − x̂₀(x̃)) / σ_next;  x_next = x + (d + d')/2 (σ_next − σ̂)   (Algorithm 1, lines 7–8)
      const first = this.prevDerivative as Float32Array;
      derivative = sample.map((v, i) => {
        const d2 = f32(f32(v - (denoised[i] as number)) / sigmaNext);
        return f32((first[i] as number) + d2) / 2;
      });
      dt = this.dt;
      x = this.prevSample as Float32Array;
      this.prevDerivative = null;
      this.prevSample = null;
    }
    return x.map((v, i) => v + f32((derivative[i] as number) * dt));
  }
}
