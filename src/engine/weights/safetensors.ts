/**
 * Reads the header of a safetensors file: an 8-byte little-endian header length, a JSON
 * header naming every tensor's dtype, shape and byte range, then the raw little-endian
 * tensor bytes. Only the header is read here, because weight files can be gigabytes and
 * the graph builder points ONNX external data straight at the byte ranges.
 *
 * Format: https://github.com/huggingface/safetensors (README, "Format").
 */
import type { FileHandle } from "node:fs/promises";
import { open, stat } from "node:fs/promises";
import { ModelError } from "../errors.js";

export type SafetensorsDType =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E5M2"
  | "F8_E4M3"
  | "F8_E8M0"
  | "F4"
  | "F6_E2M3"
  | "F6_E3M2"
  | "I16"
  | "U16"
  | "F16"
  | "BF16"
  | "I32"
  | "U32"
  | "F32"
  | "C64"
  | "F64"
  | "I64"
  | "U64";

/** Bits per element; the sub-byte types (F4, F6_*) are packed, as the format defines. */
export const DTYPE_BITS: Readonly<Record<SafetensorsDType, number>> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  file: string;
  /** Absolute offset from the start of the file (header included). */
  byteOffset: number;
  byteLength: number;
  /**
   * The bytes hold the 2-D transpose of `shape` (a checkpoint that stores a Linear weight as
   * the matrix it multiplies by, as OpenCLIP's text_projection); readers and graphs flip it.
   */
  transposed?: boolean;
}

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** The reference implementation refuses larger headers; a bigger one means a corrupt file. */
const MAX_HEADER_BYTES = 100_000_000;

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const fileSize = await regularFileSize(path);
  if (fileSize < 8) {
    throw new ModelError(`is ${fileSize} bytes long, too short to be a safetensors file (8-byte header length)`, {
      file: path,
    });
  }
  const fh = await openForRead(path);
  let headerBytes: Uint8Array;
  let headerLength: number;
  try {
    const lenBytes = await readExactly(fh, 0, 8, path);
    const len = Buffer.from(lenBytes.buffer, lenBytes.byteOffset, 8).readBigUInt64LE(0);
    if (len > BigInt(MAX_HEADER_BYTES)) {
      throw new ModelError(
        `header length ${len} is over the ${MAX_HEADER_BYTES}-byte limit; not a safetensors file, or corrupt`,
        { file: path },
      );
    }
    headerLength = Number(len);
    if (8 + headerLength > fileSize) {
      throw new ModelError(
        `header length ${headerLength} runs past the end of the file (${fileSize} bytes); not a safetensors file, or truncated`,
        { file: path },
      );
    }
    headerBytes = await readExactly(fh, 8, headerLength, path);
  } finally {
    await fh.close();
  }

  const header = parseHeader(headerBytes, path);
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const metadata = parseMetadata(header["__metadata__"], path);

  const tensors = new Map<string, TensorInfo>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, begin, end } = parseEntry(entry, path, name);
    if (end > dataSize) {
      throw new ModelError(
        `data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes); the file is truncated`,
        { file: path, field: name },
      );
    }
    tensors.set(name, { name, dtype, shape, file: path, byteOffset: dataStart + begin, byteLength: end - begin });
    if (end > begin) ranges.push({ name, begin, end });
  }

  // Empty tensors occupy no bytes, so they cannot overlap anything.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1]!;
    const cur = ranges[i]!;
    if (cur.begin < prev.end) {
      throw new ModelError(
        `bytes [${cur.begin}, ${cur.end}] overlap tensor "${prev.name}" [${prev.begin}, ${prev.end}]`,
        { file: path, field: cur.name },
      );
    }
  }
  return { path, tensors, metadata };
}

/**
 * Reads one tensor's bytes and widens them to float32. Meant for tests and small tensors:
 * the whole tensor is held in memory twice while converting. I64/U64 values beyond 2^53
 * lose precision, as any float32 would.
 */
export async function readTensor(info: TensorInfo): Promise<Float32Array> {
  const count = elementCount(info.shape);
  const bits = DTYPE_BITS[info.dtype];
  if (bits === undefined || count * bits !== info.byteLength * 8) {
    throw new ModelError(
      `tensor info is inconsistent (${info.dtype} ${JSON.stringify(info.shape)}, ${info.byteLength} bytes)`,
      {
        file: info.file,
        field: info.name,
      },
    );
  }
  const convert = CONVERTERS[info.dtype];
  if (!convert) {
    throw new ModelError(`reading ${info.dtype} tensors as float32 is not supported`, {
      file: info.file,
      field: info.name,
    });
  }
  const fh = await openForRead(info.file);
  let bytes: Uint8Array;
  try {
    bytes = await readExactly(fh, info.byteOffset, info.byteLength, info.file, info.name);
  } finally {
    await fh.close();
  }
  const values = convert(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), count);
  if (!info.transposed) return values;
  const [rows, cols] = info.shape as [number, number];
  const out = new Float32Array(count);
  // Stored [cols, rows]: element (r, c) of the tensor is stored at (c, r).
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = values[c * rows + r] as number;
  return out;
}

async function regularFileSize(path: string): Promise<number> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    throw new ModelError(describeFsError(err, "cannot read the file"), { file: path });
  }
  // A FIFO or device would block or never end; only plain files (or links to them) are read.
  if (!st.isFile()) {
    throw new ModelError(st.isDirectory() ? "is a directory, not a safetensors file" : "is not a regular file", {
      file: path,
    });
  }
  return st.size;
}

async function openForRead(path: string): Promise<FileHandle> {
  try {
    return await open(path, "r");
  } catch (err) {
    throw new ModelError(describeFsError(err, "cannot open the file"), { file: path });
  }
}

async function readExactly(
  fh: FileHandle,
  position: number,
  length: number,
  path: string,
  field?: string,
): Promise<Uint8Array> {
  // A fresh ArrayBuffer keeps the data 8-byte aligned, so typed-array views need no copy.
  const out = new Uint8Array(new ArrayBuffer(length));
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new ModelError(
        `file ended after ${position + done} bytes, expected at least ${position + length}; truncated`,
        {
          file: path,
          field,
        },
      );
    }
    done += bytesRead;
  }
  return out;
}

function describeFsError(err: unknown, fallback: string): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "file not found (or a link to a missing file)";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return `${fallback}: ${err instanceof Error ? err.message : String(err)}`;
}

function parseHeader(bytes: Uint8Array, path: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ModelError("header is not valid UTF-8; not a safetensors file", { file: path });
  }
  // The format allows trailing spaces as padding, but the header must start with the object.
  if (!text.startsWith("{")) {
    throw new ModelError("header does not start with '{'; not a safetensors file", { file: path });
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`header is not valid JSON (${(err as Error).message})`, { file: path });
  }
  if (!isPlainObject(header)) throw new ModelError("header is not a JSON object", { file: path });
  return header;
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  const metadata: Record<string, string> = {};
  if (value === undefined || value === null) return metadata;
  if (!isPlainObject(value)) {
    throw new ModelError("must be an object of strings", { file: path, field: "__metadata__" });
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new ModelError(`value of "${key}" must be a string, got ${JSON.stringify(v)}`, {
        file: path,
        field: "__metadata__",
      });
    }
    metadata[key] = v;
  }
  return metadata;
}

function parseEntry(
  entry: unknown,
  path: string,
  name: string,
): { dtype: SafetensorsDType; shape: number[]; begin: number; end: number } {
  const where = { file: path, field: name };
  if (!isPlainObject(entry)) throw new ModelError("tensor entry is not an object", where);

  const dtype = entry["dtype"];
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BITS, dtype)) {
    throw new ModelError(
      `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BITS).join(", ")})`,
      where,
    );
  }

  const shape = entry["shape"];
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ModelError(`shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`, where);
  }

  const offsets = entry["data_offsets"];
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new ModelError(
      `data_offsets must be two non-negative integers [begin, end] with begin <= end, got ${JSON.stringify(offsets)}`,
      where,
    );
  }
  const [begin, end] = offsets as [number, number];

  // BigInt: a hostile shape could overflow doubles and slip past the length check.
  const bits = BigInt(DTYPE_BITS[dtype as SafetensorsDType]);
  const totalBits = (shape as number[]).reduce((acc: bigint, d: number) => acc * BigInt(d), 1n) * bits;
  if (totalBits % 8n !== 0n || totalBits / 8n !== BigInt(end - begin)) {
    throw new ModelError(
      `byte length ${end - begin} does not match ${dtype} ${JSON.stringify(shape)} (${
        totalBits % 8n === 0n ? `${totalBits / 8n} bytes` : `${totalBits} bits, not a whole number of bytes`
      })`,
      where,
    );
  }
  return { dtype: dtype as SafetensorsDType, shape: [...(shape as number[])], begin, end };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

type Converter = (view: DataView, count: number) => Float32Array;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** IEEE 754 binary16 to number; exact, since every half value is a float32 value. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let halfTable: Float32Array | undefined;
function halfLookup(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  return halfTable;
}

/** OCP FP8 E4M3 ("fn"): bias 7, no infinities, S.1111.111 is NaN. */
function e4m3ToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 0xf && mant === 0x7) return Number.NaN;
  if (exp === 0) return sign * mant * 2 ** -9;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

function mapElements(count: number, get: (i: number) => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = get(i);
  return out;
}

const CONVERTERS: Partial<Record<SafetensorsDType, Converter>> = {
  F32: (v, n) =>
    LITTLE_ENDIAN_HOST && v.byteOffset % 4 === 0
      ? new Float32Array(v.buffer, v.byteOffset, n)
      : mapElements(n, (i) => v.getFloat32(i * 4, true)),
  F64: (v, n) => mapElements(n, (i) => v.getFloat64(i * 8, true)),
  F16: (v, n) => {
    const table = halfLookup();
    return mapElements(n, (i) => table[v.getUint16(i * 2, true)]!);
  },
  // bfloat16 is the top half of a float32, so shifting the bits back is exact (NaN payloads too).
  BF16: (v, n) => {
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = v.getUint16(i * 2, true) << 16;
    return new Float32Array(bits.buffer);
  },
  // E5M2 is binary16 with the low mantissa byte dropped.
  F8_E5M2: (v, n) => {
    const table = halfLookup();
    return mapElements(n, (i) => table[v.getUint8(i) << 8]!);
  },
  F8_E4M3: (v, n) => mapElements(n, (i) => e4m3ToFloat(v.getUint8(i))),
  I64: (v, n) => mapElements(n, (i) => Number(v.getBigInt64(i * 8, true))),
  U64: (v, n) => mapElements(n, (i) => Number(v.getBigUint64(i * 8, true))),
  I32: (v, n) => mapElements(n, (i) => v.getInt32(i * 4, true)),
  U32: (v, n) => mapElements(n, (i) => v.getUint32(i * 4, true)),
  I16: (v, n) => mapElements(n, (i) => v.getInt16(i * 2, true)),
  U16: (v, n) => mapElements(n, (i) => v.getUint16(i * 2, true)),
  I8: (v, n) => mapElements(n, (i) => v.getInt8(i)),
  U8: (v, n) => mapElements(n, (i) => v.getUint8(i)),
  BOOL: (v, n) => mapElements(n, (i) => (v.getUint8(i) !== 0 ? 1 : 0)),
};
