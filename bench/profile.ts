/**
 * bench/profile: where one network's time and memory go, from onnxruntime's own profiler.
 *
 *   npx tsx bench/profile.ts --model sd-1.5 --part unet [--size 512] [--batch 2] [--runs 2]
 *     [--threads N] [--top 25] [--keep] [--json] [--cache DIR] [--seed 0]
 *
 * Builds the engine's graph for one network of a preset (random weights, shared with
 * bench/unet-step's cache), creates its session with the engine's own session options plus
 * `enableProfiling`, runs it once to warm up and `--runs` more times, then prints:
 *
 * - session creation: wall time, onnxruntime's model loading and initialisation from the
 *   profile, the RSS after it and the peak RSS so far;
 * - per run: wall time and the peak RSS after it;
 * - per operator type, over the measured runs: milliseconds per run, share of the kernels'
 *   total, number of nodes (fused operators show under their fused names: FusedConv,
 *   NchwcConv, MultiHeadAttention, …);
 * - the `--top` slowest nodes per run, with their input shapes.
 *
 * The raw profile (Chrome trace JSON; open it in chrome://tracing or Perfetto) is deleted
 * unless `--keep`. Profiling adds a little time to every kernel; the figures to quote are
 * bench/unet-step's, these say where that time goes.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { TextEncoder, UNet, VaeDecoder } from "../src/engine/networks.js";
import type { NetworkSession } from "../src/engine/runtime.js";
import type { ComponentName } from "../src/engine/weights/model-folder.js";
import { writeRandomComponent } from "../src/engine/weights/random-weights.js";
import { intOption as int, printUsageAndExit } from "./lib/cli.js";
import { noiseTensor, readPresetConfig } from "./lib/inputs.js";
import { gib, LABEL, pad, peakRssBytes, Report, round, secs } from "./lib/report.js";
import { time } from "./lib/timing.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PARTS: Record<string, ComponentName> = { text: "text_encoder", unet: "unet", vae: "vae" };
const TOKENS = 77;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: "sd-1.5" },
      part: { type: "string", default: "unet" },
      size: { type: "string" },
      batch: { type: "string" },
      runs: { type: "string", default: "2" },
      threads: { type: "string", default: "0" },
      top: { type: "string", default: "25" },
      keep: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      cache: { type: "string", default: path.join(REPO_ROOT, ".cache", "bench") },
      seed: { type: "string", default: "0" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) printUsageAndExit(import.meta.url);
  const component = PARTS[values.part];
  if (!component) throw new Error(`--part takes ${Object.keys(PARTS).join(", ")}, got ${values.part}`);
  return {
    model: values.model,
    part: values.part,
    component,
    size: values.size === undefined ? undefined : int("size", values.size, 8),
    batch: values.batch === undefined ? undefined : int("batch", values.batch, 1),
    runs: int("runs", values.runs, 1),
    threads: int("threads", values.threads, 0),
    top: int("top", values.top, 0),
    keep: values.keep,
    json: values.json,
    cache: path.resolve(values.cache),
    seed: int("seed", values.seed, 0),
  };
}

/** One event of onnxruntime's profile (Chrome trace format; times in µs). */
interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Record<string, number[]>[] };
}

interface OpTotal {
  op: string;
  us: number;
  nodes: Set<string>;
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const report = new Report("profile", opts.json, opts.model, { part: opts.part });
  const config = readPresetConfig(opts.model, opts.component);
  const dir = path.join(opts.cache, opts.model, opts.component);
  const weights = await writeRandomComponent(dir, opts.component, config, { seed: opts.seed });

  const profileDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-profile-"));
  const runtime = { threads: opts.threads, profilePrefix: path.join(profileDir, opts.part) };

  // The network, and one call of it on inputs of the asked size.
  let session: NetworkSession | undefined;
  let call: () => Promise<unknown> = async () => undefined;
  let shapeText = "";
  const createSeconds = await time(async () => {
    if (opts.component === "text_encoder") {
      const text = await TextEncoder.load(weights.files, runtime);
      const batch = opts.batch ?? 2;
      const vocab = config["vocab_size"] as number;
      const ids = Array.from({ length: batch }, (_, b) =>
        Array.from({ length: TOKENS }, (_, i) => (i * 7919 + b * 104729 + 1) % vocab),
      );
      session = text.session;
      call = () => text.encode(ids);
      shapeText = `batch ${batch}, ${TOKENS} tokens`;
    } else if (opts.component === "unet") {
      const unet = await UNet.load(weights.files, runtime);
      const latent = opts.size ? opts.size / 8 : (config["sample_size"] as number);
      const batch = opts.batch ?? 2;
      const crossDim = unet.config?.crossDim[0] as number;
      const shape = [batch, unet.config?.inChannels ?? 4, latent, latent];
      const sample = noiseTensor(shape, 1);
      const context = noiseTensor([batch, TOKENS, crossDim], 2);
      session = unet.session;
      call = () => unet.run(sample, 500, context);
      shapeText = `${latent * 8}², batch ${batch}`;
    } else {
      const vae = await VaeDecoder.load(weights.files, runtime);
      const nativeLatent = readPresetConfig(opts.model, "unet")["sample_size"] as number;
      const pixels = opts.size ?? nativeLatent * vae.config.scaleFactor;
      const latent = pixels / vae.config.scaleFactor;
      const batch = opts.batch ?? 1;
      const shape = [batch, vae.config.latentChannels, latent, latent];
      const latents = noiseTensor(shape, 3);
      session = vae.session;
      call = () => vae.decode(latents);
      shapeText = `${pixels}², batch ${batch}`;
    }
  });
  const net = session as NetworkSession;
  report.heading(`${opts.model} ${opts.component} (${shapeText}), random weights`);
  const rssAfterCreate = process.memoryUsage().rss;
  const peakAfterCreate = peakRssBytes();

  const runSeconds: number[] = [];
  const peakAfterRun: number[] = [];
  for (let i = 0; i <= opts.runs; i++) {
    runSeconds.push(await time(call));
    peakAfterRun.push(peakRssBytes());
  }
  net.endProfiling();
  await net.release();

  const file = readdirSync(profileDir).find((f) => f.endsWith(".json"));
  if (!file) throw new Error(`onnxruntime wrote no profile into ${profileDir}`);
  const events = JSON.parse(readFileSync(path.join(profileDir, file), "utf8")) as TraceEvent[];
  if (opts.keep) report.note(`${pad("profile", LABEL)} ${path.join(profileDir, file)}`);
  else rmSync(profileDir, { recursive: true, force: true });

  // Session creation.
  const sessionEvent = (name: string) => events.find((e) => e.cat === "Session" && e.name.startsWith(name));
  const loading = sessionEvent("model_loading");
  const init = sessionEvent("session_initialization");
  report.emit(
    {
      figure: "session_create",
      unit: "s",
      seconds: round(createSeconds),
      model_loading_s: loading ? round(loading.dur / 1e6) : null,
      session_initialization_s: init ? round(init.dur / 1e6) : null,
      rss_after_bytes: rssAfterCreate,
      peak_rss_bytes: peakAfterCreate,
    },
    `${pad("session create", LABEL)} ${secs(createSeconds)} (graph built and serialised: ` +
      `${secs(createSeconds - ((loading?.dur ?? 0) + (init?.dur ?? 0)) / 1e6)}, onnxruntime loading ` +
      `${secs((loading?.dur ?? 0) / 1e6)}, initialisation ${secs((init?.dur ?? 0) / 1e6)}); ` +
      `RSS ${gib(rssAfterCreate)}, peak ${gib(peakAfterCreate)}`,
  );
  for (const [i, s] of runSeconds.entries()) {
    const peak = peakAfterRun[i] as number;
    report.emit(
      { figure: "run", run: i, warmup: i === 0, unit: "s", seconds: round(s), peak_rss_bytes: peak },
      `${pad(i === 0 ? "run 0 (warm-up)" : `run ${i}`, LABEL)} ${pad(secs(s), 9)} (peak RSS after it: ${gib(peak)})`,
    );
  }

  // Kernel times of the measured runs: the node events after the end of the first model_run.
  const modelRuns = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const warmupEnd = modelRuns[0] ? modelRuns[0].ts + modelRuns[0].dur : 0;
  const kernels = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time") && e.ts >= warmupEnd);
  const measuredRuns = Math.max(1, modelRuns.length - 1);
  const byOp = new Map<string, OpTotal>();
  const byNode = new Map<string, { op: string; us: number; shapes: string }>();
  let totalUs = 0;
  for (const e of kernels) {
    const op = e.args?.op_name ?? "?";
    const node = e.name.slice(0, -"_kernel_time".length);
    const o = byOp.get(op) ?? { op, us: 0, nodes: new Set<string>() };
    o.us += e.dur;
    o.nodes.add(node);
    byOp.set(op, o);
    const shapes = (e.args?.input_type_shape ?? []).map((s) => `[${Object.values(s)[0]?.join(",")}]`).join(" ");
    const n = byNode.get(node) ?? { op, us: 0, shapes };
    n.us += e.dur;
    byNode.set(node, n);
    totalUs += e.dur;
  }
  const runWall = runSeconds.slice(1).reduce((a, s) => a + s, 0) / measuredRuns;
  report.emit(
    { figure: "kernels", unit: "s", per_run_s: round(totalUs / measuredRuns / 1e6), run_wall_s: round(runWall) },
    `${pad("kernels, per run", LABEL)} ${secs(totalUs / measuredRuns / 1e6)} of ${secs(runWall)} wall`,
  );
  report.note(`\n${pad("operator", 28)} ${pad("ms/run", 10)} ${pad("share", 7)} nodes`);
  for (const o of [...byOp.values()].sort((a, b) => b.us - a.us)) {
    const ms = o.us / measuredRuns / 1000;
    report.emit(
      { figure: "op", op: o.op, ms_per_run: round(ms), share: round(o.us / totalUs, 3), nodes: o.nodes.size },
      `${pad(o.op, 28)} ${pad(ms.toFixed(1), 10)} ${pad(`${((100 * o.us) / totalUs).toFixed(1)}%`, 7)} ${o.nodes.size}`,
    );
  }
  if (opts.top > 0) report.note(`\nslowest nodes (ms per run)`);
  for (const [node, n] of [...byNode.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, opts.top)) {
    const ms = n.us / measuredRuns / 1000;
    report.emit(
      { figure: "node", node, op: n.op, ms_per_run: round(ms), inputs: n.shapes },
      `${pad(ms.toFixed(1), 8)} ${pad(n.op, 20)} ${node}  ${n.shapes}`,
    );
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
