/**
 * Euler: the first-order ODE sampler of Karras et al. 2022, "Elucidating the Design Space of
 * Diffusion-Based Generative Models" (arXiv:2206.00364), Algorithm 2 without churn, as diffusers'
 * EulerDiscreteScheduler (scheduling_euler_discrete.py, v0.29.2) and k-diffusion's sample_euler.
 */
import { f32, interpOnIndexGrid, numpyLogF32, torchLinspaceF32 } from "./float.js";
import {
  addNoiseSigma,
  checkStartIndex,
  configError,
  denoisedFromSigma,
  karrasSigmas,
  logSigmasF32,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  type StepContext,
  scaleBySigma,
  sigmaInitNoise,
  sigmaSchedulerTimesteps,
  sigmasFromAlphasCumprod,
  sigmaToT,
} from "./scheduler.js";

export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  interpolation_type: "linear",
  use_karras_sigmas: false,
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  timestep_spacing: "linspace",
  timestep_type: "discrete",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: "zero",
};

export class EulerDiscreteScheduler implements Scheduler {
  readonly name = "EulerDiscreteScheduler";
  readonly config: typeof EULER_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  readonly order = 1;
  private readonly prediction: "epsilon" | "v_prediction" | "sample";

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(EULER_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    // diffusers also accepts the old name "original_sample" for "sample".
    const prediction = oneOf("prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
      "original_sample",
    ] as const);
    this.prediction = prediction === "original_sample" ? "sample" : prediction;
    const interpolation = oneOf("interpolation_type", cfg.interpolation_type, ["linear", "log_linear"] as const);
    const timestepType = oneOf("timestep_type", cfg.timestep_type, ["discrete", "continuous"] as const);
    const finalSigmas = oneOf("final_sigmas_type", cfg.final_sigmas_type, ["zero", "sigma_min"] as const);
    for (const key of ["sigma_min", "sigma_max"] as const) {
      if (cfg[key] !== null && typeof cfg[key] !== "number") throw configError(key, "must be a number or null");
    }

    const alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    // Zero terminal SNR makes the last σ infinite; diffusers keeps it finite with fp16's smallest subnormal.
    if (cfg.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
    const trainSigmas = sigmasFromAlphasCumprod(alphasCumprod);

    const n = numInferenceSteps;
    const spaced = sigmaSchedulerTimesteps(cfg, n);
    const spacing = spaced.spacing;
    let timesteps = spaced.timesteps;

    // σ at each timestep, interpolated between training timesteps (float64, then float32 at the end).
    let sigmas: number[];
    if (interpolation === "linear") sigmas = timesteps.map((t) => interpOnIndexGrid(t, trainSigmas));
    else {
      const logMax = numpyLogF32(trainSigmas[cfg.num_train_timesteps - 1] as number);
      const logMin = numpyLogF32(trainSigmas[0] as number);
      sigmas = Array.from(torchLinspaceF32(logMax, logMin, n + 1), (l) => f32(Math.exp(l)));
    }
    if (cfg.use_karras_sigmas) {
      const sigmaMin = cfg.sigma_min ?? (sigmas[sigmas.length - 1] as number);
      const sigmaMax = cfg.sigma_max ?? (sigmas[0] as number);
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      const logSigmas = logSigmasF32(trainSigmas);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logSigmas)));
    }
    const sigmaLast = finalSigmas === "zero" ? 0 : f32(Math.sqrt(f32(f32(1 - alphasCumprod[0]!) / alphasCumprod[0]!)));
    const sigmas32 = [...sigmas, sigmaLast].map(f32);
    this.sigmas = sigmas32;
    // EDM-style models with continuous time take c_noise = ¼ ln σ as their timestep (Karras et al. 2022, Table 1).
    this.timesteps =
      timestepType === "continuous" && this.prediction === "v_prediction"
        ? sigmas32.slice(0, -1).map((s) => f32(0.25 * f32(Math.log(s))))
        : timesteps;

    this.initNoiseSigma = sigmaInitNoise(spacing, sigmas32);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmas[stepIndex];
    if (sigma === undefined || stepIndex >= this.timesteps.length)
      throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseSigma(sigma, original, noise);
  }

  startAt(stepIndex: number): void {
    checkStartIndex(this.name, stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    return scaleBySigma(sample, this.sigmaAt(stepIndex));
  }

  step(
    modelOutput: Float32Array,
    stepIndex: number,
    sample: Float32Array,
    ctx: StepContext,
    shape: readonly number[],
  ): Float32Array {
    const sigma = this.sigmaAt(stepIndex);
    const sigmaNext = this.sigmas[stepIndex + 1] as number;
    // diffusers draws noise for "churn" on every step, even with churn off (γ = 0) as in its
    // pipelines, so the generator advances; draw and drop it to keep the generator in step.
    ctx.randn(shape);
    const sigmaHat = sigma; // σ̂ = σ (γ + 1) with γ = 0
    const denoised = denoisedFromSigma(this.prediction, modelOutput, sample, sigmaHat);
    // d = (x − x̂₀) / σ̂;  x_next = x + d (σ_next − σ̂)   (Algorithm 2, lines 7–8)
    const dt = f32(sigmaNext - sigmaHat);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const x = sample[i] as number;
      const d = f32(f32(x - (denoised[i] as number)) / sigmaHat);
      out[i] = x + f32(d * dt);
    }
    return out;
  }

  private sigmaAt(stepIndex: number): number {
    const sigma = this.sigmas[stepIndex];
    if (sigma === undefined || stepIndex >= this.timesteps.length) {
      throw new RangeError(`${this.name}: no step ${stepIndex}`);
    }
    return sigma;
  }
}
