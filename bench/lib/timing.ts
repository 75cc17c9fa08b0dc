/**
 * Wall-clock timing of repeated calls: median, min and max, plus the first (cold) call apart,
 * and how busy other processes kept the CPUs meanwhile (figures taken on a shared machine
 * are only as good as that number is small).
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

export interface Timing {
  /** Seconds of each measured run, in order. */
  runs: number[];
  median: number;
  min: number;
  max: number;
  /** Seconds of the first call (before the measured runs), undefined without warm-up. */
  first?: number;
  /**
   * CPUs kept busy by other processes during the measured runs, on average (Linux; from
   * /proc/stat less this process's own CPU time). Undefined where it cannot be read.
   */
  otherCpus?: number;
}

/** Seconds of CPU time all processes have used since boot (user, nice, system, irq, softirq, steal). */
function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    // USER_HZ is 100 on every Linux architecture node runs on.
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return undefined;
  }
}

function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return (performance.now() - start) / 1000;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median, min and max of figures gathered elsewhere (e.g. the parts of each pipeline run). */
export function summarize(runs: readonly number[], extra: { first?: number; otherCpus?: number } = {}): Timing {
  return { runs: [...runs], median: median(runs), min: Math.min(...runs), max: Math.max(...runs), ...extra };
}

/**
 * Runs `warmup` calls (the first one's time is kept: it includes onnxruntime's one-time
 * allocations), then `runs` measured calls.
 */
export async function timeRuns(fn: () => Promise<unknown>, opts: { warmup: number; runs: number }): Promise<Timing> {
  let first: number | undefined;
  for (let i = 0; i < opts.warmup; i++) {
    const t = await time(fn);
    first ??= t;
  }
  const runs: number[] = [];
  const busy0 = machineBusySeconds();
  const own0 = ownCpuSeconds();
  const start = performance.now();
  for (let i = 0; i < opts.runs; i++) runs.push(await time(fn));
  const elapsed = (performance.now() - start) / 1000;
  const busy1 = machineBusySeconds();
  const otherCpus =
    busy0 === undefined || busy1 === undefined
      ? undefined
      : Math.max(0, (busy1 - busy0 - (ownCpuSeconds() - own0)) / elapsed);
  return summarize(runs, { first, otherCpus });
}
