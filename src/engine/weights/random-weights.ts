/**
 * Random-weight components at any size a config describes, for benchmarks (full-size SD
 * networks without downloading gigabytes) and tests. Compute does not depend on the values,
 * but the values must keep activations finite through the whole network, so they follow
 * PyTorch's default initialisation: Linear and Conv2d weights and biases uniform in
 * ±1/√fan_in (kaiming_uniform with a=√5, torch/nn/modules/linear.py and conv.py), norm
 * weights near 1 and norm biases near 0, embeddings with CLIP's initializer_range 0.02.
 *
 * The tensor set is exactly what the graph builder asks for (ShapeRecorder), so the file
 * fits the engine by construction. Files are streamed to disk a chunk at a time: SD 1.5's
 * UNet is 3.4 GB in float32 and is never held in memory.
 */
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { buildClipTextGraph } from "../graph/clip.js";
import { ConfigReader } from "../graph/config.js";
import type { GraphBuilder } from "../graph/onnx.js";
import { buildTinyDecoderGraph, buildTinyEncoderGraph, isTinyAutoencoderConfig } from "../graph/taesd.js";
import { buildUNetGraph } from "../graph/unet.js";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../graph/vae.js";
import { ShapeRecorder, type WeightBinder } from "../graph/weights.js";
import type { ComponentFiles, ComponentName } from "./model-folder.js";
import { readSafetensors } from "./safetensors.js";
import { safetensorsHeader } from "./safetensors-writer.js";

export type RandomWeightsDType = "F32" | "F16";

export interface RandomWeightsOptions {
  /** Same seed, config and dtype → the same bytes. */
  seed: number;
  dtype?: RandomWeightsDType;
}

export interface RandomComponent {
  /** Ready for TextEncoder.load / UNet.load / VaeDecoder.load. */
  files: ComponentFiles;
  /** True when a file with the same config, seed and dtype was already there. */
  reused: boolean;
  parameters: number;
  /** Bytes of tensor data (the file is this plus its header). */
  dataBytes: number;
}

const BUILDERS: Record<ComponentName, (cfg: ConfigReader, weights: WeightBinder) => GraphBuilder> = {
  text_encoder: buildClipTextGraph,
  text_encoder_2: buildClipTextGraph,
  unet: buildUNetGraph,
  // The VAE file holds both halves, as a diffusers AutoencoderKL does (the encoder for image inputs).
  vae: (cfg, weights) => {
    buildVaeEncoderGraph(cfg, weights);
    return buildVaeDecoderGraph(cfg, weights);
  },
};

/** transformers names the file model.safetensors; diffusers diffusion_pytorch_model.safetensors. */
export function weightsFileName(component: ComponentName): string {
  return component.startsWith("text_encoder") ? "model.safetensors" : "diffusion_pytorch_model.safetensors";
}

/** Every tensor (name → shape) the engine's graph for this component and config binds. */
export function impliedTensorShapes(
  component: ComponentName,
  config: Record<string, unknown>,
  configPath = "config.json",
): Map<string, number[]> {
  const recorder = new ShapeRecorder(component);
  const reader = new ConfigReader(configPath, config);
  if (component === "vae" && isTinyAutoencoderConfig(config)) {
    // The tiny autoencoder's file holds both halves.
    buildTinyEncoderGraph(reader, recorder);
    buildTinyDecoderGraph(reader, recorder);
  } else BUILDERS[component](reader, recorder);
  return recorder.shapes;
}

/** Key in the safetensors `__metadata__` that says which config, seed and dtype made the file. */
const STAMP_KEY = "sdserve_random_weights";
const STAMP_VERSION = 1;

const ELEMENTS_PER_CHUNK = 1 << 20;

/**
 * Writes `config.json` and the component's safetensors file into `dir` (the component's
 * own folder, e.g. `<model>/unet`), or reuses them when they were written before from the
 * same config, seed and dtype.
 */
export async function writeRandomComponent(
  dir: string,
  component: ComponentName,
  config: Record<string, unknown>,
  opts: RandomWeightsOptions,
): Promise<RandomComponent> {
  if (!Number.isSafeInteger(opts.seed) || opts.seed < 0) throw new Error(`seed must be a non-negative integer`);
  const dtype = opts.dtype ?? "F32";
  const configPath = path.join(dir, "config.json");
  const weightsPath = path.join(dir, weightsFileName(component));
  const shapes = impliedTensorShapes(component, config, configPath);
  const configText = `${JSON.stringify(config, null, 2)}\n`;
  const stamp = JSON.stringify({
    version: STAMP_VERSION,
    seed: opts.seed,
    dtype,
    config_sha256: createHash("sha256").update(JSON.stringify(config)).digest("hex"),
  });

  await mkdir(dir, { recursive: true });
  if ((await readText(configPath)) !== configText) await writeFile(configPath, configText);

  let reused = false;
  if ((await stat(weightsPath).catch(() => undefined))?.isFile()) {
    try {
      const existing = await readSafetensors(weightsPath);
      reused = existing.metadata[STAMP_KEY] === stamp && existing.tensors.size === shapes.size;
    } catch {
      reused = false;
    }
  }
  if (!reused) await streamTensors(weightsPath, shapes, dtype, opts.seed, { format: "pt", [STAMP_KEY]: stamp });

  const { tensors } = await readSafetensors(weightsPath);
  let parameters = 0;
  let dataBytes = 0;
  for (const t of tensors.values()) {
    parameters += t.shape.reduce((a, d) => a * d, 1);
    dataBytes += t.byteLength;
  }
  return {
    files: { name: component, dir, configPath, config, weightFiles: [weightsPath], tensors, variant: "fp32" },
    reused,
    parameters,
    dataBytes,
  };
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

/** Header first, then each tensor generated and written in chunks; renamed into place when complete. */
async function streamTensors(
  file: string,
  shapes: ReadonlyMap<string, number[]>,
  dtype: RandomWeightsDType,
  seed: number,
  metadata: Record<string, string>,
): Promise<void> {
  const layout = [...shapes].map(([name, shape]) => ({ name, dtype, shape }));
  const { header } = safetensorsHeader(layout, metadata);

  const tmp = `${file}.partial-${process.pid}`;
  const fh = await open(tmp, "w");
  try {
    await fh.write(header);
    const f32 = new Float32Array(ELEMENTS_PER_CHUNK);
    const f16 = dtype === "F16" ? new Uint16Array(ELEMENTS_PER_CHUNK) : undefined;
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, d) => a * d, 1);
      const init = initFor(name, shape, shapes);
      const rng = new Mulberry32(tensorSeed(seed, name));
      for (let done = 0; done < n; done += ELEMENTS_PER_CHUNK) {
        const count = Math.min(ELEMENTS_PER_CHUNK, n - done);
        for (let i = 0; i < count; i++) f32[i] = init.center + init.spread * (2 * rng.next() - 1);
        if (f16) {
          toHalf(f32, f16, count);
          await fh.write(new Uint8Array(f16.buffer, 0, count * 2));
        } else {
          await fh.write(new Uint8Array(f32.buffer, 0, count * 4));
        }
      }
    }
    await fh.close();
    await rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Values are uniform in center ± spread. */
interface Init {
  center: number;
  spread: number;
}

/**
 * Tells the kind of parameter from its name and shape, as every tensor in these networks is
 * the weight or bias of a Linear, Conv2d, GroupNorm/LayerNorm or Embedding.
 */
function initFor(name: string, shape: readonly number[], all: ReadonlyMap<string, number[]>): Init {
  if (/_embedding\.weight$/.test(name)) return { center: 0, spread: 0.02 * Math.sqrt(3) };
  const fanIn = (w: readonly number[]) => w.slice(1).reduce((a, d) => a * d, 1);
  if (name.endsWith(".weight")) {
    // 1-D weights belong to norms (GroupNorm, LayerNorm); torch starts them at 1.
    if (shape.length === 1) return { center: 1, spread: 0.05 };
    return { center: 0, spread: 1 / Math.sqrt(fanIn(shape)) };
  }
  const weight = all.get(name.replace(/\.bias$/, ".weight"));
  if (name.endsWith(".bias") && weight && weight.length > 1) return { center: 0, spread: 1 / Math.sqrt(fanIn(weight)) };
  return { center: 0, spread: 0.05 };
}

/** FNV-1a of the name, mixed with the seed: each tensor's values are independent of the others' order. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x9e3779b9);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Mulberry32 (Tommy Ettinger): 32-bit state, fast in JS, plenty for synthetic weights. */
class Mulberry32 {
  constructor(private state: number) {}

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.state ^ (this.state >>> 15), 1 | this.state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** IEEE 754 binary32 → binary16, round to nearest even, subnormals kept. */
function toHalf(src: Float32Array, dst: Uint16Array, count: number): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, count);
  for (let i = 0; i < count; i++) {
    const x = bits[i] as number;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      dst[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 112; // rebias 127 → 15
    if (e >= 0x1f) {
      dst[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        dst[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      dst[i] = sign | h;
    } else {
      // A carry out of the mantissa correctly bumps the exponent.
      let h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
      dst[i] = sign | h;
    }
  }
}
