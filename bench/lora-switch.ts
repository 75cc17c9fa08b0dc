/**
 * bench/lora-switch: what LoRAs cost on a full-size UNet with random weights (presets/): the
 * time to switch a request from one LoRA to another (first use of a file: read and checked
 * against the model; later uses: from the pipeline's cache), against one denoising step; the
 * per-step price of LoRA support (the same UNet built with LoRA factors as inputs, at rank 0
 * and with a LoRA applied) against the plain UNet; and peak RSS with several LoRAs in rotation.
 *
 *   npx tsx bench/lora-switch.ts [--model sd-1.5|sdxl] [--rank 32] [--loras 3] [--runs 3] [--warmup 1]
 *     [--targets attention|all] [--threads N] [--json] [--cache DIR] [--optimized-cache on|off|DIR]
 *
 * Targets: UNet attention q/k/v/out, feed-forward and proj_in/proj_out (lora.ts); with
 * `--targets all` also the ResNet convolutions, time projections and samplers (LoCon,
 * LCM-LoRA). Random rank-r kohya LoRAs written once into the cache. Batch 2 (classifier-free guidance), 77 tokens;
 * an SDXL UNet (addition_embed_type "text_time") also gets its pooled text embedding and time ids.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  isLoraTarget,
  type LoadedLora,
  type LoraModel,
  loadLora,
  loraFeeds,
  moduleShapes,
} from "../src/engine/lora.js";
import { UNet } from "../src/engine/networks.js";
import type { Feeds } from "../src/engine/runtime.js";
import { writeRandomComponent } from "../src/engine/weights/random-weights.js";
import { writeSafetensors } from "../src/engine/weights/safetensors-writer.js";
import { intOption as int, optimizedCacheOption, printUsageAndExit } from "./lib/cli.js";
import { noise, noiseTensor, readPresetConfig } from "./lib/inputs.js";
import { gib, LABEL, pad, peakRssBytes, Report, round, secs, timedFigure } from "./lib/report.js";
import { time, timeRuns } from "./lib/timing.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "sd-1.5" },
    rank: { type: "string", default: "32" },
    targets: { type: "string", default: "attention" },
    loras: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    warmup: { type: "string", default: "1" },
    threads: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
    cache: { type: "string", default: path.join(REPO_ROOT, ".cache", "bench") },
    "optimized-cache": { type: "string", default: "on" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) printUsageAndExit(import.meta.url);
const rank = int("rank", values.rank, 1);
if (values.targets !== "attention" && values.targets !== "all") {
  throw new Error(`--targets takes attention or all, got ${values.targets}`);
}
const convs = values.targets === "all";
const loraCount = int("loras", values.loras, 1);
const runs = { warmup: int("warmup", values.warmup, 0), runs: int("runs", values.runs, 1) };
const threads = int("threads", values.threads, 0);
const cache = path.resolve(values.cache);
const report = new Report("lora-switch", values.json, values.model);

const unetConfig = readPresetConfig(values.model, "unet");
const latent = unetConfig["sample_size"] as number;
const crossDim = (unetConfig["cross_attention_dim"] as number) ?? 768;
const runtime = { threads, optimizedCache: optimizedCacheOption(values["optimized-cache"]) };

report.heading(`${values.model}: UNet at ${latent * 8}² (latents ${latent}², batch 2), rank-${rank} LoRAs, fp32`);
const unetDir = path.join(cache, values.model, "unet");
const weights = await writeRandomComponent(unetDir, "unet", unetConfig, { seed: 0 });

let withLora: UNet | undefined;
report.note(`${pad("LoRA targets", LABEL)} ${values.targets}`);
const loadSeconds = await time(async () => {
  withLora = await UNet.load(weights.files, runtime, (p) => isLoraTarget("unet", p, convs));
});
const unet = withLora as UNet;
report.emit(
  { figure: "session_create_lora", unit: "s", seconds: round(loadSeconds), targets: unet.lowRankTargets.size },
  `${pad("session create (LoRA inputs)", LABEL)} ${secs(loadSeconds)}, ${unet.lowRankTargets.size} LoRA-able layers`,
);

// Random kohya LoRAs on every LoRA-able layer.
const model: LoraModel = {
  modules: { unet: moduleShapes(weights.files.tensors), text_encoder: new Map() },
  targets: { unet: unet.lowRankTargets, text_encoder: new Map() },
};
const files: string[] = [];
const loraDir = path.join(cache, values.model, "loras");
await mkdir(loraDir, { recursive: true });
for (let n = 0; n < loraCount; n++) {
  const file = path.join(loraDir, `random-r${rank}-${n}.safetensors`);
  const tensors = [];
  let seed = 1000 * (n + 1);
  for (const [prefix, t] of unet.lowRankTargets) {
    const base = `lora_unet_${prefix.replace(/\./g, "_")}`;
    const k = t.kernel;
    tensors.push({
      name: `${base}.lora_down.weight`,
      dtype: "F32" as const,
      shape: k === undefined ? [rank, t.inFeatures] : [rank, t.inFeatures, k, k],
      data: noise(rank * t.inFeatures * (k ?? 1) ** 2, seed++),
    });
    tensors.push({
      name: `${base}.lora_up.weight`,
      dtype: "F32" as const,
      shape: [t.outFeatures, rank],
      data: noise(rank * t.outFeatures, seed++),
    });
    tensors.push({ name: `${base}.alpha`, dtype: "F32" as const, shape: [], data: Float32Array.of(rank / 2) });
  }
  await writeSafetensors(file, tensors);
  files.push(file);
}

const sample = noiseTensor([2, 4, latent, latent], 1);
const context = noiseTensor([2, 77, crossDim], 2);
const zero = loraFeeds(unet.lowRankTargets, "unet", []);
// SDXL's added conditions: the pooled text embedding and six time ids per batch item.
const timeIdDim = unetConfig["addition_time_embed_dim"] as number | undefined;
const added =
  unetConfig["addition_embed_type"] === "text_time" && timeIdDim !== undefined
    ? {
        textEmbeds: noiseTensor(
          [2, (unetConfig["projection_class_embeddings_input_dim"] as number) - 6 * timeIdDim],
          3,
        ),
        timeIds: {
          data: Float32Array.from({ length: 12 }, (_, i) => [1024, 1024, 0, 0, 1024, 1024][i % 6] as number),
          shape: [2, 6],
        },
      }
    : undefined;
const step = (u: UNet, feeds: Feeds) => () => u.run(sample, 500, context, undefined, feeds, added);

// Switching: a file's first use reads and checks it; later uses find it loaded.
const loaded: LoadedLora[] = [];
for (const file of files) {
  let lora: LoadedLora | undefined;
  const read = await time(async () => {
    lora = await loadLora(file, model);
  });
  loaded.push(lora as LoadedLora);
  report.emit(
    { figure: "lora_first_load", unit: "s", seconds: round(read), file: path.basename(file) },
    `${pad(`first use of ${path.basename(file)}`, LABEL)} ${secs(read)} (read and checked)`,
  );
}
const switches: number[] = [];
for (let i = 0; i < Math.max(6, runs.runs * loraCount); i++) {
  const lora = loaded[i % loaded.length] as LoadedLora;
  switches.push(await time(async () => void loraFeeds(unet.lowRankTargets, "unet", [{ lora, scale: 0.8 }])));
}
switches.sort((a, b) => a - b);
const switchMedian = switches[Math.floor(switches.length / 2)] as number;
report.emit(
  { figure: "lora_switch", unit: "s", median: round(switchMedian), max: round(switches.at(-1) as number) },
  `${pad("switch to another loaded LoRA", LABEL)} ${secs(switchMedian)} median, ${secs(switches.at(-1) as number)} max (factor feeds built)`,
);

const feeds = loraFeeds(unet.lowRankTargets, "unet", [{ lora: loaded[0] as LoadedLora, scale: 0.8 }]);
report.emit(
  ...timedFigure("unet_step_lora_rank0", "step, LoRA inputs, none applied", await timeRuns(step(unet, zero), runs)),
);
report.emit(
  ...timedFigure("unet_step_lora", `step, LoRA inputs, one rank-${rank} LoRA`, await timeRuns(step(unet, feeds), runs)),
);
// Rotation: each step on the next LoRA, feeds built per step as a server switching per request would.
let turn = 0;
const rotation = await timeRuns(async () => {
  const lora = loaded[turn++ % loaded.length] as LoadedLora;
  await unet.run(
    sample,
    500,
    context,
    undefined,
    loraFeeds(unet.lowRankTargets, "unet", [{ lora, scale: 0.8 }]),
    added,
  );
}, runs);
report.emit(...timedFigure("unet_step_rotation", `step + switch, ${loraCount} LoRAs in turn`, rotation));
const rssLora = peakRssBytes();
report.emit(
  { figure: "peak_rss_lora", bytes: rssLora, weight_bytes: weights.dataBytes },
  `${pad("peak RSS with LoRAs in rotation", LABEL)} ${gib(rssLora)} (UNet fp32 weights ${gib(weights.dataBytes)})`,
);
await unet.session.release();

const plain = await UNet.load(weights.files, runtime);
report.emit(
  ...timedFigure("unet_step_plain", "step, plain UNet (no LoRA inputs)", await timeRuns(step(plain, {}), runs)),
);
await plain.session.release();
