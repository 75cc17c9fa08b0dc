/**
 * torch.nn.functional.interpolate(x, size=(h, w), mode, align_corners=False, antialias) on
 * [N, C, H, W] float32 tensors: what AUTOMATIC1111's latent upscalers ("Latent", "Latent
 * (bicubic antialiased)", …) and its img2img resize_mode 3 do to latents.
 *
 * Every mode is separable: each output row/column is a weighted sum of input rows/columns, so
 * one set of taps per axis is built (`axisTaps`) and applied along W, then along H. Sums are
 * made in float64 and rounded to float32 once at the end (torch sums in float32: results agree
 * to about one float32 ulp).
 *
 * Source positions follow ATen's UpSample.h with a size given: scale = in / out;
 * - nearest: floor(dst · scale); nearest-exact: floor((dst + 0.5) · scale) (both clamped);
 * - bilinear: (dst + 0.5) · scale − 0.5, clamped at 0, two taps;
 * - bicubic: the same position unclamped, four taps of Keys' cubic with A = −0.75, indices
 *   clamped to the edge;
 * - antialias (bilinear, bicubic; ATen's _upsample_*_aa, as PIL's resampling): the filter
 *   (triangle; cubic with A = −0.5) is stretched by the scale when shrinking, taps outside the
 *   input are dropped and the weights normalised to sum 1.
 */
import { RequestError } from "./errors.js";
import type { TensorF32 } from "./networks.js";

export type InterpolationMode = "nearest" | "nearest-exact" | "bilinear" | "bicubic";
export const INTERPOLATION_MODES: readonly InterpolationMode[] = ["nearest", "nearest-exact", "bilinear", "bicubic"];

export interface InterpolateOptions {
  mode: InterpolationMode;
  /** Only with bilinear and bicubic (torch refuses it for the nearest modes). */
  antialias?: boolean;
}

/** Output index → input indices and their weights. */
interface Taps {
  index: Int32Array;
  weight: Float64Array;
  /** Taps per output index (unused entries weigh 0). */
  width: number;
}

/** Keys' cubic convolution kernel (ATen's cubic_convolution1/2), |x| < 2. */
function cubic(x: number, a: number): number {
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((t - 5) * t + 8) * t * a - 4 * a;
  return 0;
}

function axisTaps(inSize: number, outSize: number, mode: InterpolationMode, antialias: boolean): Taps {
  const scale = inSize / outSize;
  const clamp = (i: number) => Math.min(Math.max(i, 0), inSize - 1);
  if (antialias && (mode === "bilinear" || mode === "bicubic")) {
    // ATen's _compute_index_ranges_weights (interp_size 2 or 4), the filter widened when shrinking.
    const half = mode === "bilinear" ? 1 : 2;
    const support = scale >= 1 ? half * scale : half;
    const invScale = scale >= 1 ? 1 / scale : 1;
    const filter = mode === "bilinear" ? (x: number) => Math.max(0, 1 - Math.abs(x)) : (x: number) => cubic(x, -0.5);
    const width = Math.ceil(support) * 2 + 1;
    const index = new Int32Array(outSize * width);
    const weight = new Float64Array(outSize * width);
    for (let o = 0; o < outSize; o++) {
      const center = scale * (o + 0.5);
      // int64_t(...) truncates toward zero.
      const min = Math.max(Math.trunc(center - support + 0.5), 0);
      const count = Math.min(Math.trunc(center + support + 0.5), inSize) - min;
      let total = 0;
      for (let j = 0; j < count; j++) {
        const w = filter((j + min - center + 0.5) * invScale);
        index[o * width + j] = min + j;
        weight[o * width + j] = w;
        total += w;
      }
      if (total !== 0) for (let j = 0; j < count; j++) (weight[o * width + j] as number) /= total;
    }
    return { index, weight, width };
  }
  const width = mode === "bicubic" ? 4 : mode === "bilinear" ? 2 : 1;
  const index = new Int32Array(outSize * width);
  const weight = new Float64Array(outSize * width);
  for (let o = 0; o < outSize; o++) {
    const k = o * width;
    if (mode === "nearest" || mode === "nearest-exact") {
      const src = mode === "nearest" ? o * scale : (o + 0.5) * scale;
      index[k] = Math.min(Math.floor(src), inSize - 1);
      weight[k] = 1;
    } else if (mode === "bilinear") {
      const src = Math.max(scale * (o + 0.5) - 0.5, 0);
      const i0 = Math.floor(src);
      const lambda = src - i0;
      index[k] = Math.min(i0, inSize - 1);
      index[k + 1] = Math.min(i0 + 1, inSize - 1);
      weight[k] = 1 - lambda;
      weight[k + 1] = lambda;
    } else {
      const src = scale * (o + 0.5) - 0.5;
      const i = Math.floor(src);
      const t = src - i;
      const a = -0.75;
      const w = [cubic(t + 1, a), cubic(t, a), cubic(1 - t, a), cubic(2 - t, a)];
      for (let j = 0; j < 4; j++) {
        index[k + j] = clamp(i - 1 + j);
        weight[k + j] = w[j] as number;
      }
    }
  }
  return { index, weight, width };
}

/**
 * F.interpolate(x, size=(height, width), mode=…, antialias=…) of a [N, C, H, W] tensor. The same
 * size comes back as a copy (every mode is then the identity).
 */
export function interpolate(x: TensorF32, height: number, width: number, opts: InterpolateOptions): TensorF32 {
  const { mode } = opts;
  const antialias = opts.antialias ?? false;
  if (x.shape.length !== 4) throw new RequestError(`interpolate takes [N, C, H, W], got [${x.shape.join(", ")}]`);
  if (!INTERPOLATION_MODES.includes(mode)) throw new RequestError(`unknown interpolation mode ${String(mode)}`);
  if (antialias && mode !== "bilinear" && mode !== "bicubic") {
    throw new RequestError(`antialias is for bilinear and bicubic, not ${mode}`);
  }
  for (const v of [height, width]) {
    if (!Number.isInteger(v) || v < 1) throw new RequestError(`interpolate's size must be positive integers, got ${v}`);
  }
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const planes = n * c;
  const tw = axisTaps(w, width, mode, antialias);
  const th = axisTaps(h, height, mode, antialias);
  const out = new Float32Array(planes * height * width);
  const row = new Float64Array(h * width);
  for (let p = 0; p < planes; p++) {
    const src = x.data.subarray(p * h * w, (p + 1) * h * w);
    // Along W: every input row to `width` columns.
    for (let y = 0; y < h; y++) {
      for (let o = 0; o < width; o++) {
        let s = 0;
        for (let j = 0; j < tw.width; j++) {
          const k = o * tw.width + j;
          const wt = tw.weight[k] as number;
          if (wt !== 0) s += wt * (src[y * w + (tw.index[k] as number)] as number);
        }
        row[y * width + o] = s;
      }
    }
    // Along H.
    const base = p * height * width;
    for (let o = 0; o < height; o++) {
      for (let xo = 0; xo < width; xo++) {
        let s = 0;
        for (let j = 0; j < th.width; j++) {
          const k = o * th.width + j;
          const wt = th.weight[k] as number;
          if (wt !== 0) s += wt * (row[(th.index[k] as number) * width + xo] as number);
        }
        out[base + o * width + xo] = s;
      }
    }
  }
  return { data: out, shape: [n, c, height, width] };
}

/**
 * AUTOMATIC1111's latent upscale modes (shared.latent_upscale_modes) and the interpolation each
 * one is. "Latent" is also what a hires fix with no hr_upscaler uses (its default mode).
 */
export const LATENT_UPSCALE_MODES: Readonly<Record<string, InterpolateOptions>> = {
  Latent: { mode: "bilinear", antialias: false },
  "Latent (antialiased)": { mode: "bilinear", antialias: true },
  "Latent (bicubic)": { mode: "bicubic", antialias: false },
  "Latent (bicubic antialiased)": { mode: "bicubic", antialias: true },
  "Latent (nearest)": { mode: "nearest", antialias: false },
  "Latent (nearest-exact)": { mode: "nearest-exact", antialias: false },
};
