/**
 * Builds ONNX ModelProto bytes from TypeScript. Field numbers follow onnx/onnx.proto
 * (IR version 8). Only what sdserve's graphs need is supported.
 */
import { ProtoWriter } from "./protobuf.js";

export type DType = "float32" | "float16" | "bfloat16" | "int64" | "int32" | "bool" | "uint8";

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
};

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4,
  uint8: 1,
  int32: 4,
  int64: 8,
  bool: 1,
  float16: 2,
  bfloat16: 2,
};

/** A tensor whose bytes are in the model itself. */
export interface InlineTensor {
  kind: "inline";
  dtype: DType;
  dims: readonly number[];
  data: Uint8Array;
}

/** A tensor whose bytes live in another file (ONNX external data), e.g. inside a safetensors file. */
export interface ExternalTensor {
  kind: "external";
  dtype: DType;
  dims: readonly number[];
  /** Path relative to the directory of the .onnx file. */
  location: string;
  offset: number;
  length: number;
}

export type TensorValue = InlineTensor | ExternalTensor;

/** Attribute values: plain numbers are INT, number[] INTS; floats must be wrapped. */
export type Attr =
  | number
  | readonly number[]
  | string
  | { f: number }
  | { floats: readonly number[] }
  | { t: TensorValue };

export const f = (value: number): { f: number } => ({ f: value });

export type Dim = number | string;

interface NodeDef {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain: string;
  attrs: Record<string, Attr>;
}

interface ValueInfo {
  name: string;
  dtype: DType;
  shape: readonly Dim[];
}

function encodeTensor(name: string, t: TensorValue): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, ONNX_DTYPE[t.dtype]);
  w.string(8, name);
  if (t.kind === "inline") {
    w.bytes(9, t.data);
  } else {
    const entry = (k: string, v: string) => new ProtoWriter().string(1, k).string(2, v);
    w.message(13, entry("location", t.location));
    w.message(13, entry("offset", String(t.offset)));
    w.message(13, entry("length", String(t.length)));
    w.int(14, 1);
  }
  return w;
}

function encodeAttr(name: string, a: Attr): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof a === "number") {
    if (!Number.isInteger(a)) throw new Error(`attribute ${name}: ${a} is not an integer; wrap floats with f()`);
    w.int(3, a).int(20, 2);
  } else if (typeof a === "string") {
    w.string(4, a).int(20, 3);
  } else if (Array.isArray(a)) {
    w.packedInts(8, a as number[]).int(20, 7);
  } else if ("f" in a) {
    w.float(2, a.f).int(20, 1);
  } else if ("floats" in a) {
    w.packedFloats(7, a.floats).int(20, 6);
  } else if ("t" in a) {
    w.message(5, encodeTensor("", a.t)).int(20, 4);
  }
  return w;
}

function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape) {
    const dim = new ProtoWriter();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, ONNX_DTYPE[v.dtype]).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, v.name).message(2, type);
}

export interface OpOptions {
  domain?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Explicit output names. */
  names?: string[];
}

/**
 * Collects nodes, initializers and graph inputs/outputs. Value names are made unique
 * from a scope prefix, so graphs read like the PyTorch module tree they mirror.
 */
export class GraphBuilder {
  private nodes: NodeDef[] = [];
  private inits = new Map<string, TensorValue>();
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private counter = 0;
  private scopes: string[] = [];
  private constCache = new Map<string, string>();
  readonly usesMicrosoftDomain = new Set<string>();

  constructor(readonly name: string) {}

  /** Runs fn with `name` appended to the value-name prefix. */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  private fresh(hint: string): string {
    const prefix = this.scopes.length ? `${this.scopes.join(".")}/` : "";
    return `${prefix}${hint}_${this.counter++}`;
  }

  input(name: string, dtype: DType, shape: readonly Dim[]): string {
    this.inputs.push({ name, dtype, shape });
    return name;
  }

  output(value: string, name: string, dtype: DType, shape: readonly Dim[]): void {
    if (value !== name) this.op("Identity", [value], {}, { names: [name] });
    this.outputs.push({ name, dtype, shape });
  }

  initializer(name: string, tensor: TensorValue): string {
    if (this.inits.has(name)) throw new Error(`duplicate initializer ${name}`);
    this.inits.set(name, tensor);
    return name;
  }

  /** Replaces every external-data initializer by an inline copy of its bytes (for standalone files). */
  inlineExternalData(read: (t: ExternalTensor) => Uint8Array): void {
    for (const [name, t] of this.inits) {
      if (t.kind === "external") this.inits.set(name, { kind: "inline", dtype: t.dtype, dims: t.dims, data: read(t) });
    }
  }

  /** A small constant initializer, shared between identical uses. */
  const(dtype: "float32" | "int64", values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `${dtype}:${dims.join("x")}:${values.join(",")}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    let data: Uint8Array;
    if (dtype === "int64") data = new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer);
    else data = new Uint8Array(Float32Array.from(values).buffer);
    const name = this.initializer(`const_${this.constCache.size}`, { kind: "inline", dtype, dims, data });
    this.constCache.set(key, name);
    return name;
  }

  ints(values: readonly number[]): string {
    return this.const("int64", values);
  }

  scalar(value: number): string {
    return this.const("float32", [value], []);
  }

  /** Adds a node and returns its first output's name. */
  op(op: string, inputs: string[], attrs: Record<string, Attr> = {}, opts: OpOptions = {}): string {
    return this.opN(op, inputs, attrs, opts)[0] as string;
  }

  /** Adds a node and returns all its outputs' names. */
  opN(op: string, inputs: string[], attrs: Record<string, Attr> = {}, opts: OpOptions = {}): string[] {
    const outputs = opts.names ?? Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(op));
    const domain = opts.domain ?? "";
    if (domain) this.usesMicrosoftDomain.add(domain);
    this.nodes.push({ op, inputs, outputs, name: this.fresh(`n_${op}`), domain, attrs });
    return outputs;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /** Serialises to ModelProto bytes. */
  toModel(opts: { opset?: number; producer?: string } = {}): Uint8Array {
    const g = new ProtoWriter();
    for (const n of this.nodes) {
      const nw = new ProtoWriter();
      for (const i of n.inputs) nw.string(1, i);
      for (const o of n.outputs) nw.string(2, o);
      nw.string(3, n.name).string(4, n.op);
      for (const [k, v] of Object.entries(n.attrs)) nw.message(5, encodeAttr(k, v));
      if (n.domain) nw.string(7, n.domain);
      g.message(1, nw);
    }
    g.string(2, this.name);
    for (const [name, t] of this.inits) g.message(5, encodeTensor(name, t));
    for (const v of this.inputs) g.message(11, encodeValueInfo(v));
    for (const v of this.outputs) g.message(12, encodeValueInfo(v));

    const m = new ProtoWriter();
    m.int(1, 8); // ir_version
    m.string(2, opts.producer ?? "sdserve");
    m.message(7, g);
    m.message(8, new ProtoWriter().string(1, "").int(2, opts.opset ?? 17));
    for (const d of this.usesMicrosoftDomain) m.message(8, new ProtoWriter().string(1, d).int(2, 1));
    return m.finish();
  }
}
