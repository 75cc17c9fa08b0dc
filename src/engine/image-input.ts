/**
 * Image inputs (img2img pictures and inpainting masks): decoding PNG / JPEG / WebP bytes into
 * 8-bit RGB, sizing them, and turning them into the tensors diffusers' VaeImageProcessor makes.
 *
 * Decoding is sharp's (libvips). Untrusted bytes are checked cheaply first: the format is read
 * from the header and only PNG, JPEG and WebP are accepted (no SVG, TIFF, GIF, HEIF…), and the
 * header's pixel count is checked against a limit before any pixel is decoded, so a small file
 * claiming a huge picture costs nothing.
 */
import sharp, { type Metadata, type Sharp } from "sharp";
import { RequestError } from "./errors.js";
import type { RgbImage } from "./image.js";
import type { TensorF32 } from "./networks.js";

// Decoded pictures are used once; libvips' operation cache would only hold on to memory.
sharp.cache(false);

/** An 8-bit single-channel picture (a mask), row-major. */
export interface GrayImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A decoded input: RGB, plus the alpha channel when the file had one (OpenAI's masks live in it). */
export interface DecodedImage extends RgbImage {
  alpha?: Uint8Array;
  format: "png" | "jpeg" | "webp";
}

/** 4096 × 4096: four times SD's largest native size on each side, and 48 MiB of RGB. */
export const DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096;

export interface DecodeOptions {
  /** Largest width × height accepted, checked from the header before decoding. */
  maxPixels?: number;
  /** Names the input in error messages ("image", "mask"). */
  field?: string;
}

const FORMATS = new Set(["png", "jpeg", "webp"]);

/**
 * PNG, JPEG or WebP bytes → 8-bit RGB (EXIF orientation applied, as diffusers' load_image does;
 * the first frame of an animation). Anything else, a truncated or corrupt file, or one over the
 * pixel limit is a RequestError naming the field.
 */
export async function decodeImage(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<DecodedImage> {
  const field = opts.field ?? "image";
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  if (bytes.length === 0) throw new RequestError(`${field} is empty`, field);
  const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch {
    throw new RequestError(`${field} is not a PNG, JPEG or WebP image`, field);
  }
  if (!meta.format || !FORMATS.has(meta.format)) {
    throw new RequestError(`${field} is a ${meta.format ?? "unknown"} file; PNG, JPEG or WebP expected`, field);
  }
  const { width, height } = meta;
  if (!width || !height) throw new RequestError(`${field} has no size in its header`, field);
  if (width * height > maxPixels) {
    throw new RequestError(
      `${field} is ${width}×${height} (${formatPixels(width * height)}), over the limit of ${formatPixels(maxPixels)}`,
      field,
    );
  }
  try {
    // failOn "truncated": a cut-off file is an error, not a picture with a grey bottom.
    const decoder = sharp(input, { limitInputPixels: maxPixels, failOn: "truncated", pages: 1 }).autoOrient();
    if (meta.format === "jpeg" && meta.space === "cmyk") return await fromCmyk(decoder);
    const { data, info } = await decoder
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    const n = info.width * info.height;
    const rgb = new Uint8Array(n * 3);
    let alpha: Uint8Array | undefined;
    const c = info.channels;
    if (c === 3) rgb.set(data.subarray(0, n * 3));
    else {
      if (c === 4) alpha = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        // PIL's convert("RGB") drops alpha without compositing; diffusers sees the raw colours.
        for (let k = 0; k < 3; k++) rgb[i * 3 + k] = data[i * c + Math.min(k, c - 1)] as number;
        if (alpha) alpha[i] = data[i * c + 3] as number;
      }
    }
    return { width: info.width, height: info.height, data: rgb, alpha, format: meta.format as DecodedImage["format"] };
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/\s+/g, " ").trim() : String(err);
    throw new RequestError(`${field} could not be decoded (truncated or corrupt ${meta.format}): ${why}`, field);
  }
}

/**
 * A CMYK JPEG as PIL's convert("RGB") makes it, which is how diffusers, Cog models and A1111
 * read pictures: the inks as stored (Adobe polarity), no ICC transform, each channel
 * (255 − K) − C·(255 − K)/255 in PIL's rounded fixed point.
 */
async function fromCmyk(decoder: Sharp): Promise<DecodedImage> {
  const { data, info } = await decoder
    .pipelineColourspace("cmyk")
    .toColourspace("cmyk")
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new Error(`CMYK decoded to ${info.channels} channels`);
  const n = info.width * info.height;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const nk = 255 - (data[i * 4 + 3] as number);
    for (let k = 0; k < 3; k++) {
      const t = (data[i * 4 + k] as number) * nk + 128;
      rgb[i * 3 + k] = Math.max(0, nk - (((t >> 8) + t) >> 8));
    }
  }
  return { width: info.width, height: info.height, data: rgb, format: "jpeg" };
}

function formatPixels(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} megapixels` : `${n} pixels`;
}

/** PIL's convert("L"): ITU-R 601-2 luma in PIL's fixed-point arithmetic. */
export function toGray(image: RgbImage): GrayImage {
  const n = image.width * image.height;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = image.data[i * 3] as number;
    const g = image.data[i * 3 + 1] as number;
    const b = image.data[i * 3 + 2] as number;
    out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
  }
  return { width: image.width, height: image.height, data: out };
}

/**
 * OpenAI's images/edits convention as an inpainting mask: fully transparent pixels (alpha 0) are
 * the area to edit (white), everything else is kept (black). A picture without alpha edits nothing.
 */
export function maskFromTransparency(image: DecodedImage): GrayImage {
  const out = new Uint8Array(image.width * image.height);
  if (image.alpha) for (let i = 0; i < out.length; i++) out[i] = image.alpha[i] === 0 ? 255 : 0;
  return { width: image.width, height: image.height, data: out };
}

/**
 * The size a picture is generated at: width × height when given (the picture is resized to it),
 * else its own size rounded down to a multiple of `factor` (diffusers' default_height_width).
 */
export function targetSize(
  image: { width: number; height: number },
  factor: number,
  width?: number,
  height?: number,
): { width: number; height: number } {
  return {
    width: width ?? image.width - (image.width % factor),
    height: height ?? image.height - (image.height % factor),
  };
}

/**
 * Resizes 8-bit pixels (1 or 3 channels) to exactly width × height with a Lanczos filter, as
 * diffusers' VaeImageProcessor does with PIL (its default resample is Lanczos for pictures and
 * masks alike). The same size comes back unchanged.
 */
export async function resizePixels<T extends RgbImage | GrayImage>(
  image: T,
  width: number,
  height: number,
): Promise<T> {
  if (image.width === width && image.height === height) return image;
  const channels = image.data.length / (image.width * image.height);
  if (channels !== 1 && channels !== 3) throw new Error(`resize: ${channels} channels`);
  let op = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels },
  }).resize(width, height, { fit: "fill", kernel: "lanczos3" });
  // libvips would hand one channel back as sRGB.
  if (channels === 1) op = op.toColourspace("b-w");
  const data = await op.raw({ depth: "uchar" }).toBuffer();
  if (data.length !== width * height * channels) throw new Error(`resize: ${data.length} bytes back`);
  return { ...image, width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/**
 * RGB pixels → [1, 3, H, W] in [-1, 1]: x / 255 · 2 − 1 in float32, in that order (diffusers:
 * numpy's x / 255.0 as float32, then VaeImageProcessor.normalize).
 */
export function pixelsToTensor(image: RgbImage): TensorF32 {
  const { width, height } = image;
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.fround((image.data[i * 3 + c] as number) / 255);
      out[c * plane + i] = Math.fround(Math.fround(2 * v) - 1);
    }
  }
  return { data: out, shape: [1, 3, height, width] };
}

/**
 * The inpainting mask as diffusers' mask processor makes it: grey / 255, then binarised at full
 * resolution (≥ 0.5 → 1: white repaints), [1, 1, H, W].
 */
export function binariseMask(mask: GrayImage): TensorF32 {
  const out = new Float32Array(mask.width * mask.height);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround((mask.data[i] as number) / 255) >= 0.5 ? 1 : 0;
  return { data: out, shape: [1, 1, mask.height, mask.width] };
}

/**
 * F.interpolate(x, size=(h, w)) with PyTorch's default mode "nearest": destination pixel d reads
 * source floor(d · in / out) (clamped), on every [N, C] plane.
 */
export function resizeNearest(x: TensorF32, height: number, width: number): TensorF32 {
  const [n, c, inH, inW] = x.shape as [number, number, number, number];
  const out = new Float32Array(n * c * height * width);
  // ATen's CPU kernel: a float32 scale, floorf(d * scale).
  const scaleH = Math.fround(inH / height);
  const scaleW = Math.fround(inW / width);
  const cols = Array.from({ length: width }, (_, j) => Math.min(Math.floor(Math.fround(j * scaleW)), inW - 1));
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < height; i++) {
      const si = Math.min(Math.floor(Math.fround(i * scaleH)), inH - 1);
      const src = p * inH * inW + si * inW;
      const dst = p * height * width + i * width;
      for (let j = 0; j < width; j++) out[dst + j] = x.data[src + (cols[j] as number)] as number;
    }
  }
  return { data: out, shape: [n, c, height, width] };
}
