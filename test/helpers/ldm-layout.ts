/**
 * diffusers names → the original (LDM / CompVis / Stability generative-models) checkpoint
 * layout, written here independently of the loader (src/engine/weights/single-file.ts maps the
 * other way), from the golden-family README's mapping and Stability's published SDXL key names.
 * Tests use it to write the tiny pipelines as single-file checkpoints on the spot.
 */
import { readFileSync } from "node:fs";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import type { TensorInfo } from "../../src/engine/weights/safetensors.js";
import { type TensorToWrite, writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";

const RESNET: [string, string][] = [
  ["norm1", "in_layers.0"],
  ["conv1", "in_layers.2"],
  ["time_emb_proj", "emb_layers.1"],
  ["norm2", "out_layers.0"],
  ["conv2", "out_layers.3"],
  ["conv_shortcut", "skip_connection"],
];

/** diffusers UNet name → LDM name, for a config with L layers per block. */
export function unetToLdm(name: string, L: number, upHasAttention: boolean[]): string {
  const resnet = (rest: string) => {
    for (const [from, to] of RESNET) if (rest.startsWith(`${from}.`)) return `${to}${rest.slice(from.length)}`;
    throw new Error(`resnet part ${rest}`);
  };
  const fixed: Record<string, string> = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    // SDXL: the added conditions' embedding is ADM's label_emb (a Sequential: Linear, SiLU, Linear).
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    conv_in: "input_blocks.0.0",
    conv_norm_out: "out.0",
    conv_out: "out.2",
  };
  for (const [from, to] of Object.entries(fixed)) if (name.startsWith(`${from}.`)) return to + name.slice(from.length);
  const input = (i: string | undefined, j: string | undefined) => 1 + Number(i) * (L + 1) + Number(j);
  const output = (i: string | undefined, j: string | undefined) => Number(i) * (L + 1) + Number(j);
  const rules: [RegExp, (m: RegExpExecArray) => string][] = [
    [
      /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `input_blocks.${input(m[1], m[2])}.0.${resnet(m[3] as string)}`,
    ],
    [/^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/, (m) => `input_blocks.${input(m[1], m[2])}.1.${m[3]}`],
    [
      /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/,
      (m) => `input_blocks.${(Number(m[1]) + 1) * (L + 1)}.0.op.${m[2]}`,
    ],
    [/^mid_block\.resnets\.([01])\.(.+)$/, (m) => `middle_block.${m[1] === "0" ? 0 : 2}.${resnet(m[2] as string)}`],
    [/^mid_block\.attentions\.0\.(.+)$/, (m) => `middle_block.1.${m[1]}`],
    [
      /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `output_blocks.${output(m[1], m[2])}.0.${resnet(m[3] as string)}`,
    ],
    [/^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/, (m) => `output_blocks.${output(m[1], m[2])}.1.${m[3]}`],
    [
      /^up_blocks\.(\d+)\.upsamplers\.0\.(.+)$/,
      (m) => `output_blocks.${output(m[1], String(L))}.${upHasAttention[Number(m[1])] ? 2 : 1}.${m[2]}`,
    ],
  ];
  for (const [re, to] of rules) {
    const m = re.exec(name);
    if (m) return to(m);
  }
  throw new Error(`unet name ${name}`);
}

/** diffusers VAE name → LDM name, for a VAE of n blocks. */
export function vaeToLdm(name: string, n: number): string {
  return name
    .replace(/^decoder\.up_blocks\.(\d+)\./, (_, i) => `decoder.up.${n - 1 - Number(i)}.`)
    .replace(/^encoder\.down_blocks\.(\d+)\./, "encoder.down.$1.")
    .replace(/\.downsamplers\.0\./, ".downsample.")
    .replace(/\.resnets\.(\d+)\./, ".block.$1.")
    .replace(/\.upsamplers\.0\./, ".upsample.")
    .replace(/mid_block\.block\.0\./, "mid.block_1.")
    .replace(/mid_block\.block\.1\./, "mid.block_2.")
    .replace(/mid_block\.attentions\.0\.group_norm/, "mid.attn_1.norm")
    .replace(/mid_block\.attentions\.0\.to_(q|k|v)\./, "mid.attn_1.$1.")
    .replace(/mid_block\.attentions\.0\.to_out\.0\./, "mid.attn_1.proj_out.")
    .replace(/conv_shortcut/, "nin_shortcut")
    .replace(/conv_norm_out/, "norm_out");
}

/** CLIPTextModel layer parts → OpenCLIP resblock parts (q/k/v are fused into in_proj). */
export const OPEN_CLIP_PARTS: [string, string][] = [
  ["self_attn.out_proj", "attn.out_proj"],
  ["layer_norm1", "ln_1"],
  ["layer_norm2", "ln_2"],
  ["mlp.fc1", "mlp.c_fc"],
  ["mlp.fc2", "mlp.c_proj"],
];

interface Bytes {
  dtype: TensorInfo["dtype"];
  shape: number[];
  data: Uint8Array;
}

function bytesOf(t: TensorInfo): Bytes {
  const file = readFileSync(t.file);
  return { dtype: t.dtype, shape: [...t.shape], data: file.subarray(t.byteOffset, t.byteOffset + t.byteLength) };
}

/** The [rows, cols] matrix of `b` transposed (elements of any byte width). */
function transpose(b: Bytes): Bytes {
  const [rows, cols] = b.shape as [number, number];
  const size = b.data.byteLength / (rows * cols);
  const out = new Uint8Array(b.data.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out.set(b.data.subarray((r * cols + c) * size, (r * cols + c + 1) * size), (c * rows + r) * size);
    }
  }
  return { dtype: b.dtype, shape: [cols, rows], data: out };
}

/**
 * A CLIPTextModel(WithProjection)'s tensors as OpenCLIP names them under `prefix`: q, k, v
 * stacked into `attn.in_proj_weight` / `in_proj_bias`, `text_projection` as the matrix the
 * pooled state multiplies (the Linear weight transposed).
 */
export function openClipTensors(tensors: ReadonlyMap<string, TensorInfo>, prefix: string): Map<string, Bytes> {
  const out = new Map<string, Bytes>();
  const get = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`no ${name}`);
    return bytesOf(t);
  };
  out.set(`${prefix}token_embedding.weight`, get("text_model.embeddings.token_embedding.weight"));
  out.set(`${prefix}positional_embedding`, get("text_model.embeddings.position_embedding.weight"));
  out.set(`${prefix}ln_final.weight`, get("text_model.final_layer_norm.weight"));
  out.set(`${prefix}ln_final.bias`, get("text_model.final_layer_norm.bias"));
  if (tensors.has("text_projection.weight"))
    out.set(`${prefix}text_projection`, transpose(get("text_projection.weight")));
  for (let i = 0; tensors.has(`text_model.encoder.layers.${i}.layer_norm1.weight`); i++) {
    const ours = `text_model.encoder.layers.${i}.`;
    const theirs = `${prefix}transformer.resblocks.${i}.`;
    for (const kind of ["weight", "bias"]) {
      const parts = ["q_proj", "k_proj", "v_proj"].map((p) => get(`${ours}self_attn.${p}.${kind}`));
      const first = parts[0] as Bytes;
      out.set(`${theirs}attn.in_proj_${kind}`, {
        dtype: first.dtype,
        shape: [3 * (first.shape[0] as number), ...first.shape.slice(1)],
        data: Buffer.concat(parts.map((p) => p.data)),
      });
      for (const [from, to] of OPEN_CLIP_PARTS) out.set(`${theirs}${to}.${kind}`, get(`${ours}${from}.${kind}`));
    }
  }
  return out;
}

/**
 * Writes a diffusers SDXL folder (base: two text encoders; refiner: text_encoder_2 only) as one
 * checkpoint in Stability's original layout: `conditioner.embedders.0.transformer.*` (CLIP ViT-L,
 * transformers' names), `conditioner.embedders.{1 | 0 for the refiner}.model.*` (OpenCLIP),
 * `model.diffusion_model.*` (with `label_emb`), `first_stage_model.*` (attention projections as
 * 1×1 convs). `extra` tensors (EMA, schedule buffers) are appended as real files carry them.
 */
export async function writeSdxlCheckpoint(
  folderDir: string,
  outFile: string,
  extra: TensorToWrite[] = [],
): Promise<void> {
  const folder = await openModelFolder(folderDir);
  const out = new Map<string, Bytes>();
  const unetCfg = folder.unet.config;
  const L = unetCfg["layers_per_block"] as number;
  const upAttn = (unetCfg["up_block_types"] as string[]).map((t) => t.startsWith("CrossAttn"));
  for (const [name, t] of folder.unet.tensors) {
    out.set(`model.diffusion_model.${unetToLdm(name, L, upAttn)}`, bytesOf(t));
  }
  const n = (folder.vae.config["block_out_channels"] as number[]).length;
  for (const [name, t] of folder.vae.tensors) {
    const b = bytesOf(t);
    const attn = /attentions\.0\.(to_|proj)/.test(name) && b.shape.length === 2;
    out.set(`first_stage_model.${vaeToLdm(name, n)}`, attn ? { ...b, shape: [...b.shape, 1, 1] } : b);
  }
  const refiner = folder.textEncoder2 === undefined;
  if (!refiner) {
    for (const [name, t] of folder.textEncoder.tensors)
      out.set(`conditioner.embedders.0.transformer.${name}`, bytesOf(t));
  }
  const bigG = folder.textEncoder2 ?? folder.textEncoder;
  for (const [k, v] of openClipTensors(bigG.tensors, `conditioner.embedders.${refiner ? 0 : 1}.model.`)) out.set(k, v);
  await writeSafetensors(outFile, [...[...out].map(([name, b]) => ({ name, ...b })), ...extra]);
}
