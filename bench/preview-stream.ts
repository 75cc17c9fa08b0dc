/**
 * bench/preview-stream: live previews as a client sees them, through a real `sdserve serve`
 * (the engine in its own process, previews sent as PNGs over IPC, then SSE). For each preview
 * decoder — none (the linear latent map) and the tiny autoencoder (--preview-vae) — one server,
 * one warm-up prediction, then --runs predictions, each followed on `urls.stream?preview=1`:
 * - first step: from the prediction's first log line ("Using seed", written as the adapter starts)
 *   to the progress line of step 1;
 * - first preview: from that first log line to the first `preview` event (issue 17's target:
 *   ≤ one step + 0.5 s);
 * - step: the mean time per step over the run (from the progress lines), and with TAESD its
 *   excess over the linear map's, as a fraction of a step: what the previews cost (target < 5 %);
 * - previews per run and the preview's size.
 * Figures are printed, never asserted.
 *
 *   npx tsx bench/preview-stream.ts [--model tiny-random|FOLDER] [--preview taesd|DIR] [--preview-size 256]
 *     [--size 512] [--steps 8] [--scheduler K_EULER] [--guidance 7.5] [--runs 3] [--threads N] [--cache DIR]
 *
 * --preview taesd: presets/taesd with random weights (the cost does not depend on the values). A
 * full-size model folder with random weights: the one bench/pipeline.ts writes under
 * .cache/bench/<model> (e.g. --model .cache/bench/sd-1.5 after `npx tsx bench/pipeline.ts --model sd-1.5`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { writeRandomComponent } from "../src/engine/weights/random-weights.js";
import { intOption, printUsageAndExit } from "./lib/cli.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TOKEN = "r8_bench_previews";
const TAESD = "taesd";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "tiny-random" },
    preview: { type: "string", default: TAESD },
    "preview-size": { type: "string", default: "256" },
    size: { type: "string", default: "512" },
    steps: { type: "string", default: "8" },
    scheduler: { type: "string", default: "K_EULER" },
    guidance: { type: "string", default: "7.5" },
    runs: { type: "string", default: "3" },
    threads: { type: "string" },
    cache: { type: "string", default: path.join(REPO_ROOT, ".cache", "bench") },
    help: { type: "boolean", default: false },
  },
});
if (values.help) printUsageAndExit(import.meta.url);

const size = intOption("size", values.size, 8);
const steps = intOption("steps", values.steps, 2);
const runs = intOption("runs", values.runs, 1);
const previewSize = intOption("preview-size", values["preview-size"], 8);
const cache = path.resolve(values.cache);

interface Server {
  url: string;
  proc: ChildProcess;
}

async function startServer(extra: string[]): Promise<Server> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-bench-previews-"));
  const model = values.model === "tiny-random" ? "tiny-random" : path.resolve(values.model);
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(REPO_ROOT, "src/cli/main.ts"),
      "serve",
      "--model",
      model,
      "--port",
      "0",
      "--data-dir",
      dataDir,
      ...(values.threads ? ["--threads", values.threads] : []),
      ...extra,
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, SDSERVE_API_TOKENS: TOKEN, SDSERVE_CACHE: path.join(cache, "sdserve") },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  proc.once("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  let text = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const m = /sdserve listening on (http:\/\/[^\s"]+)/.exec(text);
      if (m) resolve(m[1] as string);
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`sdserve exited (${code}):\n${text}`)));
  });
  return { url, proc };
}

interface Run {
  firstStep: number;
  firstPreview: number | undefined;
  stepMean: number;
  previews: number;
  previewSize: string;
}

/** One prediction, followed on its stream from creation to done; times in seconds. */
async function followOne(server: Server, seed: number): Promise<Run> {
  const res = await fetch(`${server.url}/v1/predictions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      version: "stability-ai/stable-diffusion",
      input: {
        prompt: "a lighthouse at dusk, oil painting",
        width: size,
        height: size,
        num_inference_steps: steps,
        scheduler: values.scheduler,
        guidance_scale: Number(values.guidance),
        seed,
      },
    }),
  });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
  const created = (await res.json()) as { urls: { stream: string } };
  const stream = await fetch(`${created.urls.stream}?preview=1`, { headers: { Accept: "text/event-stream" } });
  if (!stream.body) throw new Error("no stream body");
  const decoder = new TextDecoder();
  let buffered = "";
  let started: number | undefined;
  let firstStep: number | undefined;
  let firstPreview: number | undefined;
  let lastStep: number | undefined;
  let previews = 0;
  let shownSize = "";
  for await (const chunk of stream.body) {
    const now = performance.now();
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf("\n\n");
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      if (event === "logs") {
        started ??= now;
        const m = /\| (\d+)\/(\d+) \[/.exec(data);
        if (m && Number(m[1]) === 1) firstStep ??= now;
        if (m && Number(m[1]) === steps) lastStep = now;
      } else if (event === "preview") {
        previews++;
        firstPreview ??= now;
        const image = (JSON.parse(data) as { images: string[] }).images[0] ?? "";
        const png = Buffer.from(image.slice(image.indexOf(",") + 1), "base64");
        shownSize = `${png.readUInt32BE(16)}×${png.readUInt32BE(20)}`;
      } else if (event === "error") {
        throw new Error(`prediction failed: ${data}`);
      }
    }
  }
  if (started === undefined || firstStep === undefined || lastStep === undefined) {
    throw new Error("the stream ended without the progress lines");
  }
  return {
    firstStep: (firstStep - started) / 1000,
    firstPreview: firstPreview === undefined ? undefined : (firstPreview - started) / 1000,
    stepMean: (lastStep - started) / 1000 / steps,
    previews,
    previewSize: shownSize,
  };
}

async function previewFolder(): Promise<string> {
  if (values.preview !== TAESD) return path.resolve(values.preview);
  const config = JSON.parse(readFileSync(path.join(REPO_ROOT, "presets", TAESD, "config.json"), "utf8"));
  const dir = path.join(cache, TAESD);
  await writeRandomComponent(dir, "vae", config, { seed: 0 });
  return dir;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const s = (x: number | undefined) => (x === undefined ? "—" : `${x.toFixed(3)} s`);

const variants = [
  { name: "linear map", args: [] as string[] },
  { name: "TAESD", args: ["--preview-vae", await previewFolder(), "--preview-size", String(previewSize)] },
];
console.log(
  `preview-stream: ${values.model} ${size}², ${steps} steps of ${values.scheduler}, guidance ${values.guidance}; ` +
    `medians of ${runs} run(s) after one warm-up`,
);
const stepMeans: number[] = [];
for (const variant of variants) {
  const server = await startServer(variant.args);
  try {
    await followOne(server, 1);
    const results: Run[] = [];
    for (let i = 0; i < runs; i++) results.push(await followOne(server, 2 + i));
    const step = median(results.map((r) => r.stepMean));
    stepMeans.push(step);
    const firstPreviews = results.map((r) => r.firstPreview).filter((x): x is number => x !== undefined);
    const firstStep = median(results.map((r) => r.firstStep));
    const firstPreview = firstPreviews.length ? median(firstPreviews) : undefined;
    console.log(
      `${variant.name.padEnd(11)} first step ${s(firstStep)}, first preview ${s(firstPreview)}` +
        (firstPreview === undefined ? "" : ` (step + ${(firstPreview - firstStep).toFixed(3)} s)`) +
        `, step ${s(step)}, ${median(results.map((r) => r.previews))} previews of ${results[0]?.previewSize || "—"}`,
    );
  } finally {
    server.proc.kill("SIGTERM");
    await new Promise((resolve) => server.proc.once("exit", resolve));
  }
}
const [linear, taesd] = stepMeans as [number, number];
console.log(`TAESD previews cost ${(((taesd - linear) / linear) * 100).toFixed(1)} % of a step over the linear map's`);
