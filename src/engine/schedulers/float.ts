/**
 * The arithmetic the reference schedulers do, reproduced number for number.
 *
 * diffusers computes its noise schedules with a mix of torch float32 tensors, numpy float64
 * arrays and Python floats. To give the same timesteps and sigmas (and so the same images),
 * each scheduler here says which of the three a value comes from:
 * - torch float32 tensor arithmetic: every operation rounds to float32, written `f32(a op b)`;
 * - numpy float64 arrays and Python floats: plain JavaScript numbers;
 * - the few places where the libraries do something less obvious (torch's linspace kernel,
 *   numpy's linspace / arange / interp / round) have a function of their own below.
 */

/** Rounds to the nearest float32, as storing into a float32 tensor does. */
export const f32 = Math.fround;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The float32 next to `x` in the direction of `toward` (x a finite float32, x !== toward). */
function nextF32(x: number, toward: number): number {
  if (x === 0) return toward > 0 ? 2 ** -149 : -(2 ** -149);
  f32Scratch[0] = x;
  const up = toward > x;
  // For positive floats the bit pattern grows with the value; for negative ones it shrinks.
  u32Scratch[0] = (u32Scratch[0] as number) + (up === x > 0 ? 1 : -1);
  return f32Scratch[0] as number;
}

/**
 * Fused multiply-add of float32 values, rounded once to float32 (C's fmaf). The product of two
 * float32 values is exact in a double; the sum may round, so a tie at a float32 midpoint is
 * decided by the rounding error of that sum (TwoSum, Knuth TAOCP vol. 2, 4.2.2).
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s || !Number.isFinite(s)) return r;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return r;
  const other = nextF32(r, s);
  if ((r + other) / 2 !== s) return r;
  // s sits exactly halfway: the exact value lies on the side the error points to.
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` as torch 1.13's CPU kernel computes it
 * (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, AVX2 build): the first half counts up from
 * `start`, the second half down from `end`, each value `start + step * i` a fused multiply-add;
 * contiguous output is filled 16 values per round (two vectors of 8, each vector from its first
 * value onwards by `+ k * step`), the remainder element by element.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const at = (i: number) => (i < halfway ? fmaF32(step, i, s) : fmaF32(-step, steps - i - 1, e));
  const vectorised = steps >= 16 ? Math.floor(steps / 16) * 16 : 0;
  for (let base = 0; base < vectorised; base += 8) {
    const first = at(base);
    for (let k = 0; k < 8; k++) out[base + k] = fmaF32(k, step, first);
  }
  for (let i = vectorised; i < steps; i++) out[i] = at(i);
  return out;
}

/** `np.linspace(start, stop, num)` in float64: `i * step + start`, the last value exactly `stop`. */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(i * step + start);
  out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` for float arguments: `ceil((stop - start) / step)` values,
 * `start`, `start + step`, then `start + i * delta` with `delta = (start + step) - start`
 * (numpy's PyArray_ArangeObj and DOUBLE_fill).
 */
export function numpyArange(start: number, stop: number, step: number): number[] {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < length; i++) out.push(i === 0 ? start : i === 1 ? start + step : start + i * delta);
  return out;
}

/** `np.round` / `np.rint`: to the nearest integer, halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends halves up; move the odd ones back down.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * `np.interp(x, np.arange(len(fp)), fp)` in float64, for the integer grid 0..n-1 that every
 * scheduler interpolates its sigmas on: `slope * (x - xp[j]) + fp[j]` between neighbours
 * (numpy/core/src/multiarray/compiled_base.c, arr_interp).
 */
export function interpOnIndexGrid(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0] as number;
  if (x >= last) return fp[last] as number;
  const j = Math.floor(x);
  const lo = fp[j] as number;
  if (j === x) return lo;
  const slope = ((fp[j + 1] as number) - lo) / 1;
  return slope * (x - j) + lo;
}

/**
 * `torch.cumprod` of a float32 tensor on the CPU: torch accumulates in double (acc_type of float
 * on CPU) and rounds each partial product to float32 as it stores it.
 */
export function cumprodF32(values: ArrayLike<number>): Float32Array {
  const out = new Float32Array(values.length);
  let acc = 1;
  for (let i = 0; i < values.length; i++) {
    acc *= values[i] as number;
    out[i] = acc;
  }
  return out;
}

// numpy 1.24's float32 log (numpy/core/src/umath/loops_exponent_log.dispatch.c.src, the AVX2 /
// AVX512F kernel that np.log uses for float32 on x86-64, arrays and scalars alike): a rational
// minimax approximation of log(1 + r) with float32 fused multiply-adds. It is up to 3.8 ulp from
// the correctly rounded log, and diffusers' Karras timesteps depend on those last bits.
const LOG_P = [
  0, 0.9999999999999999, 2.112677543073053, 1.4800006335765066, 0.3808837741388408, 0.025899791179079226,
].map(f32);
const LOG_Q = [
  1, 2.6126775430731093, 2.453006071784736, 0.9864942958519419, 0.15464763749839067, 0.005875095403124574,
].map(f32);
const LN2_F32 = f32(Math.LN2);
const SQRT1_2_F32 = f32(Math.SQRT1_2);

/** `np.log(x)` for a float32 `x`, as numpy 1.24 computes it (see above). */
export function numpyLogF32(x: number): number {
  x = f32(x);
  if (Number.isNaN(x) || x < 0) return Number.NaN;
  if (x === 0) return Number.NEGATIVE_INFINITY;
  if (x === Number.POSITIVE_INFINITY) return x;
  // x = m · 2^e with m in [0.5, 1); subnormals scaled up first.
  let e = 0;
  let v = x;
  if (v < 2 ** -126) {
    v *= 2 ** 100;
    e = -100;
  }
  f32Scratch[0] = v;
  const bits = u32Scratch[0] as number;
  e += (bits >>> 23) - 126;
  u32Scratch[0] = (bits & 0x7fffff) | (126 << 23);
  let m = f32Scratch[0] as number;
  // Bring m into (√½, √2].
  if (m <= SQRT1_2_F32) {
    m += m;
    e -= 1;
  }
  const r = m - 1;
  let num = fmaF32(LOG_P[5] as number, r, LOG_P[4] as number);
  let den = fmaF32(LOG_Q[5] as number, r, LOG_Q[4] as number);
  for (let k = 3; k >= 0; k--) {
    num = fmaF32(num, r, LOG_P[k] as number);
    den = fmaF32(den, r, LOG_Q[k] as number);
  }
  return fmaF32(e, LN2_F32, f32(num / den));
}
