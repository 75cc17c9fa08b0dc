/**
 * PyTorch's CPU generator (`torch.Generator()`, torch 1.13), reproduced value for value so that
 * a seed gives the same starting noise here as in diffusers on CPU.
 *
 * Facts taken from PyTorch's sources (ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp,
 * ATen/core/DistributionsHelper.h, TransformationHelper.h, native/cpu/DistributionTemplates.h):
 * - the engine is the standard 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), seeded with
 *   only the low 32 bits of the 64-bit seed;
 * - a float32 uniform takes the low 24 bits of one word; a float64 uniform the low 53 bits of a
 *   64-bit word built from two draws, the first as the high half;
 * - `randn` of a contiguous float32 tensor with 16 or more elements uses the block Box–Muller of
 *   `normal_fill`; smaller tensors draw one double-precision `normal_distribution` value per element,
 *   whose spare sine value is kept on the generator.
 */

const MT_N = 624;
const MT_M = 397;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const MATRIX_A = 0x9908b0df;

const TWO_POW_32 = 4294967296;
const FLOAT_DIVISOR = 1 / 16777216; // 2^-24: float32 has a 24-bit significand
const DOUBLE_DIVISOR = 1 / 9007199254740992; // 2^-53: float64 has a 53-bit significand
/** torch switches from the scalar double path to block Box–Muller at this many elements. */
const BLOCK = 16;
const HALF = BLOCK / 2;

const MIN_SEED = -(1n << 63n);
const MAX_SEED = (1n << 64n) - 1n;

const fround = Math.fround;

export class TorchCpuGenerator {
  readonly #seed: bigint;
  readonly #state = new Uint32Array(MT_N);
  #index = MT_N;
  /**
   * The sine half of the last scalar Box–Muller pair, handed out by the next scalar draw. torch
   * keeps it on the generator (`next_double_normal_sample_`), so it outlives the call that made it.
   */
  #spareNormal: number | undefined;

  /**
   * Same as `torch.Generator().manual_seed(seed)`. Python's binding accepts anything that fits in
   * uint64 and, failing that, int64 (reinterpreted as uint64), so -1 and 2^64-1 are the same seed.
   */
  constructor(seed: number | bigint) {
    if (typeof seed === "number" && !Number.isSafeInteger(seed)) {
      throw new RangeError(`seed must be an integer (a bigint above 2^53), got ${seed}`);
    }
    const big = BigInt(seed);
    if (big < MIN_SEED || big > MAX_SEED) {
      throw new RangeError(`seed ${big} is outside [-2^63, 2^64-1], which torch refuses`);
    }
    this.#seed = BigInt.asUintN(64, big);
    this.#init(Number(BigInt.asUintN(32, this.#seed)));
  }

  /** The seed as torch reports it from `initial_seed()`: always the unsigned 64-bit value. */
  get seed(): bigint {
    return this.#seed;
  }

  /** `torch.randn(shape, generator=g)` in float32. */
  randn(shape: readonly number[]): Float32Array {
    const n = numelOf(shape);
    const out = new Float32Array(n);
    if (n >= BLOCK) this.#normalFill(out);
    else for (let i = 0; i < n; i++) out[i] = this.#scalarNormal();
    return out;
  }

  /** `torch.rand(shape, generator=g)` in float32: one 32-bit word per element at any size. */
  rand(shape: readonly number[]): Float32Array {
    const n = numelOf(shape);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.#nextU32() & 0xffffff) * FLOAT_DIVISOR;
    return out;
  }

  /** MT19937 initialisation (the reference `init_genrand`). */
  #init(seed32: number): void {
    const s = this.#state;
    s[0] = seed32;
    for (let j = 1; j < MT_N; j++) {
      const prev = s[j - 1]!;
      s[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
    this.#index = MT_N;
  }

  /** Regenerates all 624 words at once, so the per-draw path is a load and the tempering. */
  #twist(): void {
    const s = this.#state;
    let k = 0;
    for (; k < MT_N - MT_M; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + MT_M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < MT_N - 1; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + MT_M - MT_N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (s[MT_N - 1]! & UPPER_MASK) | (s[0]! & LOWER_MASK);
    s[MT_N - 1] = s[MT_M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.#index = 0;
  }

  #nextU32(): number {
    if (this.#index >= MT_N) this.#twist();
    let y = this.#state[this.#index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** float64 uniform in [0, 1): 53 low bits of (first word << 32 | second word), kept exact in a double. */
  #nextDouble(): number {
    const hi = this.#nextU32() & 0x1fffff;
    const lo = this.#nextU32();
    return (hi * TWO_POW_32 + lo) * DOUBLE_DIVISOR;
  }

  /**
   * torch 1.13 `normal_distribution<double>`: Box–Muller with u1 as the angle and u2 as the
   * radius, r = sqrt(-2 ln(1 - u2)); the cosine is returned now and the sine saved for later.
   */
  #scalarNormal(): number {
    const spare = this.#spareNormal;
    if (spare !== undefined) {
      this.#spareNormal = undefined;
      return spare;
    }
    const u1 = this.#nextDouble();
    const u2 = this.#nextDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.#spareNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * torch's `normal_fill`: all n float32 uniforms first, then Box–Muller over each block of 16
   * (cosines to the first 8 slots, sines to the last 8); when n is not a multiple of 16 the last
   * 16 slots are refilled with fresh uniforms and transformed again, overwriting the tail.
   */
  #normalFill(data: Float32Array): void {
    const n = data.length;
    for (let i = 0; i < n; i++) data[i] = (this.#nextU32() & 0xffffff) * FLOAT_DIVISOR;
    for (let i = 0; i + BLOCK <= n; i += BLOCK) boxMuller16(data, i);
    if (n % BLOCK !== 0) {
      const start = n - BLOCK;
      for (let i = start; i < n; i++) data[i] = (this.#nextU32() & 0xffffff) * FLOAT_DIVISOR;
      boxMuller16(data, start);
    }
  }
}

/**
 * torch's `normal_fill_16` for float: each step is float32 arithmetic (logf, sqrtf, cosf, sinf),
 * except the angle, which is formed in double (`2.0f * c10::pi<double> * u2`) and then stored
 * as float. Math.fround after each double operation reproduces the float results; products and
 * square roots of floats rounded this way are exact to the float op, log/cos/sin to within 1 ulp.
 */
function boxMuller16(data: Float32Array, offset: number): void {
  for (let j = offset; j < offset + HALF; j++) {
    const u1 = 1 - data[j]!; // exact in float32: maps [0, 1) to (0, 1] so the log is finite
    const u2 = data[j + HALF]!;
    const radius = fround(Math.sqrt(fround(-2 * fround(Math.log(u1)))));
    const theta = fround(2 * Math.PI * u2);
    data[j] = radius * fround(Math.cos(theta));
    data[j + HALF] = radius * fround(Math.sin(theta));
  }
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid tensor shape [${shape.join(", ")}]`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`tensor shape [${shape.join(", ")}] is too large`);
  return n;
}
