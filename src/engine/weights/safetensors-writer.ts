/**
 * Writes safetensors files. The engine only reads weights, but tests and benchmarks need
 * small, exactly-known files, and a future weight cache (e.g. converted dtypes) needs the same.
 */
import { writeFile } from "node:fs/promises";
import { DTYPE_BITS, type SafetensorsDType } from "./safetensors.js";

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** Raw little-endian bytes, C order. */
  data: ArrayBufferView;
}

/** Where a tensor goes: its data follows the previous one's. */
export interface TensorLayout {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

/**
 * The start of a safetensors file for tensors laid out contiguously in the given order: the
 * 8-byte header length, then the JSON header padded with spaces to 8 bytes (aligned data lets
 * readers map tensors as typed arrays in place). `dataBytes` is what must follow.
 */
export function safetensorsHeader(
  tensors: readonly TensorLayout[],
  metadata?: Record<string, string>,
): { header: Uint8Array; dataBytes: number } {
  const entries: Record<string, unknown> = {};
  if (metadata) entries["__metadata__"] = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = (t.shape.reduce((a, d) => a * d, 1) * DTYPE_BITS[t.dtype]) / 8;
    entries[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(entries));
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, dataBytes: offset };
}

/** Encodes tensors in the given order, contiguous, the header padded with spaces to 8 bytes. */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  for (const t of tensors) {
    const bits = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BITS[t.dtype];
    if (bits !== t.data.byteLength * 8) {
      throw new Error(`${t.name}: ${t.data.byteLength} bytes given for ${t.dtype} ${JSON.stringify(t.shape)}`);
    }
  }
  const { header, dataBytes } = safetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header);
  let at = header.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}
