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

/** Encodes tensors in the given order, contiguous, the header padded with spaces to 8 bytes. */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header["__metadata__"] = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bits = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BITS[t.dtype];
    if (bits !== t.data.byteLength * 8) {
      throw new Error(`${t.name}: ${t.data.byteLength} bytes given for ${t.dtype} ${JSON.stringify(t.shape)}`);
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  // Aligned data lets readers map tensors as typed arrays in place.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
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
