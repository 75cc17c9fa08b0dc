/**
 * UniPC: Zhao, Bai, Rao, Zhou & Lu 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
 * Sampling of Diffusion Models" (arXiv:2302.04867), as diffusers' UniPCMultistepScheduler
 * (scheduling_unipc_multistep.py, v0.29.2): the multistep UniP-p predictor (Algorithm 2) with the
 * UniC corrector (Algorithm 1) applied to each new sample once the model has been evaluated on it,
 * B(h) = e^h − 1 ("bh2", the default) or B(h) = h ("bh1").
 *
 * Notation as DPM-Solver: α_t = 1/√(σ²+1), σ_t = σ α_t, λ = log α_t − log σ_t, h = λ_t − λ_s0.
 */
import { f32, interpOnIndexGrid, roundHalfEven } from "./float.js";
import {
  addNoiseVp,
  checkSteps,
  configError,
  hiddenSigmaBound,
  karrasSigmas,
  leadingTimesteps,
  linspaceTimesteps,
  logSigmasF32,
  noiseSchedule,
  oneOf,
  resolveConfig,
  type Scheduler,
  StepOrder,
  sigmasFromAlphasCumprod,
  sigmaToT,
  trailingTimesteps,
  unsupported,
  vp,
} from "./scheduler.js";

export const UNIPC_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  solver_order: 2,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  predict_x0: true,
  solver_type: "bh2",
  lower_order_final: true,
  disable_corrector: [] as number[],
  solver_p: null as unknown,
  use_karras_sigmas: false,
  timestep_spacing: "linspace",
  steps_offset: 0,
  final_sigmas_type: "zero",
  rescale_betas_zero_snr: false,
};

export class UniPCMultistepScheduler implements Scheduler {
  readonly name = "UniPCMultistepScheduler";
  readonly config: typeof UNIPC_DEFAULTS;
  readonly timesteps: readonly number[];
  readonly sigmas: readonly number[];
  readonly initNoiseSigma = 1.0;
  readonly order = 1;
  private readonly prediction: "epsilon" | "v_prediction" | "sample";
  private readonly stepOrder = new StepOrder("UniPCMultistepScheduler");
  /** Converted model outputs of the latest steps, oldest first. */
  private readonly modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;
  /** The order used by the last predictor step, which the next corrector repeats. */
  private thisOrder = 0;
  /** The sample the last predictor step started from. */
  private lastSample: Float32Array | null = null;

  constructor(
    modelConfig: Record<string, unknown>,
    numInferenceSteps: number,
    overrides: Record<string, unknown> = {},
  ) {
    const cfg = resolveConfig(UNIPC_DEFAULTS, modelConfig, overrides);
    // diffusers maps DPM-Solver's solver types onto bh2.
    if (["midpoint", "heun", "logrho"].includes(cfg.solver_type)) cfg.solver_type = "bh2";
    this.config = cfg;
    oneOf("solver_type", cfg.solver_type, ["bh1", "bh2"] as const);
    this.prediction = oneOf("prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"] as const);
    const finalSigmas = oneOf("final_sigmas_type", cfg.final_sigmas_type, ["zero", "sigma_min"] as const);
    if (!Number.isInteger(cfg.solver_order) || cfg.solver_order < 1) {
      throw configError("solver_order", `must be a positive integer, got ${cfg.solver_order}`);
    }
    if (!Array.isArray(cfg.disable_corrector) || cfg.disable_corrector.some((v) => !Number.isInteger(v))) {
      throw configError("disable_corrector", "must be a list of step indices");
    }
    unsupported(
      "thresholding",
      cfg.thresholding,
      "dynamic thresholding is not supported (it is meant for pixel-space models)",
    );
    unsupported("solver_p", cfg.solver_p !== null, "an external predictor scheduler is not supported");

    const alphasCumprod = noiseSchedule(cfg).alphasCumprod;
    // Zero terminal SNR makes the last σ infinite; diffusers keeps it finite with fp16's smallest subnormal.
    if (cfg.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
    const trainSigmas = sigmasFromAlphasCumprod(alphasCumprod);

    const n = numInferenceSteps;
    const total = cfg.num_train_timesteps;
    checkSteps(n, total);
    const spacing = oneOf("timestep_spacing", cfg.timestep_spacing, ["linspace", "leading", "trailing"] as const);
    let timesteps: number[];
    if (spacing === "linspace")
      timesteps = linspaceTimesteps(n + 1, total - 1)
        .map(roundHalfEven)
        .slice(0, -1);
    else if (spacing === "leading") {
      timesteps = leadingTimesteps(n + 1, Math.floor(total / (n + 1)), 0)
        .slice(0, -1)
        .map((t) => t + cfg.steps_offset);
    } else timesteps = trailingTimesteps(n, total, total);

    let sigmas: number[];
    let sigmaLast: number;
    if (cfg.use_karras_sigmas) {
      const logSigmas = logSigmasF32(trainSigmas);
      const sigmaMin = hiddenSigmaBound(modelConfig, "sigma_min") ?? (trainSigmas[0] as number);
      const sigmaMax = hiddenSigmaBound(modelConfig, "sigma_max") ?? (trainSigmas[total - 1] as number);
      sigmas = karrasSigmas(sigmaMin, sigmaMax, n);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
      sigmaLast = finalSigmas === "zero" ? 0 : (sigmas[sigmas.length - 1] as number);
    } else {
      sigmas = timesteps.map((t) => interpOnIndexGrid(t, trainSigmas));
      const a0 = alphasCumprod[0] as number;
      sigmaLast = finalSigmas === "zero" ? 0 : f32(Math.sqrt(f32(f32(1 - a0) / a0)));
    }
    this.sigmas = [...sigmas, sigmaLast].map(f32);
    this.timesteps = timesteps;
    this.modelOutputs = new Array(cfg.solver_order).fill(null);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    const sigma = this.sigmas[stepIndex];
    if (sigma === undefined || stepIndex >= this.timesteps.length)
      throw new RangeError(`${this.name}: no step ${stepIndex}`);
    return addNoiseVp(sigma, original, noise);
  }

  startAt(stepIndex: number): void {
    this.stepOrder.startAt(stepIndex, this.timesteps.length);
  }

  scaleModelInput(sample: Float32Array): Float32Array {
    return sample;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    const count = this.timesteps.length;
    this.stepOrder.check(stepIndex, count);
    const cfg = this.config;
    const useCorrector = stepIndex > 0 && !cfg.disable_corrector.includes(stepIndex - 1) && this.lastSample !== null;
    const converted = this.convertModelOutput(modelOutput, stepIndex, sample);
    let x = sample;
    if (useCorrector) x = this.corrector(converted, stepIndex, this.lastSample as Float32Array, this.thisOrder);

    this.modelOutputs.shift();
    this.modelOutputs.push(converted);
    // Warm up through the lower orders; with lower_order_final, lower them again at the end.
    const order = cfg.lower_order_final ? Math.min(cfg.solver_order, count - stepIndex) : cfg.solver_order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample = x;
    const prev = this.predictor(stepIndex, x, this.thisOrder);
    if (this.lowerOrderNums < cfg.solver_order) this.lowerOrderNums++;
    return prev;
  }

  /** Data prediction x̂₀ (predict_x0) or noise prediction ε, from ε, v (Salimans & Ho 2022) or x₀. */
  private convertModelOutput(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    const { alpha, sigma } = vp(this.sigmas[stepIndex] as number);
    const m = modelOutput;
    const x = sample;
    if (this.config.predict_x0) {
      if (this.prediction === "epsilon") return x.map((v, i) => f32(v - f32(sigma * (m[i] as number))) / alpha);
      if (this.prediction === "v_prediction") return x.map((v, i) => f32(alpha * v) - f32(sigma * (m[i] as number)));
      return m;
    }
    if (this.prediction === "epsilon") return m;
    if (this.prediction === "v_prediction") return m.map((v, i) => f32(alpha * v) + f32(sigma * (x[i] as number)));
    return x.map((v, i) => f32(v - f32(alpha * (m[i] as number))) / sigma);
  }

  /**
   * The coefficients shared by predictor and corrector (paper, eq. 5 and Algorithms 1–2):
   * hh = −h for data prediction (h otherwise), hφ₁ = e^{hh} − 1, B(h), and the right-hand side
   * b_k = hφ_{k+1}(hh) · k! / B(h), with hφ_{k+1} = hφ_k / hh − 1/k!.
   */
  private coefficients(h: number, order: number): { hh: number; hPhi1: number; bh: number; rhs: number[] } {
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = f32(Math.expm1(hh));
    const bh = this.config.solver_type === "bh1" ? hh : f32(Math.expm1(hh));
    let hPhiK = f32(f32(hPhi1 / hh) - 1);
    let factorial = 1;
    const rhs: number[] = [];
    for (let k = 1; k <= order; k++) {
      rhs.push(f32(f32(hPhiK * factorial) / bh));
      factorial *= k + 1;
      hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
    }
    return { hh, hPhi1, bh, rhs };
  }

  /**
   * Step differences D1_k = (m_k − m0) / r_k of the older outputs, r_k = (λ_{s_k} − λ_s0)/h, and
   * the first-order part x_t_ = (σ_t/σ_s0) x − α_t hφ₁ m0 (data) / (α_t/α_s0) x − σ_t hφ₁ m0 (noise).
   */
  private base(
    t: ReturnType<typeof vp>,
    s0: ReturnType<typeof vp>,
    hPhi1: number,
    m0: Float32Array,
    x: Float32Array,
  ): Float32Array {
    const a = this.config.predict_x0 ? f32(t.sigma / s0.sigma) : f32(t.alpha / s0.alpha);
    const b = this.config.predict_x0 ? f32(t.alpha * hPhi1) : f32(t.sigma * hPhi1);
    return x.map((v, i) => f32(a * v) - f32(b * (m0[i] as number)));
  }

  /** UniP-p: x_t = x_t_ − α_t B(h) Σ_k ρ_k D1_k (σ_t for noise prediction). */
  private predictor(stepIndex: number, x: Float32Array, order: number): Float32Array {
    const outputs = this.modelOutputs;
    const m0 = outputs[outputs.length - 1] as Float32Array;
    const t = vp(this.sigmas[stepIndex + 1] as number);
    const s0 = vp(this.sigmas[stepIndex] as number);
    const h = f32(t.lambda - s0.lambda);
    const rks: number[] = [];
    const d1s: Float32Array[] = [];
    for (let k = 1; k < order; k++) {
      const mk = outputs[outputs.length - 1 - k] as Float32Array;
      const rk = f32(f32(vp(this.sigmas[stepIndex - k] as number).lambda - s0.lambda) / h);
      rks.push(rk);
      d1s.push(mk.map((v, i) => f32(v - (m0[i] as number)) / rk));
    }
    rks.push(1);
    const { hPhi1, bh, rhs } = this.coefficients(h, order);
    const xt = this.base(t, s0, hPhi1, m0, x);
    if (d1s.length === 0) return xt;
    // Order 2 uses ρ = ½ (paper, sec. 3.2); higher orders solve R ρ = b with R_{kj} = r_j^k.
    const rhos = order === 2 ? [0.5] : solveF32(powerRows(rks, order - 1, order - 1), rhs.slice(0, order - 1));
    const scale = f32((this.config.predict_x0 ? t.alpha : t.sigma) * bh);
    const res = combine(rhos, d1s);
    return xt.map((v, i) => v - f32(scale * (res[i] as number)));
  }

  /**
   * UniC-p: x_t = x_t_ − α_t B(h) (Σ_k ρ_k D1_k + ρ_p (m_t − m0)), with the new model output m_t.
   * The corrected sample is rebuilt from the previous sample; the predicted one only fed the model.
   */
  private corrector(modelT: Float32Array, stepIndex: number, lastSample: Float32Array, order: number): Float32Array {
    const outputs = this.modelOutputs;
    const m0 = outputs[outputs.length - 1] as Float32Array;
    const t = vp(this.sigmas[stepIndex] as number);
    const s0 = vp(this.sigmas[stepIndex - 1] as number);
    const h = f32(t.lambda - s0.lambda);
    const rks: number[] = [];
    const d1s: Float32Array[] = [];
    for (let k = 1; k < order; k++) {
      const mk = outputs[outputs.length - 1 - k] as Float32Array;
      const rk = f32(f32(vp(this.sigmas[stepIndex - (k + 1)] as number).lambda - s0.lambda) / h);
      rks.push(rk);
      d1s.push(mk.map((v, i) => f32(v - (m0[i] as number)) / rk));
    }
    rks.push(1);
    const { hPhi1, bh, rhs } = this.coefficients(h, order);
    // Order 1 uses ρ = ½; otherwise solve the full system.
    const rhos = order === 1 ? [0.5] : solveF32(powerRows(rks, order, order), rhs);
    const xt = this.base(t, s0, hPhi1, m0, lastSample);
    const corr = d1s.length > 0 ? combine(rhos.slice(0, -1), d1s) : null;
    const rhoLast = rhos[rhos.length - 1] as number;
    const scale = f32((this.config.predict_x0 ? t.alpha : t.sigma) * bh);
    return xt.map((v, i) => {
      const d1t = f32((modelT[i] as number) - (m0[i] as number));
      const term = f32(rhoLast * d1t);
      const total = corr ? f32((corr[i] as number) + term) : term;
      return v - f32(scale * total);
    });
  }
}

/** The first `rows` rows and `cols` columns of R_{kj} = r_j^k (torch.pow in float32). */
function powerRows(rks: number[], rows: number, cols: number): number[][] {
  const out: number[][] = [];
  for (let k = 0; k < rows; k++) {
    out.push(
      rks.slice(0, cols).map((r) => {
        if (k === 0) return 1;
        if (k === 1) return r;
        if (k === 2) return f32(r * r);
        if (k === 3) return f32(f32(r * r) * r);
        return f32(r ** k);
      }),
    );
  }
  return out;
}

/** Σ_k ρ_k D_k (einsum "k,bkc...->bc..."), summed in float32. */
function combine(rhos: readonly number[], ds: readonly Float32Array[]): Float32Array {
  const first = ds[0] as Float32Array;
  const out = first.map((v) => f32((rhos[0] as number) * v));
  for (let k = 1; k < ds.length; k++) {
    const d = ds[k] as Float32Array;
    const r = rhos[k] as number;
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) + f32(r * (d[i] as number));
  }
  return out;
}

/**
 * Solves A x = b in float32 as LAPACK's sgesv does (torch.linalg.solve): LU with partial
 * pivoting, the column below the pivot scaled by the pivot's reciprocal, then the two triangular solves.
 */
function solveF32(matrix: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const a = matrix.map((row) => row.slice());
  const b = rhs.slice();
  for (let j = 0; j < n; j++) {
    let p = j;
    for (let i = j + 1; i < n; i++) if (Math.abs(a[i]![j]!) > Math.abs(a[p]![j]!)) p = i;
    if (p !== j) {
      [a[p], a[j]] = [a[j]!, a[p]!];
      [b[p], b[j]] = [b[j]!, b[p]!];
    }
    const pivot = a[j]![j]!;
    if (pivot === 0) throw new Error("UniPC: singular coefficient matrix");
    const inv = f32(1 / pivot);
    for (let i = j + 1; i < n; i++) {
      const l = f32(a[i]![j]! * inv);
      a[i]![j] = l;
      for (let k = j + 1; k < n; k++) a[i]![k] = f32(a[i]![k]! - f32(l * a[j]![k]!));
    }
  }
  // L y = b (unit lower), then U x = y, column by column as strsm does.
  for (let k = 0; k < n; k++) for (let i = k + 1; i < n; i++) b[i] = f32(b[i]! - f32(b[k]! * a[i]![k]!));
  for (let k = n - 1; k >= 0; k--) {
    b[k] = f32(b[k]! / a[k]![k]!);
    for (let i = 0; i < k; i++) b[i] = f32(b[i]! - f32(b[k]! * a[i]![k]!));
  }
  return b;
}
