/**
 * LMS: a linear multistep (Adams–Bashforth) solver of the probability-flow ODE in σ, k-diffusion's
 * sample_lms (Crowson), order 4, as diffusers' LMSDiscreteScheduler (scheduling_lms_discrete.py,
 * v0.29.2).
 *
 * The step is x_next = x + Σ_k c_k d_{i−k}, where d are the past derivatives (x − x̂₀)/σ and
 * c_k = ∫_{σ_i}^{σ_{i+1}} ℓ_k(τ) dτ integrates the Lagrange basis polynomial through the past
 * σ's. diffusers integrates with scipy.integrate.quad, evaluating ℓ_k in float32 torch arithmetic;
 * quad's first pass, QUADPACK's 21-point Gauss–Kronrod rule (dqk21, Piessens et al. 1983), is exact
 * for these cubic polynomials and is accepted at once, so it is reproduced here point for point.
 */
import { f32, interpOnIndexGrid } from "./float.js";
import {
  addNoiseSigma,
  denoisedFromSigma,
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

export const LMS_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  use_karras_sigmas: false,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
};

/** diffusers' `step(..., order=4)` default. */
const LMS_ORDER = 4;

export class LMSDiscreteScheduler implements Scheduler {
  readonly name = "LMSDiscreteScheduler";
  readonly config: typeof LMS_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma: number;
  readonly order = 1;
  private readonly prediction: PredictionType;
  private readonly stepOrder = new StepOrder("LMSDiscreteScheduler");
  /** The latest derivatives, oldest first (at most LMS_ORDER). */
  private derivatives: Float32Array[] = [];

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(LMS_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"] as const);
    const alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    const trainSigmas = sigmasFromAlphasCumprod(alphasCumprod);

    const n = numInferenceSteps;
    const spaced = sigmaSchedulerTimesteps(cfg, n);
    const spacing = spaced.spacing;
    let timesteps = spaced.timesteps;

    let sigmas = timesteps.map((t) => interpOnIndexGrid(t, trainSigmas));
    if (cfg.use_karras_sigmas) {
      sigmas = karrasSigmas(sigmas[sigmas.length - 1] as number, sigmas[0] as number, n);
      const logSigmas = logSigmasF32(trainSigmas);
      // Kept in float64, as diffusers' LMS keeps them.
      timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, 0].map(f32);
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
    const sigma = this.sigmas[stepIndex] as number;
    const denoised = denoisedFromSigma(this.prediction, modelOutput, sample, sigma);
    // d = (x − x̂₀) / σ
    this.derivatives.push(sample.map((x, i) => f32(x - (denoised[i] as number)) / sigma));
    if (this.derivatives.length > LMS_ORDER) this.derivatives.shift();

    const order = Math.min(stepIndex + 1, LMS_ORDER);
    // Python's sum(c_k * d_k) starts from 0 and adds in float32, newest derivative first. After
    // a late start (img2img) diffusers still takes the order from the step index, but its zip
    // stops at the derivatives it has.
    let acc: Float32Array | null = null;
    for (let k = 0; k < Math.min(order, this.derivatives.length); k++) {
      const c = f32(this.lmsCoefficient(order, stepIndex, k));
      const d = this.derivatives[this.derivatives.length - 1 - k] as Float32Array;
      const prev: Float32Array | null = acc;
      acc = d.map((v, i) => (prev ? (prev[i] as number) : 0) + f32(c * v));
    }
    const sum = acc as Float32Array;
    return sample.map((x, i) => x + (sum[i] as number));
  }

  /** c_k = ∫_{σ_t}^{σ_{t+1}} ∏_{j≠k} (τ − σ_{t−j}) / (σ_{t−k} − σ_{t−j}) dτ. */
  private lmsCoefficient(order: number, t: number, current: number): number {
    const s = this.sigmas;
    const basis = (tau: number): number => {
      // torch: a Python float meeting a float32 0-d tensor is computed in float32.
      const tau32 = f32(tau);
      let prod = 1.0;
      for (let k = 0; k < order; k++) {
        if (k === current) continue;
        const sk = s[t - k] as number;
        prod = f32(prod * f32(f32(tau32 - sk) / f32((s[t - current] as number) - sk)));
      }
      return prod;
    };
    return gaussKronrod21(basis, s[t] as number, s[t + 1] as number);
  }
}

// QUADPACK dqk21 (Piessens, de Doncker-Kapenga, Überhuber & Kahaner 1983): abscissae of the
// 21-point Kronrod rule (every second one a 10-point Gauss abscissa) and their weights, from the
// published tables. The embedded Gauss rule only feeds QUADPACK's error estimate, not needed here.
const XGK = [
  0.9956571630258081, 0.9739065285171717, 0.9301574913557082, 0.8650633666889845, 0.7808177265864169,
  0.6794095682990244, 0.5627571346686047, 0.4333953941292472, 0.2943928627014602, 0.14887433898163122, 0,
];
const WGK = [
  0.011694638867371874, 0.032558162307964725, 0.054755896574351995, 0.07503967481091996, 0.0931254545836976,
  0.10938715880229764, 0.12349197626206584, 0.13470921731147334, 0.14277593857706009, 0.14773910490133849,
  0.1494455540029169,
];

/** ∫_a^b f by the 21-point Gauss–Kronrod rule, summed in dqk21's order (a > b allowed). */
export function gaussKronrod21(f: (x: number) => number, a: number, b: number): number {
  const centre = 0.5 * (a + b);
  const halfLength = 0.5 * (b - a);
  let resk = (WGK[10] as number) * f(centre);
  // Gauss abscissae first (xgk 2, 4, ..., 10 in Fortran's 1-based numbering), then the Kronrod ones.
  for (let j = 1; j <= 5; j++) {
    const absc = halfLength * (XGK[2 * j - 1] as number);
    resk += (WGK[2 * j - 1] as number) * (f(centre - absc) + f(centre + absc));
  }
  for (let j = 1; j <= 5; j++) {
    const absc = halfLength * (XGK[2 * j - 2] as number);
    resk += (WGK[2 * j - 2] as number) * (f(centre - absc) + f(centre + absc));
  }
  return resk * halfLength;
}
