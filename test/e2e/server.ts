/**
 * Starts the real `sdserve serve` as a child process (tiny-random model, a fresh data directory,
 * a free loopback port chosen by the server and read from its "listening on" line).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { modelSpec } from "../../src/model-catalog.js";
import { REPO_ROOT } from "../helpers/fixtures.js";

/** Temporary folders made here, removed when the test process exits. */
const temporary: string[] = [];
process.once("exit", () => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});
function temporaryDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** One tiny-random model folder per test process. */
const CACHE = temporaryDir("sdserve-e2e-cache-");

export const TOKEN = "r8_e2e_token_alice";
export const OTHER_TOKEN = "r8_e2e_token_bob";
/** Replicate's version id of stability-ai/stable-diffusion: accepted whatever weights serve the model. */
export const VERSION = "ac732df83cea7fff18b8472768c88ad041fa750ff7682a21affe81863cbe77e4";
export const MODEL = "stability-ai/stable-diffusion";
/** The version the test server reports: derived from its definition (the model on tiny-random). */
export const SERVED_VERSION = modelSpec(MODEL, "tiny-random").version;

export interface Sdserve {
  url: string;
  dataDir: string;
  proc: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** SIGTERM, then wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no shutdown at all, as in a crash. */
  kill(): Promise<void>;
}

export function newDataDir(): string {
  return temporaryDir("sdserve-e2e-data-");
}

export async function startSdserve(
  opts: {
    dataDir?: string;
    env?: Record<string, string>;
    args?: string[];
    command?: "serve" | "worker";
    /** --model's weights (default tiny-random); null: no --model, the models file alone. */
    model?: string | null;
  } = {},
): Promise<Sdserve> {
  const command = opts.command ?? "serve";
  const dataDir = opts.dataDir ?? newDataDir();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SDSERVE_CACHE: CACHE,
    SDSERVE_API_TOKENS: `${TOKEN},${OTHER_TOKEN}`,
    SDSERVE_THREADS: "1",
    ...opts.env,
  };
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(REPO_ROOT, "src/cli/main.ts"),
      command,
      ...(opts.model === null ? [] : ["--model", opts.model ?? "tiny-random"]),
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--data-dir",
      dataDir,
      ...(opts.args ?? []),
    ],
    { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let text = "";
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const m =
        command === "serve"
          ? /sdserve listening on (http:\/\/[^\s"]+)/.exec(text)
          : /sdserve worker running .* on (http:\/\/[^\s"]+)/.exec(text);
      if (m) resolve(m[1] as string);
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    exited.then((code) => reject(new Error(`sdserve exited (${code}) before listening:\n${text}`)));
  });
  return {
    url,
    dataDir,
    proc,
    output: () => text,
    stop: async () => {
      proc.kill("SIGTERM");
      return exited;
    },
    kill: async () => {
      proc.kill("SIGKILL");
      await exited;
    },
  };
}

export function authHeaders(token = TOKEN): Record<string, string> {
  return { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
}

/** Small, fast inputs: the tiny model at its smallest allowed size and a few steps. */
export function smallInput(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { prompt: "a lighthouse at dusk", width: 128, height: 128, num_inference_steps: 2, ...extra };
}

/** Inputs that keep the worker busy until canceled (500 steps at 512×512 take minutes on the tiny model). */
export function slowInput(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { prompt: "a slow one", width: 512, height: 512, num_inference_steps: 500, ...extra };
}

/** Polls until `check` returns a value, or fails after `attempts` tries. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  what: string,
  { attempts = 600, intervalMs = 100 } = {},
): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`gave up waiting for ${what}`);
}

export async function api(
  server: Sdserve,
  method: string,
  route: string,
  body?: unknown,
  headers: Record<string, string> = authHeaders(),
): Promise<{ status: number; headers: Headers; json: Record<string, unknown> & { [k: string]: unknown } }> {
  const res = await fetch(route.startsWith("http") ? route : `${server.url}${route}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : {} };
}

export interface SseEvent {
  event?: string;
  id?: string;
  data: string;
}

/** Reads a whole SSE response (until the server closes it), keeping comments out. */
export async function readSse(url: string): Promise<SseEvent[]> {
  return (await readSseResponse(url)).events;
}

/** readSse, with request headers (Last-Event-ID) and the response itself. */
export async function readSseResponse(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ res: Response; events: SseEvent[] }> {
  const res = await fetch(url, { headers: { Accept: "text/event-stream", ...headers } });
  const text = await res.text();
  const events: SseEvent[] = [];
  for (const block of text.split("\n\n")) {
    const lines = block.split("\n").filter((l) => l && !l.startsWith(":"));
    if (lines.length === 0) continue;
    const e: SseEvent = { data: "" };
    const data: string[] = [];
    for (const line of lines) {
      const [field, ...rest] = line.split(": ");
      const value = rest.join(": ");
      if (field === "event") e.event = value;
      else if (field === "id") e.id = value;
      else if (field === "data") data.push(value);
    }
    e.data = data.join("\n");
    events.push(e);
  }
  return { res, events };
}

/** The value of one /metrics sample, by its name and labels as printed (the role label is on every sample). */
export function metricSample(text: string, name: string, labels = ""): number | undefined {
  const re = new RegExp(`^${name}\\{${labels ? `${labels},` : ""}role="[a-z]+"\\} (\\S+)$`, "m");
  const m = re.exec(text);
  return m ? Number(m[1]) : undefined;
}
