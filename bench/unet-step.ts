/**
 * bench/unet-step: full-size Stable Diffusion networks with random weights, built from the
 * published configs in presets/, timed on onnxruntime against this machine's own fp32
 * MatMul rate. Compute does not depend on the weights' values, so these are the figures a
 * real checkpoint gives.
 *
 *   npx tsx bench/unet-step.ts [--model sd-1.5|sd-2.1|sd-2.1-base|sd-turbo|sdxl|sdxl-refiner|sdxl-turbo|all] [--runs 3]
 *     [--warmup 1] [--threads N] [--json] [--cache DIR] [--seed 0] [--parts text,unet,vae]
 *     [--matmul-runs 5] [--optimized-cache on|off|DIR] [--provider cpu|cuda]
 *
 * With `--model all` (the default: SD 1.5 at 512² and SD 2.1 at 768²) each model runs in its
 * own process, so its peak RSS is its own. SDXL presets time each of their text encoders and
 * feed the UNet its added conditions (text_embeds, time_ids). See bench/README.md for what is
 * printed.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type AddedConditions, type TensorF32, TextEncoder, UNet, VaeDecoder } from "../src/engine/networks.js";
import type { ExecutionProvider } from "../src/engine/runtime.js";
import type { ComponentName } from "../src/engine/weights/model-folder.js";
import { type RandomComponent, writeRandomComponent } from "../src/engine/weights/random-weights.js";
import { intOption as int, optimizedCacheOption, printUsageAndExit, runChildren } from "./lib/cli.js";
import { textEncoderFlops, unetFlops, vaeDecodeFlops } from "./lib/flops.js";
import { noise, PRESETS, readPresetConfig } from "./lib/inputs.js";
import { gpuInfo, type MatmulPeak, machineInfo, measureMatmulPeak } from "./lib/machine.js";
import {
  gib,
  gpuFigure,
  LABEL,
  machineFigure,
  matmulPeakFigure,
  pad,
  peakRssFigure,
  Report,
  round,
  secs,
  timedFigure,
} from "./lib/report.js";
import { time, timeRuns } from "./lib/timing.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ALL_MODELS = ["sd-1.5", "sd-2.1"];
const KNOWN_MODELS = ["sd-1.5", "sd-2.1", "sd-2.1-base", "sd-turbo", "sdxl", "sdxl-refiner", "sdxl-turbo"];
const PARTS = ["text", "unet", "vae"] as const;
type Part = (typeof PARTS)[number];
/** Classifier-free guidance runs the UNet on the unconditional and conditional halves together. */
const UNET_BATCH = 2;
const TOKENS = 77;

interface Options {
  model: string;
  runs: number;
  warmup: number;
  threads: number;
  json: boolean;
  cache: string;
  seed: number;
  parts: Part[];
  matmulRuns: number;
  optimizedCache: string | false | undefined;
  provider: ExecutionProvider;
  child: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: "all" },
      runs: { type: "string", default: "3" },
      warmup: { type: "string", default: "1" },
      threads: { type: "string", default: "0" },
      json: { type: "boolean", default: false },
      cache: { type: "string", default: path.join(REPO_ROOT, ".cache", "bench") },
      seed: { type: "string", default: "0" },
      parts: { type: "string", default: PARTS.join(",") },
      "matmul-runs": { type: "string", default: "5" },
      "optimized-cache": { type: "string", default: "on" },
      provider: { type: "string", default: "cpu" },
      child: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) printUsageAndExit(import.meta.url);
  if (values.model !== "all" && !KNOWN_MODELS.includes(values.model)) {
    throw new Error(`--model must be one of ${[...KNOWN_MODELS, "all"].join(", ")}, got ${values.model}`);
  }
  if (values.provider !== "cpu" && values.provider !== "cuda") {
    throw new Error(`--provider takes cpu or cuda, got ${values.provider}`);
  }
  const parts = values.parts.split(",").map((p) => p.trim());
  for (const p of parts) {
    if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--parts takes ${PARTS.join(",")}, got ${p}`);
  }
  return {
    model: values.model,
    runs: int("runs", values.runs, 1),
    warmup: int("warmup", values.warmup, 0),
    threads: int("threads", values.threads, 0),
    json: values.json,
    cache: path.resolve(values.cache),
    seed: int("seed", values.seed, 0),
    parts: parts as Part[],
    matmulRuns: int("matmul-runs", values["matmul-runs"], 1),
    optimizedCache: optimizedCacheOption(values["optimized-cache"]),
    provider: values.provider as ExecutionProvider,
    child: values.child,
  };
}

// ---------------------------------------------------------------- one model

async function benchModel(model: string, opts: Options, report: Report): Promise<void> {
  // SDXL has a second text encoder; its refiner only that one.
  const encoders = (["text_encoder", "text_encoder_2"] as const).filter((c) =>
    existsSync(path.join(PRESETS, model, c, "config.json")),
  );
  const configs: Partial<Record<ComponentName, Record<string, unknown>>> = {
    unet: readPresetConfig(model, "unet"),
    vae: readPresetConfig(model, "vae"),
  };
  for (const c of encoders) configs[c] = readPresetConfig(model, c);
  const unetConfig = configs.unet as Record<string, unknown>;
  const vaeConfig = configs.vae as Record<string, unknown>;
  const latent = unetConfig["sample_size"] as number;
  const vaeBlocks = (vaeConfig["block_out_channels"] as number[]).length;
  const pixels = latent * 2 ** (vaeBlocks - 1);
  const crossDim = encoders.reduce((a, c) => a + ((configs[c] as Record<string, unknown>)["hidden_size"] as number), 0);
  const sessionLog: string[] = [];
  const runtime = {
    threads: opts.threads,
    provider: opts.provider,
    optimizedCache: opts.optimizedCache,
    log: (l: string) => sessionLog.push(l),
  };
  const want = (p: Part) => opts.parts.includes(p);
  const needed: ComponentName[] = [];
  if (want("text")) needed.push(...encoders);
  if (want("unet")) needed.push("unet");
  if (want("vae")) needed.push("vae");

  report.heading(
    `${model}: ${pixels}×${pixels} (latents ${latent}×${latent}), random weights (seed ${opts.seed}, fp32), ` +
      `${opts.provider.toUpperCase()} execution provider`,
  );

  // Random weights: written once into the cache, reused while config and seed stay the same.
  const written = new Map<ComponentName, RandomComponent>();
  for (const component of needed) {
    const dir = path.join(opts.cache, model, component);
    let result: RandomComponent | undefined;
    const seconds = await time(async () => {
      result = await writeRandomComponent(dir, component, configs[component] as Record<string, unknown>, {
        seed: opts.seed,
      });
    });
    const w = result as RandomComponent;
    written.set(component, w);
    report.emit(
      {
        figure: "random_weights",
        component,
        parameters: w.parameters,
        bytes: w.dataBytes,
        reused: w.reused,
        seconds: round(seconds),
      },
      `${pad(`weights ${component}`, LABEL)} ${(w.parameters / 1e6).toFixed(1)} M parameters, ${gib(w.dataBytes)}, ` +
        `${w.reused ? "reused from" : "written to"} ${path.relative(process.cwd(), dir) || "."} in ${secs(seconds)}`,
    );
  }
  const weightBytes = [...written.values()].reduce((a, w) => a + w.dataBytes, 0);

  // The MatMul peak is a CPU yardstick; a GPU's would need device-resident operands.
  let peak: MatmulPeak | undefined;
  if (opts.provider === "cpu") {
    peak = await measureMatmulPeak({ threads: opts.threads, runs: opts.matmulRuns });
    report.emit(...matmulPeakFigure(peak));
  } else {
    report.emit(...gpuFigure(gpuInfo()));
    report.note(`${pad("", LABEL)} (no MatMul peak or FLOP rates: the peak is measured on the CPU)`);
  }

  // Sessions: all three stay loaded together, as in a pipeline, so peak RSS is a pipeline's.
  const load = async <T>(component: ComponentName, fn: () => Promise<T>): Promise<T> => {
    let value: T | undefined;
    const seconds = await time(async () => {
      value = await fn();
    });
    const rss = process.memoryUsage().rss;
    // The engine's line for this session says whether its optimised model was saved or reused.
    const line = sessionLog.splice(0).join("; ");
    const optimized = /optimised model from/.test(line) ? "reused" : /optimised model/.test(line) ? "saved" : "none";
    report.emit(
      { figure: "session_create", component, unit: "s", seconds: round(seconds), rss_after_bytes: rss, optimized },
      `${pad(`session create ${component}`, LABEL)} ${pad(secs(seconds), 9)} (RSS after: ${gib(rss)}; ` +
        `optimised model ${optimized === "none" ? "not cached" : optimized})`,
    );
    return value as T;
  };
  const files = (c: ComponentName) => (written.get(c) as RandomComponent).files;
  const texts: { component: ComponentName; encoder: TextEncoder }[] = [];
  if (want("text")) {
    for (const c of encoders)
      texts.push({ component: c, encoder: await load(c, () => TextEncoder.load(files(c), runtime)) });
  }
  const unet = want("unet") ? await load("unet", () => UNet.load(files("unet"), runtime)) : undefined;
  const vae = want("vae") ? await load("vae", () => VaeDecoder.load(files("vae"), runtime)) : undefined;
  const runs = { warmup: opts.warmup, runs: opts.runs };

  for (const { component, encoder: text } of texts) {
    const config = configs[component] as Record<string, unknown>;
    const vocab = config["vocab_size"] as number;
    const ids = [0, 1].map((b) => Array.from({ length: TOKENS }, (_, i) => (i * 7919 + b * 104729 + 1) % vocab));
    const t = await timeRuns(() => text.encode(ids), runs);
    const flops = textEncoderFlops(config, { batch: 2, sequence: TOKENS });
    report.emit(
      ...timedFigure(component, `${component.replace(/_/g, " ")} (batch 2, ${TOKENS} tokens)`, t, {
        flops,
        peak,
        fields: {
          batch: 2,
          tokens: TOKENS,
        },
      }),
    );
  }

  if (unet) {
    const shape = [UNET_BATCH, unet.config?.inChannels ?? 4, latent, latent];
    const sample: TensorF32 = {
      data: noise(
        shape.reduce((a, d) => a * d, 1),
        1,
      ),
      shape,
    };
    const context: TensorF32 = {
      data: noise(UNET_BATCH * TOKENS * crossDim, 2),
      shape: [UNET_BATCH, TOKENS, crossDim],
    };
    // SDXL's added conditions: the pooled embedding and the time ids, sized from the config.
    const textTime = unet.config?.textTime ?? null;
    let added: AddedConditions | undefined;
    if (textTime) {
      const pooled = (configs.text_encoder_2?.["projection_dim"] as number | undefined) ?? 1280;
      const ids = (textTime.inputDim - pooled) / textTime.timeIdDim;
      added = {
        textEmbeds: { data: noise(UNET_BATCH * pooled, 4), shape: [UNET_BATCH, pooled] },
        timeIds: { data: new Float32Array(UNET_BATCH * ids).fill(pixels), shape: [UNET_BATCH, ids] },
      };
    }
    const t = await timeRuns(() => unet.run(sample, 500, context, undefined, {}, added), runs);
    const flops = unetFlops(unetConfig, { batch: UNET_BATCH, height: latent, width: latent, sequence: TOKENS });
    report.emit(
      ...timedFigure("unet_call", `UNet call (${pixels}², batch ${UNET_BATCH})`, t, {
        flops,
        peak,
        fields: {
          batch: UNET_BATCH,
          height: pixels,
          width: pixels,
        },
      }),
    );
  }

  if (vae) {
    const shape = [1, vae.config.latentChannels, latent, latent];
    const latents: TensorF32 = {
      data: noise(
        shape.reduce((a, d) => a * d, 1),
        3,
      ),
      shape,
    };
    const t = await timeRuns(() => vae.decode(latents), runs);
    const flops = vaeDecodeFlops(vaeConfig, { batch: 1, height: latent, width: latent });
    report.emit(
      ...timedFigure("vae_decode", `VAE decode (${pixels}², 1 image)`, t, {
        flops,
        peak,
        fields: {
          batch: 1,
          height: pixels,
          width: pixels,
        },
      }),
    );
  }

  await Promise.all([
    ...texts.map((t) => t.encoder.session.release()),
    unet?.session.release(),
    vae?.session.release(),
  ]);
  report.emit(...peakRssFigure(weightBytes));
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const opts = parseOptions();
  const models = opts.model === "all" ? ALL_MODELS : [opts.model];
  if (!opts.child) {
    const report = new Report("unet-step", opts.json);
    if (!opts.json) console.log(`bench/unet-step ${new Date().toISOString()}`);
    report.emit(...machineFigure(machineInfo(), opts.threads));
  }
  if (models.length === 1) {
    await benchModel(models[0] as string, opts, new Report("unet-step", opts.json, models[0]));
    return;
  }
  // One process per model: peak RSS is per model, and one model's memory does not weigh on the next.
  const failed = runChildren(
    "unet-step",
    import.meta.url,
    models.map((model) => ({ name: model, args: ["--model", model] })),
  );
  if (failed) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
