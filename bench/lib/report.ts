/**
 * How benchmarks print: aligned text lines for people, or with `--json` one JSON object per
 * figure per line (`{bench, model?, figure, …}`) for scripts. Shared by every bench so their
 * figures read and parse alike.
 */
import type { MachineInfo, MatmulPeak } from "./machine.js";
import type { Timing } from "./timing.js";

export type Figure = Record<string, unknown> & { figure: string };

export class Report {
  constructor(
    private readonly bench: string,
    private readonly json: boolean,
    private readonly model?: string,
    /** Fields every figure carries after `model` (e.g. the execution provider). */
    private readonly context: Record<string, unknown> = {},
  ) {}

  emit(figure: Figure, text: string): void {
    if (this.json)
      console.log(
        JSON.stringify({ bench: this.bench, ...(this.model ? { model: this.model } : {}), ...this.context, ...figure }),
      );
    else console.log(text);
  }

  heading(text: string): void {
    if (!this.json) console.log(`\n${text}`);
  }

  /** A line for people only (a caveat, a hint); JSON output carries the same facts as fields. */
  note(text: string): void {
    if (!this.json) console.log(text);
  }
}

export const round = (x: number, digits = 4) => Number(x.toPrecision(digits));
export const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
/** GiB from 1 GiB up, MiB below (small models). */
export const bytesText = (bytes: number) => (bytes >= 2 ** 30 ? gib(bytes) : `${(bytes / 2 ** 20).toFixed(1)} MiB`);
export function secs(s: number): string {
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}
export function flopsText(f: number): string {
  if (f < 1e9) return `${(f / 1e6).toFixed(1)} MFLOP`;
  return f >= 1e12 ? `${(f / 1e12).toFixed(2)} TFLOP` : `${(f / 1e9).toFixed(1)} GFLOP`;
}
export const pad = (s: string, n: number) => s.padEnd(n);
/** Width of the label column. */
export const LABEL = 36;

export function machineFigure(m: MachineInfo, threads: number): [Figure, string] {
  const threadText = threads > 0 ? String(threads) : "auto (onnxruntime's default)";
  return [
    {
      figure: "machine",
      cpu: m.cpu,
      cores: m.cores,
      memory_bytes: m.memoryBytes,
      simd: m.simd,
      os: m.os,
      node: m.node,
      onnxruntime: m.onnxruntime,
      threads: threads > 0 ? threads : "auto",
    },
    [
      `machine      ${m.cpu}, ${m.cores} cores${m.simd.length ? ` [${m.simd.join(" ")}]` : ""}, ${gib(m.memoryBytes)}`,
      `software     ${m.os}, node ${m.node}, onnxruntime-node ${m.onnxruntime}; threads ${threadText}`,
    ].join("\n"),
  ];
}

/** A warning line when other processes competed for the CPUs during a measurement. */
export function contention(t: Timing): string {
  if (t.otherCpus === undefined || t.otherCpus < 0.05) return "";
  return `\n${pad("", LABEL)} ! other processes kept ${t.otherCpus.toFixed(2)} CPUs busy meanwhile: these times are inflated`;
}

export function matmulPeakFigure(peak: MatmulPeak): [Figure, string] {
  const peakMin = peak.flops / peak.max / 1e9;
  const peakMax = peak.flops / peak.min / 1e9;
  return [
    {
      figure: "matmul_peak",
      unit: "GFLOP/s",
      size: peak.size,
      median: round(peak.gflops),
      min: round(peakMin),
      max: round(peakMax),
      runs_s: peak.runs.map((r) => round(r)),
      other_cpus_busy: peak.otherCpus === undefined ? null : round(peak.otherCpus, 2),
    },
    `${pad(`fp32 MatMul peak (${peak.size}³)`, LABEL)} ${peak.gflops.toFixed(1)} GFLOP/s median of ${peak.runs.length} ` +
      `(min ${peakMin.toFixed(1)}, max ${peakMax.toFixed(1)})${contention(peak)}`,
  ];
}

export interface TimedFigureOptions {
  /** Fields placed right after `figure` (shape, batch, steps, …). */
  fields?: Record<string, unknown>;
  /** FLOPs of one timed call, compared with the MatMul peak when both are given. */
  flops?: number;
  peak?: MatmulPeak;
  /** What the first, unmeasured call is called in the text ("first call"). */
  firstLabel?: string;
}

/**
 * A timed figure: median, min and max of the runs and the first call; with FLOPs and a
 * MatMul peak, also the GFLOP/s reached, the ratio to the peak and the lower bound (the
 * time the FLOPs would take at the peak).
 */
export function timedFigure(figure: string, label: string, t: Timing, opts: TimedFigureOptions = {}): [Figure, string] {
  const { flops, peak } = opts;
  const compared = flops !== undefined && peak !== undefined;
  const gflops = compared ? flops / t.median / 1e9 : 0;
  const lowerBound = compared ? flops / (peak.gflops * 1e9) : 0;
  const firstLabel = opts.firstLabel ?? "first call";
  return [
    {
      figure,
      ...opts.fields,
      unit: "s",
      median: round(t.median),
      min: round(t.min),
      max: round(t.max),
      runs: t.runs.map((r) => round(r)),
      first: t.first === undefined ? null : round(t.first),
      ...(compared
        ? {
            flops,
            gflops_per_s: round(gflops),
            matmul_peak_gflops_per_s: round(peak.gflops),
            ratio_to_peak: round(gflops / peak.gflops, 3),
            lower_bound_s: round(lowerBound),
            ratio_to_lower_bound: round(t.median / lowerBound, 3),
          }
        : {}),
      other_cpus_busy: t.otherCpus === undefined ? null : round(t.otherCpus, 2),
    },
    `${pad(label, LABEL)} ${pad(secs(t.median), 9)} median of ${t.runs.length} (min ${secs(t.min)}, max ${secs(t.max)}` +
      `${t.first === undefined ? "" : `, ${firstLabel} ${secs(t.first)}`})` +
      (compared
        ? `\n${pad("", LABEL)} ${flopsText(flops)} → ${gflops.toFixed(1)} GFLOP/s = ${((100 * gflops) / peak.gflops).toFixed(1)}% of ` +
          `the MatMul peak; lower bound ${secs(lowerBound)}, ${(t.median / lowerBound).toFixed(2)}× it`
        : "") +
      contention(t),
  ];
}

/** The process's peak resident memory so far, in bytes (getrusage's ru_maxrss is in kilobytes). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** The process's peak RSS so far, next to the fp32 weights it holds. */
export function peakRssFigure(weightBytes: number): [Figure, string] {
  const peak = peakRssBytes();
  return [
    {
      figure: "peak_rss",
      unit: "bytes",
      bytes: peak,
      fp32_weights_bytes: weightBytes,
      over_weights_bytes: peak - weightBytes,
    },
    `${pad("peak RSS", LABEL)} ${gib(peak)} (fp32 weights ${bytesText(weightBytes)}, ${bytesText(peak - weightBytes)} above them)`,
  ];
}

/** The GPUs nvidia-smi lists (names, memory, driver). */
export function gpuFigure(gpus: string[]): [Figure, string] {
  return [
    { figure: "gpu", gpus },
    `${pad("gpu", LABEL)} ${gpus.length ? gpus.join("; ") : "none found by nvidia-smi"}`,
  ];
}
