/**
 * Attaches a component's safetensors tensors to a graph as ONNX external data that points
 * straight into the safetensors files (by byte offset), so weights are never copied into
 * the model bytes. Tensors stored as float16/bfloat16 get a Cast to float32, which
 * onnxruntime folds once when the session is created.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { ModelError } from "../errors.js";
import type { DType, GraphBuilder } from "./onnx.js";

/** What the graph needs to know of one stored tensor (structurally a safetensors TensorInfo). */
export interface WeightTensor {
  name: string;
  dtype: string;
  shape: readonly number[];
  file: string;
  byteOffset: number;
  byteLength: number;
  /** The bytes hold the 2-D transpose of `shape` (safetensors.ts TensorInfo). */
  transposed?: boolean;
}

const SAFETENSORS_TO_ONNX: Record<string, DType> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  U8: "uint8",
  BOOL: "bool",
};

function commonDir(dirs: string[]): string {
  if (dirs.length === 0) return process.cwd();
  let parts = (dirs[0] as string).split(path.sep);
  for (const d of dirs.slice(1)) {
    const other = d.split(path.sep);
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(path.sep) || path.sep;
}

/** A Linear layer whose LoRA factors are graph inputs (see Layers.lowRank). */
export interface LowRankTarget {
  inFeatures: number;
  outFeatures: number;
  /** Graph inputs: downᵀ [in, r] and the scaled upᵀ [r, out]; r may be 0. */
  downInput: string;
  upInput: string;
  /**
   * Set for a convolution: then the inputs are down [r, in, k, k] and the scaled up
   * [out, r, 1, 1], r at least 1 (zeros when no LoRA applies).
   */
  kernel?: number;
}

export class WeightBinder {
  /** The folder onnxruntime resolves external-data locations against. */
  readonly baseDir: string;
  /**
   * When set, the layers this predicate accepts get LoRA factors as graph inputs, recorded in
   * `lowRankTargets` (lora.ts chooses the layers and feeds the factors).
   */
  lowRankFilter?: (prefix: string) => boolean;
  readonly lowRankTargets = new Map<string, LowRankTarget>();
  /** When true, the text encoder takes textual-inversion vectors as an input (clip.ts). */
  extraTokenRows = false;
  private readonly realFiles = new Map<string, string>();
  private readonly used = new Set<string>();
  private readonly bound = new Map<string, string>();

  constructor(
    readonly component: string,
    private readonly tensors: ReadonlyMap<string, WeightTensor>,
  ) {
    // Hugging Face cache snapshots hold symlinks into ../../blobs; onnxruntime refuses
    // external data that resolves outside its folder, so locations are made relative to
    // the common folder of the files' real paths.
    for (const t of tensors.values()) {
      if (!this.realFiles.has(t.file)) this.realFiles.set(t.file, realpathSync(t.file));
    }
    this.baseDir = commonDir([...new Set([...this.realFiles.values()].map((f) => path.dirname(f)))]);
  }

  /** The real paths of the weights files. */
  get files(): string[] {
    return [...new Set(this.realFiles.values())];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  shape(name: string): readonly number[] {
    return this.get(name).shape;
  }

  protected get(name: string): WeightTensor {
    const t = this.tensors.get(name);
    if (!t) {
      const files = [...new Set([...this.tensors.values()].map((x) => path.basename(x.file)))].join(", ");
      throw new ModelError(`weight not found in ${files || "the weights files"} (the config implies it)`, {
        file: this.component,
        field: name,
      });
    }
    return t;
  }

  /**
   * Adds the tensor as a float32 graph value. With `expected`, its stored shape must match
   * what the config implies (`-1` matches any size).
   */
  bind(g: GraphBuilder, name: string, expected?: readonly number[]): string {
    const t = this.get(name);
    if (expected) {
      const ok = expected.length === t.shape.length && expected.every((d, i) => d === -1 || d === t.shape[i]);
      if (!ok) {
        throw new ModelError(`has shape [${t.shape.join(", ")}], but the config implies [${expected.join(", ")}]`, {
          file: t.file,
          field: name,
        });
      }
    }
    const cached = this.bound.get(name);
    if (cached) return cached;
    const dtype = SAFETENSORS_TO_ONNX[t.dtype];
    if (!dtype) throw new ModelError(`dtype ${t.dtype} is not supported for weights`, { file: t.file, field: name });
    const real = this.realFiles.get(t.file) as string;
    let value = g.initializer(`${this.component}.${name}`, {
      kind: "external",
      dtype,
      dims: t.transposed ? [...t.shape].reverse() : t.shape,
      location: path.relative(this.baseDir, real),
      offset: t.byteOffset,
      length: t.byteLength,
    });
    if (dtype !== "float32") value = g.op("Cast", [value], { to: 1 });
    // Folded once by onnxruntime at session creation, like the Cast.
    if (t.transposed) value = g.op("Transpose", [value], { perm: [1, 0] });
    this.used.add(name);
    this.bound.set(name, value);
    return value;
  }

  /** Stored tensors the graph did not use (a sign of a config/weights mismatch). */
  unused(): string[] {
    return [...this.tensors.keys()].filter((n) => !this.used.has(n));
  }
}

/**
 * A binder with no weights that records the name and shape of every tensor a graph asks
 * for, as inline zero-filled float32 placeholders. Used to learn which tensors a config
 * implies (to synthesise random-weight models for benchmarks and the tiny test model).
 */
export class ShapeRecorder extends WeightBinder {
  readonly shapes = new Map<string, number[]>();

  constructor(component: string) {
    super(component, new Map());
  }

  override has(name: string): boolean {
    return this.shapes.has(name);
  }

  override bind(g: GraphBuilder, name: string, expected?: readonly number[]): string {
    if (!expected || expected.some((d) => d < 0)) throw new Error(`${name}: the graph gave no full shape`);
    if (!this.shapes.has(name)) this.shapes.set(name, [...expected]);
    void g;
    return name;
  }
}
