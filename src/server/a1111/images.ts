/**
 * The picture operations of AUTOMATIC1111's img2img and inpainting, on 8-bit pixels: its
 * images.resize_image (resize modes 0–2), the mask blur of processing.py (OpenCV's GaussianBlur,
 * once along x and once along y), masking.py's crop region around the mask and its expansion to
 * the processing ratio, masking.fill, and the paste-back of the result over the original.
 *
 * The heavy work (resizing, convolution, blurring) runs in libvips through sharp, off the event
 * loop: a 64-pixel blur of a large mask is hundreds of millions of multiply-adds.
 */
import sharp, { type Sharp } from "sharp";
import { resizePixels } from "../../engine/image-input.js";
import type { GrayImage, RgbImage } from "../../engine/index.js";

type Pixels = RgbImage | GrayImage;

function channelsOf(im: Pixels): number {
  return im.data.length / (im.width * im.height);
}

function raw(im: Pixels, channels = channelsOf(im)) {
  return sharp(Buffer.from(im.data.buffer, im.data.byteOffset, im.data.byteLength), {
    raw: { width: im.width, height: im.height, channels: channels as 1 | 3 | 4 },
  });
}

async function toPixels<T extends Pixels>(op: Sharp, like: T, width: number, height: number): Promise<T> {
  const channels = channelsOf(like);
  const out = await (channels === 1 ? op.toColourspace("b-w") : op).raw({ depth: "uchar" }).toBuffer();
  if (out.length !== width * height * channels) throw new Error(`image op: ${out.length} bytes back`);
  return { ...like, width, height, data: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) };
}

/** A w × h window of a picture (inside it). */
export function crop<T extends Pixels>(im: T, x: number, y: number, w: number, h: number): T {
  const c = channelsOf(im);
  const data = new Uint8Array(w * h * c);
  for (let r = 0; r < h; r++) {
    const from = ((y + r) * im.width + x) * c;
    data.set(im.data.subarray(from, from + w * c), r * w * c);
  }
  return { ...im, width: w, height: h, data };
}

/** `src` written into `dst` (a copy) with its top-left corner at (x, y), clipped to dst. */
function paste<T extends Pixels>(dst: T, src: T, x: number, y: number): T {
  const c = channelsOf(dst);
  const data = Uint8Array.from(dst.data);
  for (let r = 0; r < src.height; r++) {
    const dy = y + r;
    if (dy < 0 || dy >= dst.height) continue;
    for (let q = 0; q < src.width; q++) {
      const dx = x + q;
      if (dx < 0 || dx >= dst.width) continue;
      for (let k = 0; k < c; k++) data[(dy * dst.width + dx) * c + k] = src.data[(r * src.width + q) * c + k] as number;
    }
  }
  return { ...dst, data };
}

function blank<T extends Pixels>(like: T, width: number, height: number): T {
  return { ...like, width, height, data: new Uint8Array(width * height * channelsOf(like)) };
}

/** PIL's Lanczos kernel (a = 3). */
function lanczos(x: number): number {
  if (x === 0) return 1;
  if (Math.abs(x) >= 3) return 0;
  const px = Math.PI * x;
  return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
}

/**
 * PIL's resize of a zero-thickness box at one edge (resize((w, n), box=(0, 0, w, 0)) and the
 * like): every output line is the Lanczos blend around that edge (the three lines nearest it,
 * weighted lanczos(0.5), lanczos(1.5), lanczos(2.5) from the edge in), repeated `n` times.
 */
function edgeBand<T extends Pixels>(im: T, edge: "top" | "bottom" | "left" | "right", n: number): T {
  const c = channelsOf(im);
  const vertical = edge === "top" || edge === "bottom";
  const size = vertical ? im.height : im.width;
  const along = vertical ? im.width : im.height;
  const taps = Math.min(3, size);
  const weights = Array.from({ length: taps }, (_, k) => lanczos(k + 0.5));
  const total = weights.reduce((a, b) => a + b, 0);
  const line = new Uint8Array(along * c);
  for (let i = 0; i < along; i++) {
    for (let k = 0; k < c; k++) {
      let s = 0;
      for (let t = 0; t < taps; t++) {
        const j = edge === "top" || edge === "left" ? t : size - 1 - t;
        const [x, y] = vertical ? [i, j] : [j, i];
        s += (weights[t] as number) * (im.data[(y * im.width + x) * c + k] as number);
      }
      line[i * c + k] = Math.min(255, Math.max(0, Math.round(s / total)));
    }
  }
  const [w, h] = vertical ? [along, n] : [n, along];
  const data = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const from = (vertical ? x : y) * c;
      data.set(line.subarray(from, from + c), (y * w + x) * c);
    }
  }
  return { ...im, width: w, height: h, data };
}

/**
 * A1111's images.resize_image(mode, im, width, height) for modes 0–2 (Lanczos):
 * 0 just resize; 1 crop and resize (scale to cover, centre crop); 2 resize and fill (scale to
 * fit, centre, the empty bands filled by stretching the picture's edge lines). Mode 3 (latent
 * upscale) resizes the latents, not the picture (the engine's latentResize); where a picture must
 * be resized anyway (an inpainting mask and its picture), it is mode 0 here.
 */
export async function resizeImage<T extends Pixels>(mode: number, im: T, width: number, height: number): Promise<T> {
  if (mode !== 1 && mode !== 2) return resizePixels(im, width, height);
  const ratio = width / height;
  const srcRatio = im.width / im.height;
  // Python's //: both operands are positive, so floor.
  const cover = mode === 1 ? ratio > srcRatio : ratio < srcRatio;
  const srcW = cover ? width : Math.floor((im.width * height) / im.height);
  const srcH = cover ? Math.floor((im.height * width) / im.width) : height;
  const resized = await resizePixels(im, Math.max(1, srcW), Math.max(1, srcH));
  const x = Math.floor(width / 2) - Math.floor(srcW / 2);
  const y = Math.floor(height / 2) - Math.floor(srcH / 2);
  let out = paste(blank(im, width, height), resized, x, y);
  if (mode === 2) {
    if (ratio < srcRatio) {
      const fill = Math.floor(height / 2) - Math.floor(srcH / 2);
      if (fill > 0) {
        out = paste(out, edgeBand(resized, "top", fill), 0, 0);
        out = paste(out, edgeBand(resized, "bottom", fill), 0, fill + srcH);
      }
    } else if (ratio > srcRatio) {
      const fill = Math.floor(width / 2) - Math.floor(srcW / 2);
      if (fill > 0) {
        out = paste(out, edgeBand(resized, "left", fill), 0, 0);
        out = paste(out, edgeBand(resized, "right", fill), fill + srcW, 0);
      }
    }
  }
  return out;
}

/** OpenCV's Gaussian kernel for a sigma: exp(−(i − (k−1)/2)² / 2σ²), normalised. */
export function gaussianKernel(size: number, sigma: number): number[] {
  const mid = (size - 1) / 2;
  const k = Array.from({ length: size }, (_, i) => Math.exp(-((i - mid) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  return k.map((v) => v / sum);
}

/** A1111's mask blur kernel size for a sigma: 2·int(2.5σ + 0.5) + 1. */
export function blurKernelSize(sigma: number): number {
  return 2 * Math.trunc(2.5 * sigma + 0.5) + 1;
}

/**
 * cv2.GaussianBlur(mask, (k, 1), σ) (axis "x") or (1, k) (axis "y") with A1111's kernel size:
 * a one-dimensional Gaussian, edges reflected without repeating the edge pixel (OpenCV's
 * BORDER_REFLECT_101, libvips' mirror). Rounded to 8 bits (OpenCV's fixed-point sums can differ by one).
 */
export async function blurMask(mask: GrayImage, sigma: number, axis: "x" | "y"): Promise<GrayImage> {
  if (sigma <= 0) return mask;
  const size = blurKernelSize(sigma);
  const r = (size - 1) / 2;
  const kernel = gaussianKernel(size, sigma);
  const along = axis === "x" ? mask.width : mask.height;
  // A reflection needs two pixels; one row or column has nothing to blur with.
  if (along < 2) return mask;
  // BORDER_REFLECT_101 (…cb|abc…): libvips' own mirror repeats the edge pixel, so the margin is made here.
  const reflect = (i: number) => {
    let j = i;
    while (j < 0 || j >= along) j = j < 0 ? -j : 2 * (along - 1) - j;
    return j;
  };
  const pw = axis === "x" ? mask.width + 2 * r : mask.width;
  const ph = axis === "x" ? mask.height : mask.height + 2 * r;
  const pdata = new Uint8Array(pw * ph);
  for (let y = 0; y < ph; y++) {
    for (let x = 0; x < pw; x++) {
      const sx = axis === "x" ? reflect(x - r) : x;
      const sy = axis === "x" ? y : reflect(y - r);
      pdata[y * pw + x] = mask.data[sy * mask.width + sx] as number;
    }
  }
  const padded: GrayImage = { width: pw, height: ph, data: pdata };
  // libvips takes kernels of 3 × 3 and more: the 1-D kernel is the middle line of a 3-line one.
  const flat = new Array<number>(size * 3).fill(0);
  for (let i = 0; i < size; i++) flat[axis === "x" ? size + i : i * 3 + 1] = kernel[i] as number;
  const op = raw(padded).convolve({
    width: axis === "x" ? size : 3,
    height: axis === "x" ? 3 : size,
    kernel: flat,
    scale: 1,
    offset: 0,
  });
  const blurred = await toPixels(op, padded, padded.width, padded.height);
  return axis === "x" ? crop(blurred, r, 0, mask.width, mask.height) : crop(blurred, 0, r, mask.width, mask.height);
}

/** (x1, y1, x2, y2): x2 and y2 past the end. */
export type Region = [number, number, number, number];

/**
 * masking.get_crop_region: the box of the mask's non-zero pixels, grown by `pad` and clipped to
 * the picture; undefined for a mask with nothing to repaint.
 */
export function cropRegion(mask: GrayImage, pad: number): Region | undefined {
  const { width: w, height: h, data } = mask;
  let x1 = w;
  let y1 = h;
  let x2 = -1;
  let y2 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (data[y * w + x] === 0) continue;
      if (x < x1) x1 = x;
      if (x > x2) x2 = x;
      if (y < y1) y1 = y;
      if (y > y2) y2 = y;
    }
  }
  if (x2 < 0) return undefined;
  return [Math.max(x1 - pad, 0), Math.max(y1 - pad, 0), Math.min(x2 + 1 + pad, w), Math.min(y2 + 1 + pad, h)];
}

/**
 * masking.expand_crop_region: the box widened (or heightened), centred, to the processing
 * width : height ratio, moved back inside the picture where it would leave it.
 */
export function expandCropRegion(
  region: Region,
  width: number,
  height: number,
  imageW: number,
  imageH: number,
): Region {
  let [x1, y1, x2, y2] = region;
  const ratioCrop = (x2 - x1) / (y2 - y1);
  const ratio = width / height;
  if (ratioCrop > ratio) {
    const diff = Math.trunc((x2 - x1) / ratio - (y2 - y1));
    y1 -= Math.floor(diff / 2);
    y2 += diff - Math.floor(diff / 2);
    if (y2 >= imageH) {
      const d = y2 - imageH;
      y2 -= d;
      y1 -= d;
    }
    if (y1 < 0) {
      y2 -= y1;
      y1 = 0;
    }
    if (y2 >= imageH) y2 = imageH;
  } else {
    const diff = Math.trunc((y2 - y1) * ratio - (x2 - x1));
    x1 -= Math.floor(diff / 2);
    x2 += diff - Math.floor(diff / 2);
    if (x2 >= imageW) {
      const d = x2 - imageW;
      x2 -= d;
      x1 -= d;
    }
    if (x1 < 0) {
      x2 -= x1;
      x1 = 0;
    }
    if (x2 >= imageW) x2 = imageW;
  }
  return [x1, y1, x2, y2];
}

/**
 * masking.fill (inpainting_fill 0): the area to repaint filled with the colours around it, by
 * layering ever less blurred copies of the kept pixels (premultiplied by how much they are kept)
 * over each other. The blurs are libvips' Gaussian with sigma = PIL's radius.
 */
export async function fillMasked(image: RgbImage, mask: GrayImage): Promise<RgbImage> {
  const n = image.width * image.height;
  // RGBA: the picture, alpha = what is kept.
  const rgba = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) rgba[i * 4 + k] = image.data[i * 3 + k] as number;
    rgba[i * 4 + 3] = 255 - (mask.data[i] as number);
  }
  const kept = { width: image.width, height: image.height, data: rgba };
  // The composite so far, RGBA in float, starting transparent.
  const acc = new Float64Array(n * 4);
  for (const [radius, repeats] of [
    [256, 1],
    [64, 1],
    [16, 2],
    [4, 4],
    [2, 2],
    [0, 1],
  ] as const) {
    // sharp premultiplies by alpha around a blur, as PIL's RGBa mode does.
    const layer =
      radius === 0 ? rgba : (await raw(kept, 4).blur(radius).raw({ depth: "uchar" }).toBuffer()).subarray(0, n * 4);
    for (let r = 0; r < repeats; r++) {
      for (let i = 0; i < n; i++) {
        // Porter-Duff "over", as Image.alpha_composite.
        const sa = (layer[i * 4 + 3] as number) / 255;
        const da = acc[i * 4 + 3] as number;
        const oa = sa + da * (1 - sa);
        for (let k = 0; k < 3; k++) {
          const sc = layer[i * 4 + k] as number;
          const dc = acc[i * 4 + k] as number;
          acc[i * 4 + k] = oa === 0 ? 0 : (sc * sa + dc * da * (1 - sa)) / oa;
        }
        acc[i * 4 + 3] = oa;
      }
    }
  }
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) data[i * 3 + k] = Math.round(acc[i * 4 + k] as number);
  return { width: image.width, height: image.height, data };
}

/**
 * A1111's apply_overlay: the generated picture (pasted back at `at`, resized to its box with
 * "crop and resize", when only a crop was generated) under the original, whose pixels show
 * through where the overlay mask keeps them (alpha = 255 − overlay mask).
 */
export async function overlayOriginal(
  generated: RgbImage,
  original: RgbImage,
  overlayMask: GrayImage,
  at?: { x: number; y: number; width: number; height: number },
): Promise<RgbImage> {
  let base: RgbImage;
  let covered: GrayImage | undefined;
  if (at) {
    const fitted = await resizeImage(1, generated, at.width, at.height);
    base = paste(blank(original, original.width, original.height), fitted, at.x, at.y);
    // Outside the pasted box the base is transparent.
    covered = paste(
      blank(overlayMask, original.width, original.height),
      { ...overlayMask, width: at.width, height: at.height, data: new Uint8Array(at.width * at.height).fill(255) },
      at.x,
      at.y,
    );
  } else {
    base = generated;
  }
  const n = original.width * original.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const sa = (255 - (overlayMask.data[i] as number)) / 255;
    const da = covered ? (covered.data[i] as number) / 255 : 1;
    const oa = sa + da * (1 - sa);
    for (let k = 0; k < 3; k++) {
      const v =
        oa === 0
          ? 0
          : ((original.data[i * 3 + k] as number) * sa + (base.data[i * 3 + k] as number) * da * (1 - sa)) / oa;
      data[i * 3 + k] = Math.round(v);
    }
  }
  return { width: original.width, height: original.height, data };
}
