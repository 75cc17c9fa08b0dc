/**
 * The invisible watermark diffusers' SDXL pipelines put on their outputs (StableDiffusionXLWatermarker:
 * the `invisible-watermark` package's "dwtDct" method with a fixed 48-bit message), so that images
 * made here are marked as SDXL's are and read back by the same decoder.
 *
 * The method, as that package does it (EmbedMaxDct, scales [0, 36, 36], 4×4 blocks):
 * - the picture in BGR, as floats 0–255, is converted to YUV as OpenCV does for floats (its
 *   chroma offset is 0.5 for floating-point images, not 128: it moves the quantisation grid, so
 *   it matters);
 * - only the U plane is marked: the package loops over channels 0 and 1 and the scale of Y is 0;
 * - a one-level Haar DWT of the plane (cropped to multiples of 4), and the approximation band is
 *   cut into 4×4 blocks, row by row; block n carries bit n mod 48;
 * - in each block the coefficient of largest magnitude other than the first is quantised: its
 *   magnitude becomes (⌊|v| / 36⌋ + 0.25 + 0.5·bit)·36, its sign kept;
 * - the inverse DWT is given the horizontal and vertical detail bands swapped (as the package
 *   calls pywt.idwt2), which for Haar transposes every 2×2 pixel square of the plane; kept, so
 *   the pictures are the same as diffusers';
 * - back to BGR. diffusers skips pictures narrower than 256 pixels; the package refuses any with
 *   fewer than 256×256 pixels (diffusers would fail there): such pictures are left unmarked here.
 *
 * The picture is handed over in BGR as diffusers ≥ 0.27 and Stability's own scripts hand it (so
 * a decoder reading the PNG with OpenCV finds the mark). cog-sdxl pins diffusers ≤ 0.25, which
 * passed RGB as if it were BGR: Replicate's stability-ai/sdxl marks a U plane made from swapped
 * red and blue, which that decoder does not read; that older order is not reproduced here.
 *
 * diffusers marks the decoded floats before they are rounded to 8 bits; this marks the 8-bit
 * picture (one more rounding, half a level at most, before the mark).
 * Decoding: the same transform, and a bit is 1 where |v| mod 36 > 18, voted over its blocks.
 */
import type { RgbImage } from "./image.js";

/** diffusers' WATERMARK_MESSAGE, most significant bit first. */
export const WATERMARK_MESSAGE = 0b101100111110110010010000011110111011000110011110n;
export const WATERMARK_BITS: readonly number[] = [...WATERMARK_MESSAGE.toString(2)].map(Number);

const SCALE = 36;
const BLOCK = 4;
const MIN_WIDTH = 256;
const MIN_PIXELS = 256 * 256;

// OpenCV's RGB↔YUV coefficients (color_yuv), and its chroma offset for float pictures.
const R2Y = 0.299;
const G2Y = 0.587;
const B2Y = 0.114;
const B2U = 0.492111;
const R2V = 0.877283;
const U2B = 2.032;
const U2G = -0.395;
const V2G = -0.581;
const V2R = 1.14;
const DELTA = 0.5;

/** Whether diffusers would mark (and the decoder could read) a picture of this size. */
export function canWatermark(width: number, height: number): boolean {
  return width >= MIN_WIDTH && width * height >= MIN_PIXELS;
}

interface Planes {
  y: Float32Array;
  u: Float32Array;
  v: Float32Array;
}

function toYuv(image: RgbImage): Planes {
  const n = image.width * image.height;
  const y = new Float32Array(n);
  const u = new Float32Array(n);
  const v = new Float32Array(n);
  const d = image.data;
  for (let i = 0; i < n; i++) {
    const r = d[i * 3] as number;
    const g = d[i * 3 + 1] as number;
    const b = d[i * 3 + 2] as number;
    const yy = R2Y * r + G2Y * g + B2Y * b;
    y[i] = yy;
    u[i] = (b - yy) * B2U + DELTA;
    v[i] = (r - yy) * R2V + DELTA;
  }
  return { y, u, v };
}

/** The Haar approximation band of the plane's top-left rows × cols (both multiples of 4). */
function approximation(plane: Float32Array, width: number, rows: number, cols: number): Float32Array {
  const w = cols / 2;
  const out = new Float32Array((rows / 2) * w);
  for (let i = 0; i < rows / 2; i++) {
    for (let j = 0; j < w; j++) {
      const p = 2 * i * width + 2 * j;
      out[i * w + j] =
        ((plane[p] as number) +
          (plane[p + 1] as number) +
          (plane[p + width] as number) +
          (plane[p + width + 1] as number)) /
        2;
    }
  }
  return out;
}

/** Index (1–15) of the block's largest magnitude after the first coefficient; the first such on ties. */
function strongest(band: Float32Array, w: number, bi: number, bj: number): number {
  let best = 1;
  let most = -1;
  for (let k = 1; k < BLOCK * BLOCK; k++) {
    const m = Math.abs(band[(bi * BLOCK + Math.floor(k / BLOCK)) * w + bj * BLOCK + (k % BLOCK)] as number);
    if (m > most) {
      most = m;
      best = k;
    }
  }
  return best;
}

function forEachBlock(rows: number, cols: number, visit: (bi: number, bj: number, n: number) => void): void {
  const blockRows = Math.floor(rows / 2 / BLOCK);
  const blockCols = Math.floor(cols / 2 / BLOCK);
  let n = 0;
  for (let bi = 0; bi < blockRows; bi++) for (let bj = 0; bj < blockCols; bj++) visit(bi, bj, n++);
}

const clampByte = (x: number) => Math.min(255, Math.max(0, Math.round(x)));

/** The picture with diffusers' SDXL watermark (`bits`: its message by default); unchanged when too small. */
export function watermarked(image: RgbImage, bits: readonly number[] = WATERMARK_BITS): RgbImage {
  const { width, height } = image;
  if (!canWatermark(width, height)) return image;
  const rows = Math.floor(height / 4) * 4;
  const cols = Math.floor(width / 4) * 4;
  const { y, u, v } = toYuv(image);
  const band = approximation(u, width, rows, cols);
  const w = cols / 2;
  forEachBlock(rows, cols, (bi, bj, n) => {
    const k = strongest(band, w, bi, bj);
    const at = (bi * BLOCK + Math.floor(k / BLOCK)) * w + bj * BLOCK + (k % BLOCK);
    const value = band[at] as number;
    const bit = bits[n % bits.length] as number;
    const magnitude = (Math.floor(Math.abs(value) / SCALE) + 0.25 + 0.5 * bit) * SCALE;
    band[at] = value >= 0 ? magnitude : -magnitude;
  });
  // Inverse Haar with the detail bands swapped: each 2×2 square transposed, its mean from the band.
  for (let i = 0; i < rows / 2; i++) {
    for (let j = 0; j < w; j++) {
      const p = 2 * i * width + 2 * j;
      const a = u[p] as number;
      const b = u[p + 1] as number;
      const c = u[p + width] as number;
      const d = u[p + width + 1] as number;
      const shift = ((band[i * w + j] as number) - (a + b + c + d) / 2) / 2;
      u[p] = a + shift;
      u[p + 1] = c + shift;
      u[p + width] = b + shift;
      u[p + width + 1] = d + shift;
    }
  }
  const out = new Uint8Array(image.data.length);
  for (let i = 0; i < width * height; i++) {
    const yy = y[i] as number;
    const uu = (u[i] as number) - DELTA;
    const vv = (v[i] as number) - DELTA;
    out[i * 3] = clampByte(yy + V2R * vv);
    out[i * 3 + 1] = clampByte(yy + U2G * uu + V2G * vv);
    out[i * 3 + 2] = clampByte(yy + U2B * uu);
  }
  return { width, height, data: out };
}

/** Reads a `length`-bit dwtDct watermark back (undefined when the picture is too small to carry one). */
export function readWatermark(image: RgbImage, length = WATERMARK_BITS.length): number[] | undefined {
  const { width, height } = image;
  if (!canWatermark(width, height)) return undefined;
  const rows = Math.floor(height / 4) * 4;
  const cols = Math.floor(width / 4) * 4;
  const band = approximation(toYuv(image).u, width, rows, cols);
  const w = cols / 2;
  const ones = new Array<number>(length).fill(0);
  const counts = new Array<number>(length).fill(0);
  forEachBlock(rows, cols, (bi, bj, n) => {
    const k = strongest(band, w, bi, bj);
    const value = Math.abs(band[(bi * BLOCK + Math.floor(k / BLOCK)) * w + bj * BLOCK + (k % BLOCK)] as number);
    const bit = n % length;
    counts[bit] = (counts[bit] as number) + 1;
    if (value % SCALE > 0.5 * SCALE) ones[bit] = (ones[bit] as number) + 1;
  });
  // The package's vote: the mean score × 255 > 127.
  return ones.map((o, i) => ((o / (counts[i] as number)) * 255 > 127 ? 1 : 0));
}
