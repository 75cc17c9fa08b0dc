/**
 * Euler ancestral: an Euler step down to σ_down followed by fresh noise of size σ_up, so that
 * σ_down² + σ_up² = σ_next² (k-diffusion's sample_euler_ancestral / get_ancestral_step, after
 * Karras et al. 2022, arXiv:2206.00364, and DDPM's ancestral sampling, Ho et al. 2020), as
 * diffusers' EulerAncestralDiscreteScheduler (scheduling_euler_ancestral_discrete.py, v0.29.2).
 */
import { f32, interpOnIndexGrid } from "./float.js";
import {
  addNoiseSigma,
  checkStartIndex,
  denoisedFromSigma,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  type StepContext,
  scaleBySigma,
  sigmaInitNoise,
  sigmaSchedulerTimesteps,
  sigmasFromAlphasCumprod,
} from "./scheduler.js";

export const EULER_ANCESTRAL_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly name = "EulerAncestralDiscreteScheduler";
  readonly config: typeof EULER_ANCESTRAL_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  readonly order = 1;
  private readonly prediction: "epsilon" | "v_prediction";

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(EULER_ANCESTRAL_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    // diffusers raises NotImplementedError for "sample".
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction"] as const);

    const alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    // Zero terminal SNR makes the last σ infinite; diffusers keeps it finite with fp16's smallest subnormal.
    if (cfg.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
    const trainSigmas = sigmasFromAlphasCumprod(alphasCumprod);

    const n = numInferenceSteps;
    const spaced = sigmaSchedulerTimesteps(cfg, n);
    const spacing = spaced.spacing;
    const timesteps = spaced.timesteps;
    this.timesteps = timesteps;
    this.sigmas = [...timesteps.map((t) => interpOnIndexGrid(t, trainSigmas)), 0].map(f32);

    this.initNoiseSigma = sigmaInitNoise(spacing, this.sigmas);
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
    const sigmaTo = this.sigmas[stepIndex + 1] as number;
    const denoised = denoisedFromSigma(this.prediction, modelOutput, sample, sigma);
    // σ_up = √(σ_to² (σ_from² − σ_to²) / σ_from²),  σ_down = √(σ_to² − σ_up²)
    const from2 = f32(sigma * sigma);
    const to2 = f32(sigmaTo * sigmaTo);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);
    // One draw of the latents' shape per step, after the deterministic part, from the pipeline's
    // generator (diffusers: randn_tensor(model_output.shape, generator=generator)).
    const noise = ctx.randn(shape);
    if (noise.length !== sample.length)
      throw new Error(`${this.name}: noise of ${noise.length} values for ${sample.length}`);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      const x = sample[i] as number;
      const d = f32(f32(x - (denoised[i] as number)) / sigma);
      const prev = f32(x + f32(d * dt));
      out[i] = prev + f32((noise[i] as number) * sigmaUp);
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
