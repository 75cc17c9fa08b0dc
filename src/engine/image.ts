/**
 * Decoder output → 8-bit RGB → PNG, converted as diffusers does, with the generation
 * parameters stored as PNG text the way AUTOMATIC1111 writes them ("parameters"), so
 * tools that read A1111 images read ours.
 */
import { crc32 } from "node:zlib";
import { encode } from "fast-png";
import type { TensorF32 } from "./networks.js";

export interface RgbImage {
  width: number;
  height: number;
  /** Interleaved RGB, row-major. */
  data: Uint8Array;
}

/** numpy's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Splits a decoded batch [B, 3, H, W] into images: (x / 2 + 0.5) clamped to [0, 1], then
 * ×255 and rounded (diffusers' VaeImageProcessor.postprocess + numpy_to_pil). The float
 * arithmetic is done in float32 like torch. `truncate`: ×255 cut to an integer instead, as
 * AUTOMATIC1111's astype(np.uint8) does (its hires fix's pictures).
 */
export function decodedToImages(decoded: TensorF32, opts: { truncate?: boolean } = {}): RgbImage[] {
  const toByte = opts.truncate ? Math.trunc : roundHalfEven;
  const [batch, channels, height, width] = decoded.shape as [number, number, number, number];
  if (channels !== 3) throw new Error(`expected 3 channels from the VAE, got ${channels}`);
  const plane = height * width;
  const images: RgbImage[] = [];
  for (let b = 0; b < batch; b++) {
    const data = new Uint8Array(plane * 3);
    for (let c = 0; c < 3; c++) {
      const src = decoded.data.subarray((b * 3 + c) * plane, (b * 3 + c + 1) * plane);
      for (let i = 0; i < plane; i++) {
        const v = Math.min(1, Math.max(0, Math.fround(Math.fround((src[i] as number) / 2) + 0.5)));
        data[i * 3 + c] = toByte(Math.fround(v * 255));
      }
    }
    images.push({ width, height, data });
  }
  return images;
}

/** Float view [B, H, W, 3] in [0, 1], as diffusers' output_type="np" gives (for comparisons). */
export function decodedToFloatImages(decoded: TensorF32): Float32Array {
  const [batch, , height, width] = decoded.shape as [number, number, number, number];
  const plane = height * width;
  const out = new Float32Array(batch * plane * 3);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < plane; i++) {
        const v = decoded.data[(b * 3 + c) * plane + i] as number;
        out[(b * plane + i) * 3 + c] = Math.min(1, Math.max(0, Math.fround(Math.fround(v / 2) + 0.5)));
      }
    }
  }
  return out;
}

export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  sampler: string;
  guidanceScale: number;
  seed: number | bigint | string;
  width: number;
  height: number;
  model?: string;
  /** img2img / inpainting strength (A1111's "Denoising strength"). */
  strength?: number;
  /** A1111's "Clip skip", written when it is not 1. */
  clipSkip?: number;
  /** More "Key: value" pairs, written last in this order (the hires fix's). */
  extra?: readonly (readonly [string, string | number])[];
}

/** AUTOMATIC1111's "parameters" text: prompt, "Negative prompt: …", then "Key: value, …". */
export function a1111Parameters(p: GenerationParameters): string {
  const lines = [p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  const fields = [
    `Steps: ${p.steps}`,
    `Sampler: ${p.sampler}`,
    `CFG scale: ${p.guidanceScale}`,
    `Seed: ${p.seed}`,
    `Size: ${p.width}x${p.height}`,
  ];
  if (p.model) fields.push(`Model: ${p.model}`);
  if (p.strength !== undefined) fields.push(`Denoising strength: ${p.strength}`);
  if (p.clipSkip !== undefined && p.clipSkip !== 1) fields.push(`Clip skip: ${p.clipSkip}`);
  for (const [key, value] of p.extra ?? []) fields.push(`${key}: ${value}`);
  lines.push(fields.join(", "));
  return lines.join("\n");
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  const typeAndBody = out.subarray(4, 8 + body.length);
  typeAndBody.set(new TextEncoder().encode(type), 0);
  typeAndBody.set(body, 4);
  view.setUint32(8 + body.length, crc32(typeAndBody));
  return out;
}

/**
 * A text chunk as PIL writes one: tEXt when key and value are Latin-1, else iTXt (UTF-8,
 * uncompressed), which A1111 and PIL read back alike.
 */
function textChunk(key: string, value: string): Uint8Array {
  const latin1 = [...value].every((ch) => (ch.codePointAt(0) as number) <= 0xff);
  const keyBytes = Buffer.from(key, "latin1");
  if (latin1) return chunk("tEXt", Buffer.concat([keyBytes, Buffer.of(0), Buffer.from(value, "latin1")]));
  // keyword, 0, compression flag 0, method 0, language tag "", 0, translated keyword "", 0, text
  return chunk("iTXt", Buffer.concat([keyBytes, Buffer.of(0, 0, 0, 0, 0), Buffer.from(value, "utf8")]));
}

/** Encodes an RGB image as PNG with the given text chunks placed before the image data. */
export function encodePng(image: RgbImage, text: Record<string, string> = {}): Uint8Array {
  const png = encode({ width: image.width, height: image.height, data: image.data, channels: 3, depth: 8 });
  const chunks = Object.entries(text).map(([k, v]) => textChunk(k, v));
  if (chunks.length === 0) return png;
  // PNG signature (8 bytes) + IHDR chunk (25 bytes): text goes right after IHDR.
  const at = 8 + 25;
  return Buffer.concat([png.subarray(0, at), ...chunks, png.subarray(at)]);
}

/** A text chunk's keyword (tEXt, iTXt and zTXt all start with it, ended by a 0 byte). */
function keywordOf(body: Uint8Array): string {
  const end = body.indexOf(0);
  return Buffer.from(body.subarray(0, end < 0 ? body.length : end)).toString("latin1");
}

/**
 * The same PNG with its text under `key` replaced by `value` (any tEXt, iTXt or zTXt of that
 * keyword dropped, the new one placed right after IHDR as encodePng places it); the pixels'
 * chunks are copied as they are.
 */
export function withPngText(png: Uint8Array, key: string, value: string): Uint8Array {
  const SIGNATURE = 8;
  const kept: Uint8Array[] = [png.subarray(0, SIGNATURE)];
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let at = SIGNATURE;
  let placed = false;
  while (at + 12 <= png.length) {
    const length = view.getUint32(at);
    const end = at + 12 + length;
    if (end > png.length) throw new Error("withPngText: a chunk runs past the end of the PNG");
    const type = Buffer.from(png.subarray(at + 4, at + 8)).toString("latin1");
    const isText = type === "tEXt" || type === "iTXt" || type === "zTXt";
    if (!(isText && keywordOf(png.subarray(at + 8, at + 8 + length)) === key)) kept.push(png.subarray(at, end));
    if (type === "IHDR") {
      kept.push(textChunk(key, value));
      placed = true;
    }
    at = end;
  }
  if (!placed) throw new Error("withPngText: no IHDR chunk");
  return Buffer.concat(kept);
}
