/**
 * PNDM: Liu, Ren, Lin & Zhao 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"
 * (arXiv:2202.09778), as diffusers' PNDMScheduler (scheduling_pndm.py, v0.29.2).
 *
 * Stable Diffusion configs set `skip_prk_steps`: only the linear multistep (PLMS) part runs,
 * after crowsonkb's PLMS sampler for latent diffusion, whose first step is a second-order
 * (Heun-like) step that evaluates the model twice at the same timestep. Otherwise the paper's
 * F-PNDM: three Runge–Kutta (PRK) steps of four model calls each, then PLMS.
 */
import { f32, numpyLinspace, roundHalfEven } from "./float.js";
import {
  addNoiseAlphaBar,
  checkSteps,
  configError,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  StepOrder,
  trailingTimesteps,
} from "./scheduler.js";

export const PNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  steps_offset: 0,
};

/** PNDM's multistep order. */
const PNDM_ORDER = 4;

export class PNDMScheduler implements Scheduler {
  readonly name = "PNDMScheduler";
  readonly config: typeof PNDM_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly initNoiseSigma = 1.0;
  readonly order = 1;
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly prediction: "epsilon" | "v_prediction";
  /** T // n: the distance between two timesteps. */
  private readonly stepRatio: number;
  private readonly prkCount: number;
  private readonly prkTimesteps: readonly number[];
  private readonly stepOrder = new StepOrder("PNDMScheduler");

  // Running state, as diffusers keeps it.
  private counter = 0;
  /** Past model outputs ("ets") for the multistep formulas. */
  private ets: Float32Array[] = [];
  /** PRK: the running weighted sum of the four model outputs (null = 0). */
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(PNDM_DEFAULTS, modelConfig, overrides);
    this.config = cfg;
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction"] as const);
    this.alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    this.finalAlphaCumprod = cfg.set_alpha_to_one ? 1.0 : (this.alphasCumprod[0] as number);

    const n = numInferenceSteps;
    const total = cfg.num_train_timesteps;
    checkSteps(n, total);
    this.stepRatio = Math.floor(total / n);
    // The training timesteps used, ascending.
    const spacing = oneOf("timestep_spacing", cfg.timestep_spacing, ["linspace", "leading", "trailing"] as const);
    let base: number[];
    if (spacing === "linspace") base = numpyLinspace(0, total - 1, n).map(roundHalfEven);
    else if (spacing === "leading") base = Array.from({ length: n }, (_, i) => i * this.stepRatio + cfg.steps_offset);
    else base = trailingTimesteps(n, total, total).reverse();

    let prk: number[] = [];
    let plms: number[];
    if (cfg.skip_prk_steps) {
      // The second-to-last timestep twice: the first PLMS step calls the model twice there.
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      if (n < PNDM_ORDER) {
        throw configError("skip_prk_steps", `the Runge-Kutta warm-up needs at least ${PNDM_ORDER} steps, got ${n}`);
      }
      // Each of the last four timesteps t gives t and t + T//n//2 (the half step); each of those,
      // bar the very last, is visited twice; then drop the ends and run it backwards.
      const half = Math.floor(this.stepRatio / 2);
      const pairs = base.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]);
      prk = pairs
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      plms = base.slice(0, -3).reverse();
    }
    this.prkTimesteps = prk;
    this.prkCount = prk.length;
    this.timesteps = [...prk, ...plms];
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const t = this.timesteps[stepIndex];
    if (t === undefined) throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseAlphaBar(this.alphasCumprod, t, original, noise);
  }

  startAt(stepIndex: number): void {
    this.stepOrder.startAt(stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    this.stepOrder.check(stepIndex, this.timesteps.length);
    const t = this.timesteps[stepIndex] as number;
    return this.counter < this.prkCount && !this.config.skip_prk_steps
      ? this.stepPrk(modelOutput, t, sample)
      : this.stepPlms(modelOutput, t, sample);
  }

  /** Runge–Kutta: four model calls per step with weights 1/6, 1/3, 1/3, 1/6 (paper, eq. 13). */
  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(this.stepRatio / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4] as number;
    const sixth = f32(1 / 6);
    const third = f32(1 / 3);
    let output = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0 || phase === 1 || phase === 2) {
      const w = phase === 0 ? sixth : third;
      this.curModelOutput = axpy(this.curModelOutput, w, modelOutput);
      if (phase === 0) {
        this.ets.push(modelOutput);
        this.curSample = sample;
      }
    } else {
      output = axpy(this.curModelOutput, sixth, modelOutput);
      this.curModelOutput = null;
    }
    const prev = this.prevSample(this.curSample ?? sample, t, prevTimestep, output);
    this.counter++;
    return prev;
  }

  /** Linear multistep (Adams–Bashforth on ε, paper eq. 12), warming up through orders 1–3. */
  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new Error("PNDMScheduler: PLMS steps need the Runge-Kutta warm-up first");
    }
    let t = timestep;
    let prevTimestep = timestep - this.stepRatio;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      // The second call of the first step: same timestep again, stepping from the one before.
      prevTimestep = timestep;
      t = timestep + this.stepRatio;
    }
    const e = this.ets;
    const n = e.length;
    const e1 = e[n - 1] as Float32Array;
    const e2 = e[n - 2] as Float32Array;
    const e3 = e[n - 3] as Float32Array;
    const e4 = e[n - 4] as Float32Array;
    let x = sample;
    let eps: Float32Array;
    if (n === 1 && this.counter === 0) {
      eps = modelOutput;
      this.curSample = sample;
    } else if (n === 1 && this.counter === 1) {
      // (ε(x_t, t) + ε(x̃, t−δ)) / 2 from the sample the step started at.
      eps = modelOutput.map((m, i) => f32(m + (e1[i] as number)) / 2);
      x = this.curSample as Float32Array;
      this.curSample = null;
    } else if (n === 2) {
      eps = e1.map((a, i) => f32(f32(3 * a) - (e2[i] as number)) / 2);
    } else if (n === 3) {
      eps = e1.map((a, i) => f32(f32(f32(23 * a) - f32(16 * (e2[i] as number))) + f32(5 * (e3[i] as number))) / 12);
    } else {
      const c = f32(1 / 24);
      eps = e1.map((a, i) => {
        const s = f32(f32(f32(55 * a) - f32(59 * (e2[i] as number))) + f32(37 * (e3[i] as number)));
        return c * f32(s - f32(9 * (e4[i] as number)));
      });
    }
    const prev = this.prevSample(x, t, prevTimestep, eps);
    this.counter++;
    return prev;
  }

  /**
   * x_{t−δ} from x_t and ε (paper, eq. 9, with x_t added to both sides):
   * x_{t−δ} = √(ᾱ_{t−δ}/ᾱ_t) x_t − (ᾱ_{t−δ} − ᾱ_t) ε / (ᾱ_t √(1−ᾱ_{t−δ}) + √(ᾱ_t (1−ᾱ_t) ᾱ_{t−δ})).
   */
  private prevSample(sample: Float32Array, t: number, prevT: number, modelOutput: Float32Array): Float32Array {
    const alphaProdT = this.alphasCumprod[t] as number;
    const alphaProdPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdPrev = f32(1 - alphaProdPrev);
    let eps = modelOutput;
    if (this.prediction === "v_prediction") {
      // ε = √ᾱ v + √(1−ᾱ) x (Salimans & Ho 2022)
      const sa = f32(Math.sqrt(alphaProdT));
      const sb = f32(Math.sqrt(betaProdT));
      eps = modelOutput.map((v, i) => f32(sa * v) + f32(sb * (sample[i] as number)));
    }
    const sampleCoeff = f32(Math.sqrt(f32(alphaProdPrev / alphaProdT)));
    const denom =
      f32(alphaProdT * f32(Math.sqrt(betaProdPrev))) + f32(Math.sqrt(f32(f32(alphaProdT * betaProdT) * alphaProdPrev)));
    const denomF = f32(denom);
    const diff = f32(alphaProdPrev - alphaProdT);
    return sample.map((x, i) => f32(sampleCoeff * x) - f32(f32(diff * (eps[i] as number)) / denomF));
  }
}

/** acc + w·x in float32 (acc null = 0). */
function axpy(acc: Float32Array | null, w: number, x: Float32Array): Float32Array {
  return x.map((v, i) => (acc ? (acc[i] as number) : 0) + f32(w * v));
}
