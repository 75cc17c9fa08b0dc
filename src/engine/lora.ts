/**
 * LoRA: low-rank updates W' = W + scale · (alpha / rank) · up · down on a model's Linear layers,
 * read from the two common layouts:
 *
 * - kohya-ss / AUTOMATIC1111: `lora_unet_<module path, dots as underscores>.lora_down.weight`
 *   [rank, in], `.lora_up.weight` [out, rank], `.alpha` (absent: alpha = rank); `lora_te_…`
 *   for the text encoder, `lora_te1_…` / `lora_te2_…` for SDXL's two. 1×1 convs (SD 1.x
 *   proj_in/proj_out) store [rank, in, 1, 1]. The UNet's module path is diffusers' (SD 1.x/2.x
 *   trainers) or the original LDM/SGM one (kohya's SDXL trainer: `input_blocks_4_1_…`,
 *   `middle_block_1_…`, `output_blocks_2_2_conv`), mapped through the config's block layout as
 *   single-file checkpoints are (weights/single-file.ts; diffusers'
 *   _maybe_map_sgm_blocks_to_diffusers does the same for LoRAs).
 * - diffusers / PEFT: `unet.<module path>.lora_A.weight` [rank, in] and `.lora_B.weight`
 *   [out, rank], `text_encoder.…` (`text_encoder_2.…` on SDXL); the alpha/rank factor is
 *   already in lora_B (factor 1), as diffusers loads them, unless the header carries the PEFT
 *   config diffusers saves (`lora_adapter_metadata`, peftAdapterConfig). Older diffusers names
 *   (`…processor.to_q_lora.down.weight`, `…lora_linear_layer.up.weight`, the text encoder's
 *   `…self_attn.to_q_lora.down.weight`) are read too, also
 *   without the `unet.` prefix (UNet attention processors as save_attn_procs writes them, and
 *   as Replicate's SDXL trainer ships them in its `lora.safetensors`).
 *
 * How they are applied (the design): the weights are never changed. A pipeline loaded with
 * LoRA support builds its text encoder and UNet graphs with every LoRA-able layer computing
 * y = x·Wᵀ + (x·Dᵀ)·Uᵀ, where Dᵀ [in, r] and Uᵀ [r, out] are graph inputs (Layers.lowRank). A
 * request's LoRAs become those inputs — several LoRAs on one layer are concatenated along r,
 * each up factor multiplied by its own scale · alpha / rank; a layer no LoRA touches gets r = 0.
 * So switching LoRAs costs building the factor arrays (the size of the LoRA files, milliseconds),
 * never a new session: fusing W' in memory would rewrite gigabytes and make onnxruntime
 * re-optimise and re-pack the whole UNet (tens of seconds at SD 1.5 size) for every change. The
 * price is two thin MatMuls and an Add per LoRA-able layer on every step, paid only by
 * pipelines loaded with LoRA support.
 *
 * Layers that take LoRAs: the UNet's attention projections (to_q, to_k, to_v, to_out.0), its
 * feed-forward (ff.net.0.proj, ff.net.2) and proj_in / proj_out; the text encoder's q/k/v/out
 * projections and MLP (fc1, fc2) — what kohya's trainer targets by default. With `convs` (a
 * pipeline loaded with loraSupport "all", or with a fixed LoRA that needs it, or one in its
 * `<lora:…>` folder at load) also the UNet's ResNet convolutions and time projections, its
 * down/upsamplers (what LCM-LoRA trains besides attention), its time embedding, SDXL's add_embedding (label_emb) and conv_in /
 * conv_out (full-network LoCon): a k×k conv to r channels then a 1×1 conv back, at r ≥ 1 even
 * when unused, so those pipelines pay more per step. A file is applied whole or refused: a key
 * on a layer the pipeline cannot change is an error, never skipped. The LyCORIS variants (LoHa, LoKr, …) and DoRA are refused by name,
 * as are keys that fit no LoRA-able layer of the model and factors whose shapes do not fit.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { ModelError } from "./errors.js";
import type { LowRankTarget } from "./graph/weights.js";
import { listLoraFiles } from "./lora-dir.js";
import type { Feeds } from "./runtime.js";
import { readSafetensors, readTensor, type TensorInfo } from "./weights/safetensors.js";

export interface LoraSpec {
  /** A `.safetensors` LoRA file. */
  path: string;
  /** How strongly it applies (default 1; 0 turns it off). */
  scale?: number;
}

/** The networks a LoRA changes: the UNet and the text encoder(s) (SDXL's second is text_encoder_2). */
export type LoraComponent = "unet" | "text_encoder" | "text_encoder_2";
const COMPONENTS: readonly LoraComponent[] = ["unet", "text_encoder", "text_encoder_2"];

/** The layers LoRAs are applied to (module paths in diffusers / transformers names). */
export function isLoraTarget(component: LoraComponent, prefix: string, convs = false): boolean {
  if (component !== "unet") {
    return /\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))$/.test(prefix);
  }
  const attention =
    /\.attentions\.\d+\.(transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))|proj_in|proj_out)$/;
  // LoCon and LCM-LoRA also change the ResNets (convolutions, time projection) and the samplers;
  // full-network LoRAs (LoCon extractions, LyCORIS's full preset) the time embedding, SDXL's
  // added-condition embedding (SGM's label_emb) and the first and last convolutions.
  const resnets =
    /(\.resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|\.(down|up)samplers\.0\.conv|^(time|add)_embedding\.linear_[12]|^conv_in|^conv_out)$/;
  return attention.test(prefix) || (convs && resnets.test(prefix));
}

/** What a LoRA's keys are matched against: the model's module names (LoraModel's). */
export type LoraNames = Pick<LoraModel, "modules" | "ldmUNet">;

const kohyaName = (modulePath: string) => modulePath.replace(/\./g, "_");

/** Where a LoRA key's layer is in the model (kohya names have underscores for dots), if anywhere. */
function layerResolver(names: LoraNames): (base: string) => { component: LoraComponent; prefix: string } | undefined {
  const { modules } = names;
  const kohyaIndex = new Map<LoraComponent, Map<string, string>>();
  for (const component of COMPONENTS) {
    const index = new Map<string, string>();
    for (const prefix of modules[component]?.keys() ?? []) index.set(kohyaName(prefix), prefix);
    kohyaIndex.set(component, index);
  }
  // The UNet's modules under their original (LDM/SGM) names as well.
  const unetIndex = kohyaIndex.get("unet") as Map<string, string>;
  for (const [ldm, prefix] of names.ldmUNet ?? []) if (!unetIndex.has(ldm)) unetIndex.set(ldm, prefix);
  const kohya: readonly [RegExp, LoraComponent][] = [
    [/^lora_unet_(.+)$/, "unet"],
    [/^lora_te1?_(.+)$/, "text_encoder"],
    [/^lora_te2_(.+)$/, "text_encoder_2"],
  ];
  return (base) => {
    for (const [re, component] of kohya) {
      const m = re.exec(base);
      if (!m) continue;
      const prefix = kohyaIndex.get(component)?.get(m[1] as string);
      return prefix === undefined ? undefined : { component, prefix };
    }
    const m = /^(unet|text_encoder_2|text_encoder)\.(.+)$/.exec(base);
    if (m && modules[m[1] as LoraComponent]?.has(m[2] as string)) {
      return { component: m[1] as LoraComponent, prefix: m[2] as string };
    }
    // UNet attention processors saved without a prefix (diffusers' save_attn_procs; the
    // lora.safetensors of Replicate's SDXL trainer), which diffusers loads into the UNet.
    if (modules.unet.has(base)) return { component: "unet", prefix: base };
    return undefined;
  };
}

/**
 * The UNet's modules under kohya's flattening of their original (LDM/SGM) names, from the
 * module map of single-file checkpoints: `input_blocks_4_1_transformer_blocks_0_attn1_to_q` →
 * `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`, `input_blocks_1_0_in_layers_2`
 * → `down_blocks.0.resnets.0.conv1`. Inside an attention block the names are the same in both.
 */
export function ldmUNetNames(
  ldmModules: ReadonlyMap<string, { to: string; resnet: boolean }>,
  resnetNames: Readonly<Record<string, string>>,
  unetModules: Iterable<string>,
): Map<string, string> {
  const byDiffusers = new Map<string, { ldm: string; resnet: boolean }>();
  for (const [ldm, m] of ldmModules) byDiffusers.set(m.to, { ldm, resnet: m.resnet });
  const out = new Map<string, string>();
  for (const prefix of unetModules) {
    const parts = prefix.split(".");
    for (let len = parts.length; len >= 1; len--) {
      const hit = byDiffusers.get(parts.slice(0, len).join("."));
      if (!hit) continue;
      let rest = parts.slice(len).join(".");
      if (hit.resnet) {
        const from = Object.entries(resnetNames).find(([, to]) => rest === to || rest.startsWith(`${to}.`));
        if (!from) break;
        rest = from[0] + rest.slice(from[1].length);
      }
      out.set(kohyaName(rest ? `${hit.ldm}.${rest}` : hit.ldm), prefix);
      break;
    }
  }
  return out;
}

/** The layer a key belongs to, without its factor suffix (undefined: not a LoRA factor). */
function keyBase(stored: string): { base: string; part: Part; format: "kohya" | "peft" } | undefined {
  const key = legacyProcessorKey(stored);
  const suffix = SUFFIXES.find(([s]) => key.endsWith(s));
  return suffix && { base: key.slice(0, -suffix[0].length), part: suffix[1], format: suffix[2] };
}

/**
 * Whether any of these LoRA files changes a convolution or time projection of the UNet (which
 * a pipeline then builds LoRA inputs for); reads only the files' headers.
 */
export async function touchesConvolutions(files: readonly string[], names: LoraNames): Promise<boolean> {
  const resolve = layerResolver(names);
  for (const file of files) {
    const st = await readSafetensors(file);
    for (const key of st.tensors.keys()) {
      const where = keyBase(key) && resolve((keyBase(key) as { base: string }).base);
      if (
        where?.component === "unet" &&
        isLoraTarget("unet", where.prefix, true) &&
        !isLoraTarget("unet", where.prefix)
      ) {
        return true;
      }
    }
  }
  return false;
}

/**
 * Whether any LoRA of a `<lora:…>` folder changes a convolution or time projection (so that an
 * LCM-LoRA or LoCon dropped there can be called by a prompt tag). A file that cannot be read is
 * skipped here: a prompt that calls it gets the file's own error.
 */
export async function folderTouchesConvolutions(dir: string, names: LoraNames): Promise<boolean> {
  const files = await listLoraFiles(dir).catch(() => []);
  for (const f of files) {
    if (await touchesConvolutions([f.path], names).catch(() => false)) return true;
  }
  return false;
}

/** One layer's factors, validated against the model. */
interface LoraLayer {
  component: LoraComponent;
  prefix: string;
  rank: number;
  /** down [rank, in] and up [out, rank], row-major float32. */
  down: Float32Array;
  up: Float32Array;
  /** alpha / rank (kohya; PEFT with diffusers' lora_adapter_metadata), or 1 (PEFT). */
  factor: number;
}

export interface LoadedLora {
  file: string;
  format: "kohya" | "peft";
  layers: LoraLayer[];
}

/** What the model offers: every layer's weight shape, and the layers whose LoRA factors are graph inputs. */
export interface LoraModel {
  /** text_encoder_2: SDXL's second text encoder. */
  modules: Record<"unet" | "text_encoder", ReadonlyMap<string, readonly number[]>> & {
    text_encoder_2?: ReadonlyMap<string, readonly number[]>;
  };
  targets: Record<"unet" | "text_encoder", ReadonlyMap<string, LowRankTarget>> & {
    text_encoder_2?: ReadonlyMap<string, LowRankTarget>;
  };
  /** The UNet's modules by kohya's flattening of their LDM/SGM names (ldmUNetNames), where known. */
  ldmUNet?: ReadonlyMap<string, string>;
}

/** The model's modules (tensor names ending in `.weight`, without it) with their weight shapes. */
export function moduleShapes(tensors: ReadonlyMap<string, TensorInfo>): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  for (const [name, t] of tensors) if (name.endsWith(".weight")) out.set(name.slice(0, -7), t.shape);
  return out;
}

const LYCORIS: readonly [RegExp, string][] = [
  [/\.hada_w[12]_[ab]$/, "LyCORIS LoHa"],
  [/\.lokr_w[12](_[ab])?$/, "LyCORIS LoKr"],
  [/\.lora_mid\.weight$/, "LyCORIS LoCon with CP decomposition"],
  [/\.(oft_blocks|oft_diag)$/, "LyCORIS OFT"],
  [/\.dora_scale$/, "LyCORIS DoRA"],
  // PEFT's DoRA (diffusers' use_dora): the magnitude vector beside lora_A / lora_B.
  [/\.lora_magnitude_vector(\.weight)?$/, "DoRA"],
  [/\.(diff|diff_b)$/, "LyCORIS full-difference"],
  [/\.(w_norm|b_norm)$/, "LyCORIS norm"],
];

type Part = "down" | "up" | "alpha";
const SUFFIXES: readonly [string, Part, "kohya" | "peft"][] = [
  [".lora_down.weight", "down", "kohya"],
  [".lora_up.weight", "up", "kohya"],
  [".alpha", "alpha", "kohya"],
  [".lora_A.weight", "down", "peft"],
  [".lora_B.weight", "up", "peft"],
  [".lora.down.weight", "down", "peft"],
  [".lora.up.weight", "up", "peft"],
  [".lora_linear_layer.down.weight", "down", "peft"],
  [".lora_linear_layer.up.weight", "up", "peft"],
];

/**
 * diffusers before PEFT (≤ 0.20) saved LoRAs under attention processors:
 * `<attention>.processor.to_q_lora.down.weight`, also without `.processor` (diffusers drops it
 * when it loads them); the layer is `<attention>.to_q` (`to_out.0`) in the UNet and
 * `self_attn.q_proj` (`out_proj`) in a text encoder, as diffusers' old-to-PEFT key maps read
 * them (its text-encoder LoRAs of that time: `text_encoder.….self_attn.to_q_lora.down.weight`).
 */
function legacyProcessorKey(key: string): string {
  const m = /^(.+?)(\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(key);
  if (!m) return key;
  const proj = m[3] as string;
  const layer = /^text_encoder(_2)?\./.test(m[1] as string)
    ? `${proj.slice(3)}_proj`
    : proj === "to_out"
      ? "to_out.0"
      : proj;
  return `${m[1]}.${layer}.lora.${m[4]}.weight`;
}

const list = (names: readonly string[]) =>
  names.slice(0, 3).join(", ") + (names.length > 3 ? `, and ${names.length - 3} more` : "");

/**
 * diffusers (0.34 on) may save a LoRA's PEFT config in the header, `lora_adapter_metadata`: a
 * JSON object of `<component>.<LoraConfig field>` (`unet.lora_alpha`, `unet.alpha_pattern`,
 * `text_encoder.use_rslora`, …), from which it builds the LoraConfig instead of taking alpha =
 * rank. PEFT then scales a layer by alpha / rank (alpha / √rank with use_rslora), alpha being
 * the first `alpha_pattern` entry whose pattern ends the module's name, else `lora_alpha`
 * (LoraConfig's default 8 when absent; a network the metadata has no fields for keeps alpha =
 * rank). Returns that factor per layer, or undefined without such metadata; DoRA configs are
 * refused, as DoRA files are.
 */
function peftAdapterConfig(
  file: string,
  metadata: Readonly<Record<string, string>>,
): ((component: LoraComponent, prefix: string, rank: number) => number) | undefined {
  const raw = metadata["lora_adapter_metadata"];
  if (raw === undefined) return undefined;
  let config: unknown;
  try {
    config = JSON.parse(raw);
  } catch (err) {
    throw new ModelError(`header metadata lora_adapter_metadata is not JSON (${(err as Error).message})`, { file });
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new ModelError("header metadata lora_adapter_metadata is not a JSON object", { file });
  }
  const fields = config as Record<string, unknown>;
  const bad = (what: string) =>
    new ModelError(`header metadata lora_adapter_metadata: ${what}`, { file, field: "lora_adapter_metadata" });
  for (const component of COMPONENTS) {
    if (fields[`${component}.use_dora`] === true) {
      throw new ModelError(
        `is a DoRA file (lora_adapter_metadata ${component}.use_dora), which sdserve does not support; it applies ` +
          "plain LoRAs (lora_down/lora_up or lora_A/lora_B)",
        { file },
      );
    }
  }
  return (component, prefix, rank) => {
    const field = (name: string) => fields[`${component}.${name}`];
    // No config for this network (one saved for another): alpha = rank, the convention without one.
    if (!Object.keys(fields).some((k) => k.startsWith(`${component}.`))) return 1;
    let alpha = field("lora_alpha") ?? 8;
    const patterns = field("alpha_pattern") ?? {};
    if (typeof patterns !== "object" || patterns === null || Array.isArray(patterns)) {
      throw bad(`${component}.alpha_pattern is not an object`);
    }
    for (const [pattern, value] of Object.entries(patterns)) {
      let re: RegExp;
      try {
        re = new RegExp(`^(.*\\.)?(${pattern})$`);
      } catch {
        throw bad(`${component}.alpha_pattern key ${JSON.stringify(pattern)} is not a pattern`);
      }
      if (re.test(prefix)) {
        alpha = value;
        break;
      }
    }
    if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
      throw bad(`the alpha of ${component} ${prefix} is ${JSON.stringify(alpha)}, not a number`);
    }
    return alpha / (field("use_rslora") === true ? Math.sqrt(rank) : rank);
  };
}

/**
 * Reads a LoRA file and matches it to the model: every key must name a LoRA-able layer of the
 * model with factors of fitting shapes. Throws a ModelError naming the file and what is wrong.
 */
export async function loadLora(file: string, model: LoraModel): Promise<LoadedLora> {
  const st = await readSafetensors(file);
  const keys = [...st.tensors.keys()];
  if (keys.length === 0) throw new ModelError("holds no tensors: not a LoRA", { file });
  for (const [re, kind] of LYCORIS) {
    const hit = keys.find((k) => re.test(k));
    if (hit) {
      throw new ModelError(
        `is a ${kind} file (${hit}), which sdserve does not support; it applies plain LoRAs ` +
          "(lora_down/lora_up or lora_A/lora_B)",
        { file },
      );
    }
  }
  if (keys.some((k) => k.startsWith("model.diffusion_model.") || k.startsWith("first_stage_model."))) {
    throw new ModelError("is a model checkpoint, not a LoRA (load it with --model)", { file });
  }

  const adapterConfig = peftAdapterConfig(file, st.metadata);
  const groups = new Map<string, Partial<Record<Part, TensorInfo>>>();
  const formats = new Set<"kohya" | "peft">();
  const peftBases = new Set<string>();
  const unknown: string[] = [];
  for (const [stored, t] of st.tensors) {
    const k = keyBase(stored);
    if (!k) {
      unknown.push(stored);
      continue;
    }
    formats.add(k.format);
    if (k.format === "peft") peftBases.add(k.base);
    const g = groups.get(k.base) ?? {};
    g[k.part] = t;
    groups.set(k.base, g);
  }
  if (unknown.length > 0) {
    throw new ModelError(`has keys that are not LoRA factors: ${list(unknown)}`, { file });
  }

  const resolve = layerResolver(model);

  const unplaced: string[] = [];
  const unsupported: { base: string; component: LoraComponent; prefix: string }[] = [];
  const layers: LoraLayer[] = [];
  for (const [base, g] of groups) {
    if ((base.startsWith("lora_te2_") || base.startsWith("text_encoder_2.")) && !model.modules.text_encoder_2) {
      throw new ModelError(`is an SDXL LoRA (${base}: a second text encoder); this model has one`, { file });
    }
    const where = resolve(base);
    if (!where) {
      unplaced.push(base);
      continue;
    }
    const target = model.targets[where.component]?.get(where.prefix);
    if (!target) {
      unsupported.push({ base, ...where });
      continue;
    }
    if (!g.down || !g.up) {
      throw new ModelError(`${base} has ${g.down ? "no up" : "no down"} factor`, { file });
    }
    const layer = await readLayer(file, base, where.component, where.prefix, g, target);
    // PEFT factors scale by the adapter config diffusers saved in the header, when it did.
    if (!g.alpha && peftBases.has(base) && adapterConfig) {
      layer.factor = adapterConfig(where.component, where.prefix, layer.rank);
    }
    layers.push(layer);
  }
  if (unplaced.length > 0) {
    throw new ModelError(
      `has LoRA keys for layers this model does not have: ${list(unplaced)} (a LoRA for another model family?)`,
      { file },
    );
  }
  if (unsupported.length > 0) {
    // A convolution LoRA (LoCon, LCM-LoRA) on a pipeline built for attention layers only: the
    // graph has no inputs for it, and dropping those layers would silently change the LoRA.
    const convs = unsupported.every((u) => u.component === "unet" && isLoraTarget("unet", u.prefix, true));
    const names = list(unsupported.map((u) => `${u.base} (${u.component} ${u.prefix})`));
    throw new ModelError(
      convs
        ? `changes layers sdserve does not apply LoRAs to on this model as loaded: ${names}; LoRAs on ` +
            "the UNet's convolutions and time projections (LoCon, LCM-LoRA) apply when the model is loaded with " +
            'them (--lora, a models-file "loras" entry, or in its lora_dir at startup) or with loraSupport "all"'
        : `changes layers sdserve does not apply LoRAs to: ${names}; LoRAs apply to the UNet's attention, ` +
            "feed-forward, proj_in/proj_out, convolution, time-embedding and time-projection layers and the text " +
            "encoder's attention and MLP",
      { file },
    );
  }
  if (layers.length === 0) throw new ModelError("holds no LoRA layers", { file });
  return { file, format: formats.has("kohya") ? "kohya" : "peft", layers };
}

async function readLayer(
  file: string,
  base: string,
  component: LoraComponent,
  prefix: string,
  g: Partial<Record<Part, TensorInfo>>,
  target: LowRankTarget,
): Promise<LoraLayer> {
  const down = g.down as TensorInfo;
  const up = g.up as TensorInfo;
  // 1×1 conv factors [r, in, 1, 1] / [out, r, 1, 1] are the same numbers as linear ones.
  const flat = (s: readonly number[]) => (s.length === 4 && s[2] === 1 && s[3] === 1 ? s.slice(0, 2) : s);
  // A convolution's down factor keeps its kernel: [rank, in, k, k].
  const k = target.kernel;
  const downShape = k === undefined ? flat(down.shape) : down.shape;
  const [rank, inF] = downShape;
  const [outF, upRank] = flat(up.shape);
  const fits =
    downShape.length === (k === undefined ? 2 : 4) &&
    (k === undefined || (downShape[2] === k && downShape[3] === k)) &&
    flat(up.shape).length === 2 &&
    rank === upRank &&
    inF === target.inFeatures &&
    outF === target.outFeatures;
  if (!fits) {
    const kernel = k === undefined ? "" : `, ${k}, ${k}`;
    throw new ModelError(
      `${base}: factors down [${down.shape.join(", ")}] and up [${up.shape.join(", ")}] do not fit the layer ` +
        `${prefix} (${target.inFeatures} in, ${target.outFeatures} out): expected down [rank, ${target.inFeatures}${kernel}] ` +
        `and up [${target.outFeatures}, rank] (a LoRA for another model?)`,
      { file },
    );
  }
  const r = rank as number;
  if (r < 1) throw new ModelError(`${base}: rank 0 (empty factors)`, { file });
  let factor = 1;
  if (g.alpha) {
    if (g.alpha.shape.reduce((a, d) => a * d, 1) !== 1) {
      throw new ModelError(`${base}.alpha must be one number, has shape [${g.alpha.shape.join(", ")}]`, { file });
    }
    const alpha = (await readTensor(g.alpha))[0] as number;
    if (!Number.isFinite(alpha)) throw new ModelError(`${base}.alpha is ${alpha}`, { file });
    factor = alpha / r;
  }
  const downData = await readTensor(down);
  const upData = await readTensor(up);
  for (const [what, data] of [
    ["down", downData],
    ["up", upData],
  ] as const) {
    if (!data.every(Number.isFinite))
      throw new ModelError(`${base}: the ${what} factor holds NaN or infinity`, { file });
  }
  return { component, prefix, rank: r, down: downData, up: upData, factor };
}

/**
 * The graph inputs for a set of LoRAs with their scales: per LoRA-able layer, downᵀ [in, R]
 * and upᵀ [R, out] with R the summed rank of the LoRAs on it (0 where none is), each up column
 * block multiplied by scale · alpha / rank in float32.
 */
export function loraFeeds(
  targets: ReadonlyMap<string, LowRankTarget>,
  component: LoraComponent,
  loras: readonly { lora: LoadedLora; scale: number }[],
): Feeds {
  const byLayer = new Map<string, { layer: LoraLayer; scale: number }[]>();
  for (const { lora, scale } of loras) {
    if (scale === 0) continue;
    for (const layer of lora.layers) {
      if (layer.component !== component) continue;
      const list = byLayer.get(layer.prefix) ?? [];
      list.push({ layer, scale });
      byLayer.set(layer.prefix, list);
    }
  }
  const feeds: Feeds = {};
  for (const [prefix, t] of targets) {
    const parts = byLayer.get(prefix) ?? [];
    const inF = t.inFeatures;
    const outF = t.outFeatures;
    if (t.kernel !== undefined) {
      feeds[t.downInput] = convFeed(parts, t.kernel, inF, outF, "down");
      feeds[t.upInput] = convFeed(parts, t.kernel, inF, outF, "up");
      continue;
    }
    const R = parts.reduce((a, p) => a + p.layer.rank, 0);
    const downT = new Float32Array(inF * R);
    const upT = new Float32Array(R * outF);
    let offset = 0;
    for (const { layer, scale } of parts) {
      const r = layer.rank;
      const s = Math.fround(scale * layer.factor);
      for (let k = 0; k < r; k++) {
        for (let i = 0; i < inF; i++) downT[i * R + offset + k] = layer.down[k * inF + i] as number;
        for (let o = 0; o < outF; o++) upT[(offset + k) * outF + o] = Math.fround((layer.up[o * r + k] as number) * s);
      }
      offset += r;
    }
    feeds[t.downInput] = new ort.Tensor("float32", downT, [inF, R]);
    feeds[t.upInput] = new ort.Tensor("float32", upT, [R, outF]);
  }
  return feeds;
}

/**
 * A convolution's factors: down [R, in, k, k] (the LoRAs' down factors stacked) and the scaled
 * up [out, R, 1, 1]; R is at least 1 (zeros) as a convolution to no channels is not asked of
 * onnxruntime.
 */
function convFeed(
  parts: readonly { layer: LoraLayer; scale: number }[],
  k: number,
  inF: number,
  outF: number,
  which: "down" | "up",
): ort.Tensor {
  const R = Math.max(
    1,
    parts.reduce((a, p) => a + p.layer.rank, 0),
  );
  if (which === "down") {
    const data = new Float32Array(R * inF * k * k);
    let offset = 0;
    for (const { layer } of parts) {
      data.set(layer.down, offset * inF * k * k);
      offset += layer.rank;
    }
    return new ort.Tensor("float32", data, [R, inF, k, k]);
  }
  const data = new Float32Array(outF * R);
  let offset = 0;
  for (const { layer, scale } of parts) {
    const r = layer.rank;
    const s = Math.fround(scale * layer.factor);
    for (let o = 0; o < outF; o++) {
      for (let j = 0; j < r; j++) data[o * R + offset + j] = Math.fround((layer.up[o * r + j] as number) * s);
    }
    offset += r;
  }
  return new ort.Tensor("float32", data, [outF, R, 1, 1]);
}

/** `PATH[:SCALE]`, as `--lora` takes it; a suffix that is not a number stays part of the path. */
export function parseLoraArg(arg: string): LoraSpec {
  const i = arg.lastIndexOf(":");
  if (i > 0) {
    const tail = arg.slice(i + 1);
    if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(tail)) return { path: arg.slice(0, i), scale: Number(tail) };
  }
  return { path: arg };
}

/** Identifies a file's current contents cheaply (path, size, modification time) for caching. */
export async function fileIdentity(file: string): Promise<string> {
  const abs = path.resolve(file);
  const st = await stat(abs).catch((err: Error) => {
    throw new ModelError(`cannot be read: ${err.message}`, { file });
  });
  if (!st.isFile()) throw new ModelError("is not a file", { file });
  return `${abs}\0${st.size}\0${st.mtimeMs}`;
}
