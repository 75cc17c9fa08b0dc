/**
 * Opens a single-file checkpoint in the original LDM / CompVis layout (what Stability AI and
 * AUTOMATIC1111 publish, `model.safetensors` with `model.diffusion_model.*`,
 * `first_stage_model.*`, `cond_stage_model.*` keys; SDXL's `conditioner.embedders.N.*` text
 * encoders) as if it were a diffusers folder: each network gets a map from the diffusers tensor
 * names its graph asks for to byte ranges inside the one file. Nothing is converted or copied; a
 * fused OpenCLIP `in_proj` tensor becomes three byte ranges (q, k, v are consecutive rows), and
 * OpenCLIP's `text_projection` (stored as the matrix the pooled state multiplies, the transpose
 * of a Linear weight) is bound transposed.
 *
 * Configs come from `--config` (a diffusers folder: its config.json files, scheduler and
 * tokenizer) or else from the published configs in `presets/`, with the sizes the file itself
 * shows (text layers, input channels) taken from its tensors' shapes.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ModelError } from "../errors.js";
import { readClipTextConfig } from "../graph/clip.js";
import { ConfigReader } from "../graph/config.js";
import { readUNetConfig } from "../graph/unet.js";
import { readVaeConfig } from "../graph/vae.js";
import { readJsonObject } from "../json.js";
import type { ComponentFiles, ComponentName, ModelFolder } from "./model-folder.js";
import { openComponentFolder, PICKLE_EXTENSIONS } from "./model-folder.js";
import { impliedTensorShapes } from "./random-weights.js";
import { readSafetensors, type TensorInfo } from "./safetensors.js";

/** SD 1.x, SD 2.x, SDXL base (CLIP ViT-L + OpenCLIP ViT-bigG) and the SDXL refiner (OpenCLIP only). */
export type CheckpointFamily = "sd1" | "sd2" | "sdxl" | "sdxl-refiner";

/** How `sdserve models list` and errors name a family. */
export const FAMILY_NAMES: Record<CheckpointFamily, string> = {
  sd1: "SD 1.x",
  sd2: "SD 2.x",
  sdxl: "SDXL",
  "sdxl-refiner": "SDXL refiner",
};
export const PREDICTION_TYPES = ["epsilon", "v_prediction", "sample"] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

export interface OpenSingleFileOptions {
  /** A diffusers folder whose config.json files, scheduler and tokenizer describe the checkpoint. */
  config?: string;
  /** Overrides the prediction type however it was decided. */
  predictionType?: PredictionType;
}

/** Where the published configs live: `presets/` at the package root (the same depth from src/ and dist/). */
export const PRESETS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../presets");
/** OpenAI's CLIP BPE (vocab.json, merges.txt), shared by SD 1.x and 2.x; the presets hold only its configs. */
const CLIP_BPE_DIR = path.join(PRESETS_DIR, "clip-bpe");

const UNET = "model.diffusion_model.";
const VAE = "first_stage_model.";
const CLIP = "cond_stage_model.transformer.";
const OPEN_CLIP = "cond_stage_model.model.";
/** SDXL base: CLIP ViT-L (transformers' layout) and OpenCLIP ViT-bigG; the refiner has only the latter, first. */
const XL_CLIP = "conditioner.embedders.0.transformer.";
const XL_OPEN_CLIP = "conditioner.embedders.1.model.";
const REFINER_OPEN_CLIP = "conditioner.embedders.0.model.";

/** True when a path names a single-file checkpoint (or a pickle, which is then refused by name). */
export function isCheckpointFile(p: string): boolean {
  const lower = p.toLowerCase();
  return lower.endsWith(".safetensors") || [".ckpt", ".pt", ".pth"].some((e) => lower.endsWith(e));
}

/**
 * Whether a `.safetensors` file is an SDXL checkpoint (base or refiner), from its header's key
 * names, read synchronously (for the model catalog, which decides a model's API schema before
 * anything loads). A file that cannot be read or parsed is not: loading it reports why.
 */
export function isSdxlCheckpointFile(file: string): boolean {
  if (!file.toLowerCase().endsWith(".safetensors")) return false;
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const len = Buffer.alloc(8);
    if (readSync(fd, len, 0, 8, 0) !== 8) return false;
    const size = len.readBigUInt64LE(0);
    if (size > 100_000_000n) return false;
    const header = Buffer.alloc(Number(size));
    if (readSync(fd, header, 0, header.length, 8) !== header.length) return false;
    const keys = Object.keys(JSON.parse(header.toString("utf8")) as object);
    return keys.some((k) => k.startsWith(UNET)) && keys.some((k) => k.startsWith("conditioner.embedders."));
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const PICKLE_HINT =
  "which sdserve does not read: loading a pickle can run arbitrary code hidden in the file. Get the " +
  "model's .safetensors download (model sites offer one for nearly every checkpoint), or convert once, " +
  "on a machine where you trust the file, with Python: safetensors.torch.save_file(torch.load(path)" +
  '["state_dict"], "model.safetensors")';

/** Refuses a checkpoint named as a pickle (.ckpt, .pt, .pth, .bin), before anything is read or downloaded. */
export function refusePickleName(file: string): void {
  const lower = file.toLowerCase();
  if (PICKLE_EXTENSIONS.some((e) => lower.endsWith(e))) {
    throw new ModelError(`is a PyTorch pickle checkpoint, ${PICKLE_HINT}`, { file });
  }
}

async function refusePickle(file: string): Promise<void> {
  refusePickleName(file);
  // A pickle renamed to .safetensors: torch.save writes a zip (PK\3\4) or a raw pickle (0x80 protocol byte).
  let head: Buffer;
  try {
    const fh = await open(file, "r");
    try {
      head = Buffer.alloc(4);
      const { bytesRead } = await fh.read(head, 0, 4, 0);
      head = head.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new ModelError(`cannot be read: ${(err as Error).message}`, { file });
  }
  const zip = head.length === 4 && head.readUInt32LE(0) === 0x04034b50;
  const rawPickle = head.length >= 2 && head[0] === 0x80 && (head[1] as number) >= 2 && (head[1] as number) <= 5;
  if (zip || rawPickle) throw new ModelError(`holds a PyTorch pickle, not safetensors, ${PICKLE_HINT}`, { file });
}

function hasPrefix(tensors: ReadonlyMap<string, TensorInfo>, prefix: string): boolean {
  for (const k of tensors.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

/** The family, told from the keys; anything else is refused with what the keys look like. */
export function detectFamily(file: string, tensors: ReadonlyMap<string, TensorInfo>): CheckpointFamily {
  const keys = [...tensors.keys()];
  if (!hasPrefix(tensors, UNET)) {
    const lora = keys.some((k) => k.startsWith("lora_") || k.includes(".lora_A.") || k.includes(".lora_down."));
    const sample = keys.slice(0, 3).join(", ");
    throw new ModelError(
      lora
        ? "is a LoRA, not a model checkpoint (load it with --lora on top of a model)"
        : `is not a Stable Diffusion checkpoint of a known family: it has no ${UNET}* keys (first keys: ${sample || "none"})`,
      { file },
    );
  }
  const sd = hasPrefix(tensors, "cond_stage_model.");
  if (hasPrefix(tensors, "conditioner.embedders.")) {
    if (sd) {
      throw new ModelError(
        "mixes the text encoders of two families (SD 1.x / 2.x cond_stage_model.* and SDXL conditioner.embedders.* keys): " +
          "not a checkpoint of one known family",
        { file },
      );
    }
    const base = hasPrefix(tensors, XL_OPEN_CLIP);
    const clipL = hasPrefix(tensors, XL_CLIP);
    if (base && clipL) return "sdxl";
    if (!base && !clipL && hasPrefix(tensors, REFINER_OPEN_CLIP)) return "sdxl-refiner";
    throw new ModelError(
      `is not an SDXL checkpoint of a known layout: SDXL base has ${XL_CLIP}* and ${XL_OPEN_CLIP}* keys, ` +
        `the refiner ${REFINER_OPEN_CLIP}* only (this file: ${base ? "" : "no "}${XL_OPEN_CLIP}*, ` +
        `${clipL ? "" : "no "}${XL_CLIP}*)`,
      { file },
    );
  }
  if (hasPrefix(tensors, CLIP)) return "sd1";
  if (hasPrefix(tensors, OPEN_CLIP)) return "sd2";
  throw new ModelError(
    `is not a Stable Diffusion checkpoint of a known family: it has UNet keys but no text encoder ` +
      `(${CLIP}* for SD 1.x, ${OPEN_CLIP}* for SD 2.x or conditioner.embedders.* for SDXL)`,
    { file },
  );
}

/**
 * The prediction type when no --config says it. SD 1.x is epsilon. For SD 2.x the weights
 * do not say: diffusers' from_single_file takes any SD 2.x file for the 768-px v-prediction
 * model (stabilityai/stable-diffusion-2-1), reading epsilon only from a pickle's
 * `global_step` 875000 (SD 2 base), which safetensors files do not carry. We do the same, and
 * first honour what a file may state: Stability's model-spec metadata
 * (`modelspec.prediction_type`) or the `v_pred` marker key some tools write. An SD 2.x
 * inpainting file (a 9-channel UNet input) is epsilon at 512 px: diffusers takes it for
 * stabilityai/stable-diffusion-2-inpainting, trained from the 512-px epsilon base.
 */
export function decidePredictionType(
  family: CheckpointFamily,
  tensors: ReadonlyMap<string, TensorInfo>,
  metadata: Readonly<Record<string, string>>,
): PredictionType {
  const spec = metadata["modelspec.prediction_type"]?.toLowerCase();
  if (spec === "v" || spec === "v_prediction") return "v_prediction";
  if (spec === "epsilon" || spec === "eps") return "epsilon";
  if (tensors.has("v_pred")) return "v_prediction";
  if (family === "sd2" && tensors.get(`${UNET}input_blocks.0.0.weight`)?.shape[1] === 9) return "epsilon";
  // SDXL base and refiner are epsilon models (v-prediction fine-tunes say so with the marks above).
  return family === "sd2" ? "v_prediction" : "epsilon";
}

/**
 * SDXL-layout checkpoints of the EDM formulation mark it with keys (as ComfyUI and diffusers
 * read them): Playground v2.5's `edm_mean` / `edm_std` (diffusers' playground-v2-5 type, with
 * an EDM scheduler and normalised latents) and EDM v-prediction models' `edm_vpred.sigma_max`
 * (CosXL). Run as an ordinary SDXL model they would give noise, so they are refused.
 */
function refuseEdm(file: string, tensors: ReadonlyMap<string, TensorInfo>): void {
  const key = ["edm_mean", "edm_std", "edm_vpred.sigma_max"].find((k) => tensors.has(k));
  if (key === undefined) return;
  throw new ModelError(
    `is an EDM-formulation model (its ${key} key: ${key.startsWith("edm_vpred") ? "EDM v-prediction, as CosXL" : "Playground v2.5"}), ` +
      "which sdserve's schedulers do not run",
    { file },
  );
}

/** The published configs a family's file is read with (SD 2.x: by its prediction type). */
function presetFor(family: CheckpointFamily, prediction: PredictionType): string {
  if (family === "sd1") return "sd-1.5";
  if (family === "sdxl") return "sdxl";
  if (family === "sdxl-refiner") return "sdxl-refiner";
  return prediction === "v_prediction" ? "sd-2.1" : "sd-2.1-base";
}

/** Where each text encoder's tensors are in the file, and how they are laid out. */
interface TextEncoderSource {
  component: "text_encoder" | "text_encoder_2";
  tokenizer: "tokenizer" | "tokenizer_2";
  prefix: string;
  openClip: boolean;
}

function textEncoderSources(family: CheckpointFamily): TextEncoderSource[] {
  const te = (component: TextEncoderSource["component"], prefix: string, openClip: boolean): TextEncoderSource => ({
    component,
    tokenizer: component === "text_encoder" ? "tokenizer" : "tokenizer_2",
    prefix,
    openClip,
  });
  switch (family) {
    case "sd1":
      return [te("text_encoder", CLIP, false)];
    case "sd2":
      return [te("text_encoder", OPEN_CLIP, true)];
    case "sdxl":
      return [te("text_encoder", XL_CLIP, false), te("text_encoder_2", XL_OPEN_CLIP, true)];
    case "sdxl-refiner":
      return [te("text_encoder_2", REFINER_OPEN_CLIP, true)];
  }
}

interface ConfigSource {
  dir: string;
  fromPreset: boolean;
  tokenizerVocabDir?: string;
}

export async function openSingleFile(file: string, opts: OpenSingleFileOptions = {}): Promise<ModelFolder> {
  await refusePickle(file);
  const st = await readSafetensors(file);
  const family = detectFamily(file, st.tensors);
  refuseEdm(file, st.tensors);
  const encoders = textEncoderSources(family);

  let source: ConfigSource;
  if (opts.config) {
    const dir = path.resolve(opts.config);
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
      throw new ModelError("--config must be a diffusers model folder (with unet/, vae/, text_encoder/ configs)", {
        file: dir,
      });
    }
    source = { dir, fromPreset: false };
  } else {
    const prediction = opts.predictionType ?? decidePredictionType(family, st.tensors, st.metadata);
    const dir = path.join(PRESETS_DIR, presetFor(family, prediction));
    source = { dir, fromPreset: true, tokenizerVocabDir: CLIP_BPE_DIR };
  }

  const configPath = (sub: string) => path.join(source.dir, sub, "config.json");
  const modelIndex = await readJsonObject(path.join(source.dir, "model_index.json")).catch((err) => {
    if (source.fromPreset) throw err;
    return {} as Record<string, unknown>;
  });
  const schedulerConfigPath = path.join(source.dir, "scheduler", "scheduler_config.json");
  const schedulerConfig = await readJsonObject(schedulerConfigPath);
  if (source.fromPreset) {
    schedulerConfig["prediction_type"] = opts.predictionType ?? decidePredictionType(family, st.tensors, st.metadata);
  } else if (opts.predictionType) {
    schedulerConfig["prediction_type"] = opts.predictionType;
  }

  const unetConfig = await readJsonObject(configPath("unet"));
  const vaeConfig = await readJsonObject(configPath("vae"));
  const textConfigs: Record<string, unknown>[] = [];
  for (const e of encoders) textConfigs.push(await readJsonObject(configPath(e.component)));
  if (source.fromPreset) fitPresetToFile(file, family, st.tensors, unetConfig, encoders, textConfigs);

  const unetTensors = mapUNet(file, st.tensors, new ConfigReader(configPath("unet"), unetConfig), source);
  const vaeTensors = mapVae(st.tensors, new ConfigReader(configPath("vae"), vaeConfig));

  const dtypes = new Set([...st.tensors.values()].map((t) => t.dtype));
  const variant = dtypes.has("F16") || dtypes.has("BF16") ? "fp16" : "fp32";
  const component = (
    name: ComponentName,
    config: Record<string, unknown>,
    tensors: Map<string, TensorInfo>,
  ): ComponentFiles => ({
    name,
    dir: path.dirname(file),
    configPath: configPath(name),
    config,
    weightFiles: [file],
    tensors,
    variant,
  });
  const textEncoders = encoders.map((e, i) => {
    const config = textConfigs[i] as Record<string, unknown>;
    const reader = new ConfigReader(configPath(e.component), config);
    const tensors = e.openClip ? mapOpenClip(file, st.tensors, reader, e.prefix) : mapClip(st.tensors, e.prefix);
    return component(e.component, config, tensors);
  });
  const unet = component("unet", unetConfig, unetTensors);
  const vae = component("vae", vaeConfig, vaeTensors);
  if (source.fromPreset) for (const c of [unet, vae, ...textEncoders]) checkPresetSizes(file, family, c);
  const tokenizerDirs = encoders.map((e) => path.join(source.dir, e.tokenizer));
  return {
    dir: source.dir,
    modelIndex,
    textEncoder: textEncoders[0] as ComponentFiles,
    textEncoder2: textEncoders[1],
    unet,
    vae,
    tokenizerDir: tokenizerDirs[0] as string,
    tokenizer2Dir: tokenizerDirs[1],
    tokenizerVocabDir: source.tokenizerVocabDir,
    schedulerConfig,
    schedulerConfigPath,
    variant,
    checkpoint: { file, family },
  };
}

/** The published model whose preset a family's file is read with. */
const PUBLISHED: Record<CheckpointFamily, string> = {
  sd1: "SD 1.5",
  sd2: "SD 2.1",
  sdxl: "SDXL base 1.0",
  "sdxl-refiner": "SDXL refiner 1.0",
};

/**
 * On a preset, every tensor the component's graph binds must be in the file with the shape the
 * published config implies (a checkpoint of other sizes, such as a distilled SDXL, is told to
 * bring --config here rather than failing in a graph). The VAE's encoder is left to the first
 * image input that needs it, as for a folder.
 */
function checkPresetSizes(file: string, family: CheckpointFamily, c: ComponentFiles): void {
  const wrong: string[] = [];
  for (const [name, shape] of impliedTensorShapes(c.name, c.config, c.configPath)) {
    if (c.name === "vae" && (name.startsWith("encoder.") || name.startsWith("quant_conv."))) continue;
    const got = c.tensors.get(name);
    if (!got) wrong.push(`${name} is missing`);
    else if (got.shape.join(",") !== shape.join(",")) {
      wrong.push(`${name} has shape [${got.shape.join(", ")}], the config implies [${shape.join(", ")}]`);
    }
  }
  if (wrong.length > 0) {
    throw new ModelError(
      `does not have the published ${PUBLISHED[family]} sizes: ${c.name} ${wrong.slice(0, 2).join("; ")}` +
        `${wrong.length > 2 ? ` (and ${wrong.length - 2} more)` : ""}${CONFIG_HINT}`,
      { file },
    );
  }
}

const CONFIG_HINT =
  "; for a checkpoint of non-standard sizes pass --config <a diffusers folder of the same architecture>";

/**
 * The presets describe the published models; a fine-tune keeps their sizes, but a few are
 * read from the file: the text encoders' depths (SD 2.x uses the penultimate of OpenCLIP's
 * layers, so one fewer than the file holds; SDXL takes the penultimate state from a graph of
 * every layer) and the UNet's input channels (inpainting checkpoints have 9). Sizes that differ
 * beyond these are an error that asks for --config.
 */
function fitPresetToFile(
  file: string,
  family: CheckpointFamily,
  tensors: ReadonlyMap<string, TensorInfo>,
  unet: Record<string, unknown>,
  encoders: readonly TextEncoderSource[],
  texts: readonly Record<string, unknown>[],
): void {
  const published = PUBLISHED[family];
  const shape = (k: string) => tensors.get(k)?.shape;
  const convIn = shape(`${UNET}input_blocks.0.0.weight`);
  const blockOut = unet["block_out_channels"] as number[];
  if (convIn?.length !== 4 || convIn[0] !== blockOut[0]) {
    throw new ModelError(
      `UNet input_blocks.0.0.weight has shape [${convIn?.join(", ") ?? "missing"}], but the published ` +
        `${published} config has ${blockOut[0]} channels${CONFIG_HINT}`,
      { file },
    );
  }
  // The presets' VAEs have 4 latent channels: a UNet takes them (4) or an inpainting input (9).
  if (convIn[1] !== 4 && convIn[1] !== 9) {
    throw new ModelError(
      `UNet input_blocks.0.0.weight takes ${convIn[1]} input channels: sdserve runs UNets of 4 (text-to-image) ` +
        "or 9 (inpainting), not others such as SD 2's depth-to-image model (5)",
      { file },
    );
  }
  unet["in_channels"] = convIn[1];
  const label = shape(`${UNET}label_emb.0.0.weight`);
  const addedIn = unet["projection_class_embeddings_input_dim"];
  if (typeof addedIn === "number" && (label?.length !== 2 || label[1] !== addedIn)) {
    throw new ModelError(
      `UNet label_emb.0.0.weight (the added conditions) has shape [${label?.join(", ") ?? "missing"}], but the ` +
        `published ${published} config takes ${addedIn} inputs${CONFIG_HINT}`,
      { file },
    );
  }
  const countLayers = (re: RegExp) => {
    let n = 0;
    for (const k of tensors.keys()) {
      const m = re.exec(k);
      if (m) n = Math.max(n, Number(m[1]) + 1);
    }
    return n;
  };
  encoders.forEach((e, i) => {
    const text = texts[i] as Record<string, unknown>;
    const tokenEmb = e.openClip
      ? shape(`${e.prefix}token_embedding.weight`)
      : (shape(`${e.prefix}text_model.embeddings.token_embedding.weight`) ??
        shape(`${e.prefix}embeddings.token_embedding.weight`));
    if (!tokenEmb || tokenEmb[1] !== text["hidden_size"]) {
      throw new ModelError(
        `the text encoder's token embedding (${e.prefix}*) has shape [${tokenEmb?.join(", ") ?? "missing"}], but ` +
          `the published ${published} config has hidden_size ${text["hidden_size"]}${CONFIG_HINT}`,
        { file },
      );
    }
    const escaped = e.prefix.replace(/\./g, "\\.");
    const layers = e.openClip
      ? countLayers(new RegExp(`^${escaped}transformer\\.resblocks\\.(\\d+)\\.`)) - (family === "sd2" ? 1 : 0)
      : countLayers(new RegExp(`^${escaped}(?:text_model\\.)?encoder\\.layers\\.(\\d+)\\.`));
    if (layers < 1) throw new ModelError(`the text encoder (${e.prefix}*) has no layers`, { file });
    text["num_hidden_layers"] = layers;
  });
}

export const UNET_RESNET: Record<string, string> = {
  "in_layers.0": "norm1",
  "in_layers.2": "conv1",
  "emb_layers.1": "time_emb_proj",
  "out_layers.0": "norm2",
  "out_layers.3": "conv2",
  skip_connection: "conv_shortcut",
};

function renameResnet(rest: string, table: Record<string, string>): string | undefined {
  for (const [from, to] of Object.entries(table)) {
    if (rest.startsWith(`${from}.`)) return `${to}${rest.slice(from.length)}`;
  }
  return undefined;
}

/** A tensor under another name (and, for 1×1 convs stored as linears or back, another shape). */
function alias(t: TensorInfo, name: string, shape = t.shape): TensorInfo {
  return { ...t, name, shape: [...shape] };
}

/**
 * LDM UNet module names → diffusers', from the config's block structure: input_blocks count
 * each down block's resnets (with their attentions at `.1`) then its downsampler; output_blocks
 * count each up block's resnets, the upsampler sitting after the last one (`.2` behind an
 * attention, else `.1`).
 */
export function ldmUNetModules(c: ReturnType<typeof readUNetConfig>): Map<string, { to: string; resnet: boolean }> {
  const modules = new Map<string, { to: string; resnet: boolean }>([
    ["time_embed.0", { to: "time_embedding.linear_1", resnet: false }],
    ["time_embed.2", { to: "time_embedding.linear_2", resnet: false }],
    // SDXL's added conditions (pooled text embedding and time ids): ADM's label_emb.
    ["label_emb.0.0", { to: "add_embedding.linear_1", resnet: false }],
    ["label_emb.0.2", { to: "add_embedding.linear_2", resnet: false }],
    ["input_blocks.0.0", { to: "conv_in", resnet: false }],
    ["out.0", { to: "conv_norm_out", resnet: false }],
    ["out.2", { to: "conv_out", resnet: false }],
    ["middle_block.0", { to: "mid_block.resnets.0", resnet: true }],
    ["middle_block.1", { to: "mid_block.attentions.0", resnet: false }],
    ["middle_block.2", { to: "mid_block.resnets.1", resnet: true }],
  ]);
  const n = c.blockOut.length;
  let k = 1;
  c.downTypes.forEach((type, i) => {
    for (let j = 0; j < (c.layersPerBlock[i] as number); j++, k++) {
      modules.set(`input_blocks.${k}.0`, { to: `down_blocks.${i}.resnets.${j}`, resnet: true });
      if (type === "CrossAttnDownBlock2D") {
        modules.set(`input_blocks.${k}.1`, { to: `down_blocks.${i}.attentions.${j}`, resnet: false });
      }
    }
    if (i < n - 1)
      modules.set(`input_blocks.${k++}.0.op`, { to: `down_blocks.${i}.downsamplers.0.conv`, resnet: false });
  });
  const revLayers = [...c.layersPerBlock].reverse();
  k = 0;
  c.upTypes.forEach((type, i) => {
    const cross = type === "CrossAttnUpBlock2D";
    const last = revLayers[i] as number;
    for (let j = 0; j <= last; j++, k++) {
      modules.set(`output_blocks.${k}.0`, { to: `up_blocks.${i}.resnets.${j}`, resnet: true });
      if (cross) modules.set(`output_blocks.${k}.1`, { to: `up_blocks.${i}.attentions.${j}`, resnet: false });
      if (j === last && i < n - 1) {
        modules.set(`output_blocks.${k}.${cross ? 2 : 1}.conv`, {
          to: `up_blocks.${i}.upsamplers.0.conv`,
          resnet: false,
        });
      }
    }
  });
  return modules;
}

function mapUNet(
  file: string,
  tensors: ReadonlyMap<string, TensorInfo>,
  cfg: ConfigReader,
  source: ConfigSource,
): Map<string, TensorInfo> {
  const c = readUNetConfig(cfg);
  const modules = ldmUNetModules(c);
  const out = new Map<string, TensorInfo>();
  const unexpected: string[] = [];
  for (const [key, t] of tensors) {
    if (!key.startsWith(UNET)) continue;
    const rel = key.slice(UNET.length);
    const parts = rel.split(".");
    let mapped: string | undefined;
    for (let len = Math.min(4, parts.length - 1); len >= 2 && mapped === undefined; len--) {
      const m = modules.get(parts.slice(0, len).join("."));
      if (!m) continue;
      const rest = parts.slice(len).join(".");
      mapped = m.resnet ? (renameResnet(rest, UNET_RESNET) ?? undefined) : `${m.to}.${rest}`;
      if (m.resnet && mapped !== undefined) mapped = `${m.to}.${mapped}`;
    }
    if (mapped === undefined) {
      unexpected.push(key);
      continue;
    }
    let shape = t.shape;
    // SD 2.x stores proj_in/proj_out as linears, SD 1.x as 1×1 convs; the config says which the graph builds.
    if (/\.proj_(in|out)\.weight$/.test(mapped) && mapped.includes("attentions.")) {
      if (c.linearProjection && shape.length === 4) shape = shape.slice(0, 2);
      else if (!c.linearProjection && shape.length === 2) shape = [...shape, 1, 1];
    }
    out.set(mapped, alias(t, mapped, shape));
  }
  if (unexpected.length > 0) {
    throw new ModelError(
      `has UNet tensors the ${source.fromPreset ? "published" : "given"} config does not place ` +
        `(${unexpected.slice(0, 3).join(", ")}${unexpected.length > 3 ? `, and ${unexpected.length - 3} more` : ""})` +
        (source.fromPreset ? CONFIG_HINT : ""),
      { file },
    );
  }
  return out;
}

const VAE_RESNET: Record<string, string> = {
  norm1: "norm1",
  conv1: "conv1",
  norm2: "norm2",
  conv2: "conv2",
  nin_shortcut: "conv_shortcut",
};
const VAE_ATTN: Record<string, string> = {
  norm: "group_norm",
  q: "to_q",
  k: "to_k",
  v: "to_v",
  proj_out: "to_out.0",
};

type Rule = readonly [RegExp, (m: RegExpExecArray) => string | undefined];

/** The first rule whose pattern matches names the tensor; undefined: not a tensor we use. */
function applyRules(rel: string, rules: readonly Rule[]): string | undefined {
  for (const [re, to] of rules) {
    const m = re.exec(rel);
    if (m) return to(m);
  }
  return undefined;
}

function vaeRules(n: number): Rule[] {
  const resnet = (r: string | undefined, base: string, rest: string | undefined) =>
    r === undefined ? undefined : `${base}.${r}.${rest}`;
  // LDM numbers the decoder's up blocks from the lowest resolution; diffusers from the top.
  const up = (k: string | undefined) => n - 1 - Number(k);
  return [
    [/^(encoder|decoder)\.(conv_in|conv_out)\.(.+)$/, (m) => m[0]],
    [/^(post_)?quant_conv\.(.+)$/, (m) => m[0]],
    [/^(encoder|decoder)\.norm_out\.(.+)$/, (m) => `${m[1]}.conv_norm_out.${m[2]}`],
    [
      /^(encoder|decoder)\.mid\.block_([12])\.(\w+)\.(.+)$/,
      (m) => resnet(VAE_RESNET[m[3] as string], `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}`, m[4]),
    ],
    [
      /^(encoder|decoder)\.mid\.attn_1\.(\w+)\.(weight|bias)$/,
      (m) => resnet(VAE_ATTN[m[2] as string], `${m[1]}.mid_block.attentions.0`, m[3]),
    ],
    [
      /^encoder\.down\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)$/,
      (m) => resnet(VAE_RESNET[m[3] as string], `encoder.down_blocks.${m[1]}.resnets.${m[2]}`, m[4]),
    ],
    [
      /^encoder\.down\.(\d+)\.downsample\.conv\.(.+)$/,
      (m) => `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`,
    ],
    [
      /^decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)$/,
      (m) => resnet(VAE_RESNET[m[3] as string], `decoder.up_blocks.${up(m[1])}.resnets.${m[2]}`, m[4]),
    ],
    [/^decoder\.up\.(\d+)\.upsample\.conv\.(.+)$/, (m) => `decoder.up_blocks.${up(m[1])}.upsamplers.0.conv.${m[2]}`],
  ];
}

function mapVae(
  tensors: ReadonlyMap<string, TensorInfo>,
  cfg: ConfigReader,
  prefix: string = VAE,
): Map<string, TensorInfo> {
  const rules = vaeRules(readVaeConfig(cfg).blockOut.length);
  const out = new Map<string, TensorInfo>();
  for (const [key, t] of tensors) {
    if (!key.startsWith(prefix)) continue;
    const name = applyRules(key.slice(prefix.length), rules);
    if (name === undefined) continue;
    // The LDM attention projections are 1×1 convs; diffusers' (and our graph's) are linears.
    const squeeze = /\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name) && t.shape.length === 4;
    out.set(name, alias(t, name, squeeze ? t.shape.slice(0, 2) : t.shape));
  }
  return out;
}

/** SD 1.x and SDXL carry transformers' CLIPTextModel as is (older files without the `text_model.` level). */
function mapClip(tensors: ReadonlyMap<string, TensorInfo>, prefix: string): Map<string, TensorInfo> {
  const out = new Map<string, TensorInfo>();
  for (const [key, t] of tensors) {
    if (!key.startsWith(prefix) || key.endsWith("position_ids")) continue;
    let name = key.slice(prefix.length);
    if (!name.startsWith("text_model.")) name = `text_model.${name}`;
    out.set(name, alias(t, name));
  }
  return out;
}

const OPEN_CLIP_BLOCK: Record<string, string> = {
  ln_1: "layer_norm1",
  ln_2: "layer_norm2",
  "attn.out_proj": "self_attn.out_proj",
  "mlp.c_fc": "mlp.fc1",
  "mlp.c_proj": "mlp.fc2",
};

/**
 * OpenCLIP's text transformer under CLIPTextModel's names. `in_proj_weight` [3h, h] is
 * cat(q, k, v) along rows, so each projection is a contiguous third of its bytes. Layers past
 * the config's depth (SD 2.x skips OpenCLIP's last) and `logit_scale` are not used;
 * `text_projection` [h, p] (pooled · P) is CLIPTextModelWithProjection's Linear weight [p, h]
 * transposed, used when the config has a projection (SDXL's pooled text_embeds).
 */
function mapOpenClip(
  file: string,
  tensors: ReadonlyMap<string, TensorInfo>,
  cfg: ConfigReader,
  prefix: string,
): Map<string, TensorInfo> {
  const { layers, projectionDim } = readClipTextConfig(cfg);
  const out = new Map<string, TensorInfo>();
  const projection = tensors.get(`${prefix}text_projection`);
  if (projectionDim !== null && projection) {
    if (projection.shape.length !== 2) {
      throw new ModelError(`has shape [${projection.shape.join(", ")}]: not a [width, projection] matrix`, {
        file,
        field: projection.name,
      });
    }
    const name = "text_projection.weight";
    out.set(name, { ...alias(projection, name, [...projection.shape].reverse()), transposed: true });
  }
  const rules: Rule[] = [
    [/^token_embedding\.weight$/, () => "text_model.embeddings.token_embedding.weight"],
    [/^positional_embedding$/, () => "text_model.embeddings.position_embedding.weight"],
    [/^ln_final\.(weight|bias)$/, (m) => `text_model.final_layer_norm.${m[1]}`],
    [
      /^transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$/,
      (m) => {
        const to = OPEN_CLIP_BLOCK[m[2] as string];
        return Number(m[1]) < layers && to ? `text_model.encoder.layers.${m[1]}.${to}.${m[3]}` : undefined;
      },
    ],
  ];
  const inProj = /^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$/;
  for (const [key, t] of tensors) {
    if (!key.startsWith(prefix)) continue;
    const rel = key.slice(prefix.length);
    const m = inProj.exec(rel);
    if (!m) {
      const name = applyRules(rel, rules);
      if (name !== undefined) out.set(name, alias(t, name));
      continue;
    }
    const layer = Number(m[1]);
    if (layer >= layers) continue;
    const rows = t.shape[0] as number;
    if (rows % 3 !== 0 || t.byteLength % 3 !== 0) {
      throw new ModelError(`has shape [${t.shape.join(", ")}]: not three stacked projections (q, k, v)`, {
        file,
        field: key,
      });
    }
    const third = t.byteLength / 3;
    ["q_proj", "k_proj", "v_proj"].forEach((proj, i) => {
      const name = `text_model.encoder.layers.${layer}.self_attn.${proj}.${m[2]}`;
      out.set(name, {
        ...t,
        name,
        shape: [rows / 3, ...t.shape.slice(1)],
        byteOffset: t.byteOffset + i * third,
        byteLength: third,
      });
    });
  }
  return out;
}

/**
 * Another VAE for a model (`--vae`): a diffusers VAE folder (config.json and weights, as
 * `stabilityai/sd-vae-ft-mse` is published), or one `.safetensors` file holding a VAE alone —
 * in the original layout as AUTOMATIC1111 users have them (`encoder.down.0…`, `decoder.up.0…`,
 * optionally under `first_stage_model.`) or in diffusers names. A single file takes the model's
 * own VAE config (`modelVae`): it replaces the weights of the same architecture.
 */
export async function openVae(source: string, modelVae: ComponentFiles): Promise<ComponentFiles> {
  const st = await stat(source).catch(() => undefined);
  if (!st) throw new ModelError("VAE not found (give a diffusers VAE folder or a .safetensors file)", { file: source });
  if (st.isDirectory()) return openComponentFolder(source, "vae");
  await refusePickle(source);
  const file = await readSafetensors(source);
  const keys = [...file.tensors.keys()];
  if (keys.some((k) => k.startsWith(UNET) || k.startsWith("cond_stage_model."))) {
    throw new ModelError("is a whole model checkpoint, not a VAE (use it with --model)", { file: source });
  }
  const cfg = new ConfigReader(modelVae.configPath, modelVae.config);
  let tensors: Map<string, TensorInfo>;
  if (keys.some((k) => k.startsWith("decoder.up_blocks."))) {
    tensors = new Map(file.tensors);
  } else {
    const prefix = keys.some((k) => k.startsWith(VAE)) ? VAE : "";
    tensors = mapVae(file.tensors, cfg, prefix);
  }
  if (!tensors.has("decoder.conv_in.weight")) {
    throw new ModelError(`is not a VAE: it has no decoder (first keys: ${keys.slice(0, 3).join(", ") || "none"})`, {
      file: source,
    });
  }
  const dtypes = new Set([...tensors.values()].map((t) => t.dtype));
  return {
    ...modelVae,
    dir: path.dirname(source),
    weightFiles: [source],
    tensors,
    onnxPath: undefined,
    variant: dtypes.has("F16") || dtypes.has("BF16") ? "fp16" : "fp32",
  };
}
