/**
 * What the figures were measured on, and the yardstick they are compared with: the fp32
 * GFLOP/s this machine reaches on one big MatMul in onnxruntime, measured in the same run
 * (the same threads, the same thermal and neighbour conditions as the networks).
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { GraphBuilder } from "../../src/engine/graph/onnx.js";
import { NetworkSession, ort } from "../../src/engine/runtime.js";
import { type Timing, timeRuns } from "./timing.js";

export interface MachineInfo {
  cpu: string;
  /** Logical CPUs the process may use. */
  cores: number;
  memoryBytes: number;
  /** The vector extensions that decide a CPU's fp32 peak (Linux only; empty elsewhere). */
  simd: string[];
  os: string;
  node: string;
  onnxruntime: string;
}

export function machineInfo(): MachineInfo {
  let simd: string[] = [];
  let cpu = os.cpus()[0]?.model.trim() ?? "unknown";
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const flags = new Set(/^flags\s*:\s*(.*)$/m.exec(info)?.[1]?.split(/\s+/) ?? []);
    simd = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"].filter((f) => flags.has(f));
    const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
    const model = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    // Virtual machines often hide the model name ("AMD EPYC"); family/model still say which generation.
    if (family && model) cpu += ` (family ${family}, model ${model})`;
  } catch {
    // Not Linux: the model name alone.
  }
  const versions = ort.env.versions as { common?: string; node?: string };
  return {
    cpu,
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    simd,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    onnxruntime: versions.node ?? versions.common ?? "unknown",
  };
}

/**
 * The NVIDIA GPUs nvidia-smi lists ("name, memory, driver"), one per entry; empty where there
 * is no nvidia-smi or no GPU.
 */
export function gpuInfo(): string[] {
  const r = spawnSync("nvidia-smi", ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], {
    encoding: "utf8",
    timeout: 10_000,
  });
  if (r.status !== 0 || typeof r.stdout !== "string") return [];
  return r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}

export interface MatmulPeak extends Timing {
  size: number;
  flops: number;
  /** GFLOP/s at the median time. */
  gflops: number;
}

/** An n×n·n×n fp32 MatMul graph with both operands as inputs, so nothing is folded away. */
export async function measureMatmulPeak(opts: { threads?: number; runs: number; size?: number }): Promise<MatmulPeak> {
  const n = opts.size ?? 4096;
  const g = new GraphBuilder("matmul_peak");
  const a = g.input("a", "float32", [n, n]);
  const b = g.input("b", "float32", [n, n]);
  g.output(g.op("MatMul", [a, b]), "c", "float32", [n, n]);
  const session = await NetworkSession.create("matmul_peak", g.toModel(), undefined, { threads: opts.threads });
  try {
    const data = new Float32Array(n * n);
    for (let i = 0; i < data.length; i++) data[i] = ((Math.imul(i, 2654435761) >>> 0) % 1000) / 1000 - 0.5;
    const feeds = { a: new ort.Tensor("float32", data, [n, n]), b: new ort.Tensor("float32", data, [n, n]) };
    const timing = await timeRuns(() => session.run(feeds), { warmup: 1, runs: opts.runs });
    const flops = 2 * n ** 3;
    return { ...timing, size: n, flops, gflops: flops / timing.median / 1e9 };
  } finally {
    await session.release();
  }
}
