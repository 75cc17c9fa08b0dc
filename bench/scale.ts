/**
 * bench/scale: throughput of the scale-out with 1, 2 and 4 worker processes. For each count, one
 * API node (`sdserve serve --no-worker`) and that many `sdserve worker` processes run the
 * tiny-random model on PostgreSQL and Redis (a fresh database and key prefix per count); the
 * predictions are created at once through the API and followed to completion. Prints, per
 * worker count, completed predictions per second (first create to last completion) and the
 * create-to-completion latency p50/p99. Nothing is asserted.
 *
 *   npx tsx bench/scale.ts [--workers 1,2,4] [--predictions 24] [--steps 4] [--size 256] [--json]
 *
 * PostgreSQL and Redis: SDSERVE_TEST_DATABASE_URL and SDSERVE_TEST_REDIS_URL when set (as
 * `.ci/services` prints them), else private ones started from Debian's packages for the run.
 * Each worker runs ONNX Runtime on one thread; on a machine with fewer cores than workers the
 * figures show the contention. See bench/README.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freshDatabase, redisForTest } from "../test/helpers/services.js";
import { intOption, printUsageAndExit } from "./lib/cli.js";
import { machineInfo } from "./lib/machine.js";
import { LABEL, pad, Report, round } from "./lib/report.js";

const BENCH = "scale";
const TOKEN = "r8_bench_scale";
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

interface Proc {
  child: ChildProcess;
  url: string;
}

function start(command: "serve" | "worker", env: Record<string, string>, args: string[]): Promise<Proc> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-bench-scale-"));
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(ROOT, "src/cli/main.ts"),
      command,
      "--model",
      "tiny-random",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--threads",
      "1",
      ...args,
    ],
    { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.once("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  const ready =
    command === "serve" ? /sdserve listening on (http:\/\/[^\s"]+)/ : /sdserve worker running .* on (http:\/\/[^\s"]+)/;
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (c: Buffer) => {
      text += c.toString();
      const m = ready.exec(text);
      if (m) resolve({ child, url: m[1] as string });
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`sdserve ${command} exited (${code}):\n${text}`)));
  });
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((resolve) => p.child.once("exit", resolve));
  p.child.kill("SIGTERM");
  await exited;
}

async function untilReady(url: string): Promise<void> {
  for (;;) {
    const health = (await (await fetch(`${url}/health-check`)).json()) as { status: string };
    if (health.status === "READY") return;
    if (health.status === "SETUP_FAILED")
      throw new Error(`a worker could not load the model: ${JSON.stringify(health)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

async function measure(workers: number, predictions: number, input: Record<string, unknown>) {
  const db = await freshDatabase();
  const redis = redisForTest();
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: redis.url,
    SDSERVE_REDIS_PREFIX: redis.prefix,
    SDSERVE_API_TOKENS: TOKEN,
    SDSERVE_QUEUE_MAX: "100000",
  };
  const procs: Proc[] = [];
  try {
    const api = await start("serve", env, ["--no-worker"]);
    procs.push(api);
    procs.push(...(await Promise.all(Array.from({ length: workers }, () => start("worker", env, [])))));
    await Promise.all(procs.slice(1).map((w) => untilReady(w.url)));
    const headers = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };
    const began = performance.now();
    // Each request waits for its prediction (Prefer: wait), so its latency is create to completion.
    const latencies = await Promise.all(
      Array.from({ length: predictions }, async (_, i) => {
        const t0 = performance.now();
        let p = (await (
          await fetch(`${api.url}/v1/predictions`, {
            method: "POST",
            headers: { ...headers, Prefer: "wait=60" },
            body: JSON.stringify({ version: "stability-ai/stable-diffusion", input: { ...input, seed: i } }),
          })
        ).json()) as { id: string; status: string };
        while (p.status !== "succeeded") {
          if (p.status === "failed" || p.status === "canceled") throw new Error(`prediction ${p.id} ${p.status}`);
          await new Promise((r) => setTimeout(r, 50));
          p = (await (await fetch(`${api.url}/v1/predictions/${p.id}`, { headers })).json()) as typeof p;
        }
        return performance.now() - t0;
      }),
    );
    const seconds = (performance.now() - began) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      seconds,
      perSecond: predictions / seconds,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
    };
  } finally {
    await Promise.all(procs.map(stop));
    await db.drop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: "string", default: "1,2,4" },
      predictions: { type: "string", default: "24" },
      steps: { type: "string", default: "4" },
      size: { type: "string", default: "256" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) printUsageAndExit(import.meta.url);
  const counts = values.workers.split(",").map((w) => intOption("workers", w.trim(), 1));
  const predictions = intOption("predictions", values.predictions, 1);
  const steps = intOption("steps", values.steps, 1);
  const size = intOption("size", values.size, 128);
  const input = { prompt: "a lighthouse at dusk", width: size, height: size, num_inference_steps: steps };
  const report = new Report(BENCH, values.json, "tiny-random");
  const m = machineInfo();
  report.emit(
    { figure: "machine", cpu: m.cpu, cores: m.cores, node: process.version, predictions, steps, size },
    `${pad("machine", LABEL)}${m.cpu}, ${m.cores} cores, node ${process.version}; ${predictions} predictions of ${size}×${size}, ${steps} steps, per worker count`,
  );
  for (const workers of counts) {
    const r = await measure(workers, predictions, input);
    report.emit(
      {
        figure: "throughput",
        workers,
        predictions_per_s: round(r.perSecond),
        seconds: round(r.seconds),
        latency_p50_ms: Math.round(r.p50),
        latency_p99_ms: Math.round(r.p99),
      },
      `${pad(`${workers} worker${workers === 1 ? "" : "s"}`, LABEL)}${round(r.perSecond)} predictions/s (${predictions} in ${round(r.seconds)} s), create to completion p50 ${Math.round(r.p50)} ms, p99 ${Math.round(r.p99)} ms`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
