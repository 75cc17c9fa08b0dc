/**
 * bench/api: what the HTTP layer costs. autocannon drives, in one run:
 * - bare: a Fastify route that answers {"ok":true}, on the same machine, for scale;
 * - get: GET /v1/predictions/{id} of one finished prediction on a real sdserve (the read path:
 *   auth, the store, serialisation), and its ratio to bare;
 * - create+get: POST /v1/predictions then GET /v1/predictions/{id} on a real sdserve (Fastify,
 *   auth, validation, SQLite store, queue, worker), whose model adapter completes at once
 *   (allowed in this bench only: the engine is not what is measured here);
 * - while generating: GET /v1/predictions/{id} and GET /health-check on a real sdserve running
 *   tiny-random, first idle, then while it makes a 640×640 image (the engine runs in its own
 *   process, so these should barely move).
 * Each server runs in its own child process, autocannon in this one. Prints requests per second,
 * latency p50/p99 (ms) and the server's CPU per request for each.
 *
 *   npx tsx bench/api.ts [--duration 10] [--connections 50] [--only bare,get,create_get,generating]
 *     [--log-level warn] [--json]
 *
 * --log-level: the sdserve servers' LOG_LEVEL (default warn: no record per request; at info
 * each request writes its record, to /dev/null, which is what a deployment's default pays).
 *
 * See bench/README.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { encode } from "fast-png";
import Fastify from "fastify";
import { LOG_LEVELS, type LogLevel, loadConfig } from "../src/config.js";
import { createLogger } from "../src/server/log.js";
import type { ModelAdapter, OutputFile } from "../src/server/models/model.js";
import {
  imageLimitsOf,
  STABLE_DIFFUSION_SCHEMAS,
  STABLE_DIFFUSION_VERSION,
} from "../src/server/models/stable-diffusion.js";
import { type InvalidField, validate } from "../src/server/schemas/json-schema.js";
import { startServer } from "../src/server/server.js";
import { intOption, printUsageAndExit } from "./lib/cli.js";
import { machineInfo } from "./lib/machine.js";
import { LABEL, pad, Report, round } from "./lib/report.js";

const BENCH = "api";
const TOKEN = "r8_bench";

/** stability-ai/stable-diffusion's name and schema (so validation is real), answering with one tiny PNG at once. */
class InstantAdapter implements ModelAdapter {
  readonly model = {
    owner: "stability-ai",
    name: "stable-diffusion",
    description: "instant stand-in for bench/api",
    githubUrl: null,
    paperUrl: null,
    licenseUrl: null,
  };
  readonly version = { id: STABLE_DIFFUSION_VERSION, createdAt: "2022-11-22T22:25:35.000000Z", cogVersion: "0.8.6" };
  readonly schemas = STABLE_DIFFUSION_SCHEMAS;
  readonly imageLimits = imageLimitsOf(STABLE_DIFFUSION_SCHEMAS);
  readonly state = "READY" as const;
  readonly setupError = undefined;
  private readonly png = encode({ width: 1, height: 1, data: new Uint8Array(3), channels: 3 });

  validateInput(input: unknown): InvalidField[] {
    return validate(this.schemas["Input"] ?? {}, input, {
      root: { components: { schemas: this.schemas } },
      path: "input",
    });
  }
  async setup(): Promise<void> {}
  async predict(): Promise<OutputFile[]> {
    return [{ name: "out-0.png", contentType: "image/png", data: this.png }];
  }
  async close(): Promise<void> {}
}

/** Child mode: serve, print the URL, run until killed. */
async function serve(kind: string, logLevel: LogLevel): Promise<void> {
  // The server's own CPU time so far, asked for around a measurement (robust where other processes share the CPUs).
  process.on("SIGUSR2", () => {
    const { user, system } = process.cpuUsage();
    console.log(`cpu ${user + system}`);
  });
  if (kind === "tiny") {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-bench-api-"));
    process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }));
    const config = loadConfig(["--model", "tiny-random", "--port", "0", "--data-dir", dataDir, "--threads", "1"], {
      ...process.env,
      SDSERVE_API_TOKENS: TOKEN,
    });
    const server = await startServer(config, createLogger({ logLevel, logFormat: "json" }, process.stderr));
    process.once("SIGTERM", () => void server.close().then(() => process.exit(0)));
    console.log(`listening on ${server.url}`);
    return;
  }
  // A clean exit on a signal, so that node --cpu-prof writes its profile.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(0));
  if (kind === "bare") {
    const app = Fastify({ logger: false });
    app.get("/", async () => ({ ok: true }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    const address = app.server.address() as { port: number };
    console.log(`listening on http://127.0.0.1:${address.port}`);
    return;
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-bench-api-"));
  process.on("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig(["--model", "instant", "--port", "0", "--data-dir", dataDir], {
    SDSERVE_API_TOKENS: TOKEN,
    SDSERVE_QUEUE_MAX: "1000000",
    SDSERVE_OUTPUT_RETENTION: "never",
  });
  const server = await startServer(
    config,
    // Warnings only: the request records are what a deployment pays for at LOG_LEVEL=info.
    createLogger({ logLevel, logFormat: "json" }, process.stderr),
    { models: [new InstantAdapter()] },
  );
  console.log(`listening on ${server.url}`);
}

/** The child server's CPU time so far, in µs. */
function cpuOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (c: Buffer) => {
      text += c.toString();
      const m = /cpu (\d+)/.exec(text);
      if (!m) return;
      child.stdout?.off("data", onData);
      resolve(Number(m[1]));
    };
    child.stdout?.on("data", onData);
    child.kill("SIGUSR2");
  });
}

function startChild(kind: string, logLevel: LogLevel): Promise<{ child: ChildProcess; url: string }> {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), "--serve", kind, "--log-level", logLevel];
  // Below warn the records go to /dev/null: written, as a deployment writes them, but not shown.
  const stderr = ["info", "debug", "trace"].includes(logLevel) ? "ignore" : "inherit";
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", stderr] });
  return new Promise((resolve, reject) => {
    let text = "";
    child.stdout?.on("data", (c: Buffer) => {
      text += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) resolve({ child, url: m[1] as string });
    });
    child.once("exit", (code) => reject(new Error(`the ${kind} server exited (${code}) before listening`)));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: "string", default: "10" },
      connections: { type: "string", default: "50" },
      only: { type: "string", default: "bare,get,create_get,generating" },
      "log-level": { type: "string", default: "warn" },
      json: { type: "boolean", default: false },
      serve: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) printUsageAndExit(import.meta.url);
  const logLevel = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  if (values.serve) return serve(values.serve, logLevel);
  const duration = intOption("duration", values.duration, 1);
  const connections = intOption("connections", values.connections, 1);
  const report = new Report(BENCH, values.json);
  const m = machineInfo();
  report.emit(
    {
      figure: "machine",
      cpu: m.cpu,
      cores: m.cores,
      node: process.version,
      duration_s: duration,
      connections,
      log_level: logLevel,
    },
    `${pad("machine", LABEL)}${m.cpu}, ${m.cores} cores, node ${process.version}; ${connections} connections, ${duration} s each; LOG_LEVEL ${logLevel}`,
  );

  const body = JSON.stringify({
    version: STABLE_DIFFUSION_VERSION,
    input: { prompt: "a lighthouse at dusk", width: 512, height: 512, num_inference_steps: 25, seed: 1 },
  });
  const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  const runs: {
    name: string;
    label: string;
    kind: string;
    opts: (url: string) => autocannon.Options | Promise<autocannon.Options>;
  }[] = [
    {
      name: "bare",
      label: "bare Fastify route (GET /)",
      kind: "bare",
      opts: (url) => ({ url, connections, duration }),
    },
    {
      name: "get",
      label: "get (GET /v1/predictions/{id})",
      kind: "sdserve",
      opts: async (url) => {
        // One finished prediction, read over and over.
        const res = await fetch(`${url}/v1/predictions`, {
          method: "POST",
          headers: { ...headers, prefer: "wait" },
          body,
        });
        const { id } = (await res.json()) as { id: string };
        return { url: `${url}/v1/predictions/${id}`, headers, connections, duration };
      },
    },
    {
      name: "create_get",
      label: "create + get (POST, then GET by id)",
      kind: "sdserve",
      opts: (url) => ({
        url,
        connections,
        duration,
        requests: [
          {
            method: "POST",
            path: "/v1/predictions",
            headers,
            body,
            onResponse: (status, resBody, context) => {
              if (status === 201)
                (context as Record<string, string>)["id"] = (JSON.parse(resBody) as { id: string }).id;
            },
          },
          {
            method: "GET",
            headers,
            setupRequest: (req, context) => ({
              ...req,
              path: `/v1/predictions/${(context as Record<string, string>)["id"]}`,
            }),
          },
        ],
      }),
    },
  ];
  const perSecond: Record<string, number> = {};
  const serverCpu: Record<string, number> = {};
  const only = new Set(values.only.split(","));
  for (const run of runs.filter((r) => only.has(r.name))) {
    const { child, url } = await startChild(run.kind, logLevel);
    try {
      const options = await run.opts(url);
      const cpuBefore = await cpuOf(child);
      const result = await autocannon(options);
      const cpuPerRequest = (await cpuOf(child)) - cpuBefore;
      const errors = result.errors + result.timeouts + result.non2xx;
      perSecond[run.name] = result.requests.average;
      serverCpu[run.name] = cpuPerRequest / Math.max(1, result.requests.total);
      report.emit(
        {
          figure: run.name,
          requests_per_s: round(result.requests.average),
          latency_p50_ms: result.latency.p50,
          latency_p99_ms: result.latency.p99,
          requests: result.requests.total,
          server_cpu_us_per_request: round(serverCpu[run.name] ?? 0),
          errors,
        },
        `${pad(run.label, LABEL + 4)}${round(result.requests.average, 5)} req/s, latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, server CPU ${(serverCpu[run.name] ?? 0).toFixed(0)} µs/request (${result.requests.total} requests${errors ? `, ${errors} errors or non-2xx` : ""})`,
      );
    } finally {
      child.kill("SIGTERM");
    }
  }
  const bare = perSecond["bare"];
  const get = perSecond["get"];
  const bareCpu = serverCpu["bare"];
  const getCpu = serverCpu["get"];
  if (bare && get && bareCpu && getCpu) {
    const ratio = get / bare;
    const cpuRatio = bareCpu / getCpu;
    report.emit(
      { figure: "get_vs_bare", ratio: round(ratio, 3), cpu_ratio: round(cpuRatio, 3) },
      `${pad("get / bare", LABEL + 4)}${(ratio * 100).toFixed(1)} % of the bare route's requests per second; ` +
        `${(cpuRatio * 100).toFixed(1)} % by server CPU per request`,
    );
  }
  if (only.has("generating")) await whileGenerating(report, duration, connections, logLevel);
}

/** GET of one prediction and /health-check, idle and then while the engine makes a 640×640 image. */
async function whileGenerating(
  report: Report,
  duration: number,
  connections: number,
  logLevel: LogLevel,
): Promise<void> {
  const { child, url } = await startChild("tiny", logLevel);
  const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  const create = async (input: Record<string, unknown>, wait: boolean) => {
    const res = await fetch(`${url}/v1/predictions`, {
      method: "POST",
      headers: wait ? { ...headers, prefer: "wait=60" } : headers,
      body: JSON.stringify({ version: STABLE_DIFFUSION_VERSION, input }),
    });
    return (await res.json()) as { id: string; status: string; logs: string };
  };
  const get = async (id: string) =>
    (await (await fetch(`${url}/v1/predictions/${id}`, { headers })).json()) as { status: string; logs: string };
  try {
    // Setup done and one small prediction made: its GET is the idle figure.
    const small = await create({ prompt: "idle", width: 128, height: 128, num_inference_steps: 1 }, true);
    if (small.status !== "succeeded") throw new Error(`the warm-up prediction ended ${small.status}`);
    const measure = async (phase: string, id: string) => {
      for (const [name, route, h] of [
        ["get", `/v1/predictions/${id}`, headers],
        ["health", "/health-check", {}],
      ] as const) {
        const result = await autocannon({ url: `${url}${route}`, headers: h, connections, duration });
        const errors = result.errors + result.timeouts + result.non2xx;
        const label = `${name === "get" ? "GET /v1/predictions/{id}" : "GET /health-check"}, ${phase}`;
        report.emit(
          {
            figure: `${name}_${phase.replace(/\W+/g, "_")}`,
            requests_per_s: round(result.requests.average),
            latency_p50_ms: result.latency.p50,
            latency_p99_ms: result.latency.p99,
            requests: result.requests.total,
            errors,
          },
          `${pad(label, LABEL + 4)}${round(result.requests.average, 5)} req/s, latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms (${result.requests.total} requests${errors ? `, ${errors} errors or non-2xx` : ""})`,
        );
      }
    };
    await measure("idle", small.id);
    // Enough steps to outlast both measurements; canceled after them.
    const big = await create({ prompt: "busy", width: 640, height: 640, num_inference_steps: 500 }, false);
    for (let i = 0; i < 600 && !/\| [1-9]\d*\/500 \[/.test((await get(big.id)).logs ?? ""); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await measure("generating", big.id);
    const after = await get(big.id);
    if (after.status !== "processing")
      throw new Error(`the generation ended (${after.status}) before the measurement did`);
    const steps = /\| (\d+)\/500 \[[^\]]*\]\s*$/.exec(after.logs)?.[1];
    report.note(`(the 640×640 generation ran ${steps ?? "?"} steps during the two measurements)`);
    await fetch(`${url}/v1/predictions/${big.id}/cancel`, { method: "POST", headers });
  } finally {
    child.kill("SIGTERM");
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
