/**
 * Random rank-r LoRAs for the tiny SDXL fixture (golden-family/sdxl/tiny-sdxl), written in the
 * layouts real SDXL LoRAs come in, and the reference they are checked against: a copy of the
 * model folder with W + s · B · A fused into its weights by hand (float64 products, rounded once).
 * There is no diffusers-made SDXL LoRA golden; the fused copy runs through the engine's plain,
 * already golden-tested SDXL path.
 */
import path from "node:path";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { type TensorToWrite, writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { copyModel, type ModelCopy } from "./model-copy.js";
import { mulberry32 } from "./seeded.js";
import { TINY_SDXL } from "./tiny-refiner.js";

export { TINY_SDXL };

export type Network = "unet" | "text_encoder" | "text_encoder_2";
const WEIGHT_FILES: Record<Network, string> = {
  unet: "unet/diffusion_pytorch_model.safetensors",
  text_encoder: "text_encoder/model.safetensors",
  text_encoder_2: "text_encoder_2/model.safetensors",
};

/** The layers kohya's and diffusers' trainers put LoRAs on, by weight name (independent of lora.ts). */
const TARGETS: Record<Network, RegExp> = {
  unet: /\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2)|proj_in|proj_out)\.weight$/,
  text_encoder: /\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))\.weight$/,
  text_encoder_2: /\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))\.weight$/,
};

export interface RandomLayer {
  network: Network;
  /** The module's diffusers / transformers path (without `.weight`). */
  module: string;
  rank: number;
  inF: number;
  outF: number;
  /** [rank, in] and [out, rank], row-major. */
  down: Float32Array;
  up: Float32Array;
}

/** A rank-`rank` LoRA on every target layer of the given networks, factors uniform in ±amplitude. */
export async function randomSdxlLora(
  seed: number,
  networks: readonly Network[] = ["unet", "text_encoder", "text_encoder_2"],
  rank = 4,
  amplitude = 0.1,
): Promise<RandomLayer[]> {
  const next = mulberry32(seed);
  const rand = (n: number) => Float32Array.from({ length: n }, () => (next() * 2 - 1) * amplitude);
  const layers: RandomLayer[] = [];
  for (const network of networks) {
    const st = await readSafetensors(path.join(TINY_SDXL, WEIGHT_FILES[network]));
    const names = [...st.tensors.keys()].filter((k) => TARGETS[network].test(k)).sort();
    for (const name of names) {
      const [outF, inF] = (st.tensors.get(name) as { shape: number[] }).shape as [number, number];
      layers.push({
        network,
        module: name.slice(0, -".weight".length),
        rank,
        inF,
        outF,
        down: rand(rank * inF),
        up: rand(outF * rank),
      });
    }
  }
  return layers;
}

/**
 * The UNet module's name in the original SGM layout of SDXL (layers_per_block 2: three
 * input_blocks per down block, the first one conv_in; three output_blocks per up block), as
 * kohya's SDXL trainer names it. Written out here rather than taken from the engine.
 */
export function sgmName(module: string): string {
  return module
    .replace(
      /^down_blocks\.(\d+)\.attentions\.(\d+)\./,
      (_, i, j) => `input_blocks.${3 * Number(i) + 1 + Number(j)}.1.`,
    )
    .replace(/^mid_block\.attentions\.0\./, "middle_block.1.")
    .replace(/^up_blocks\.(\d+)\.attentions\.(\d+)\./, (_, i, j) => `output_blocks.${3 * Number(i) + Number(j)}.1.`);
}

export type Layout = "kohya-sgm" | "kohya-diffusers" | "peft" | "attn-procs";

/**
 * The LoRA's tensors in a layout: kohya with SGM UNet names (`lora_unet_input_blocks_4_1_…`,
 * `lora_te1_`, `lora_te2_`) or with diffusers UNet names, `.alpha` when given; diffusers/PEFT
 * (`unet.…lora_A.weight`, `text_encoder.…`, `text_encoder_2.…`); diffusers' older UNet
 * attention processors without a prefix (`…attn1.processor.to_q_lora.down.weight`), as the
 * `lora.safetensors` of Replicate's SDXL trainer holds them (UNet attention layers only).
 */
export function loraTensors(layers: readonly RandomLayer[], layout: Layout, alpha?: number): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const l of layers) {
    const down = { dtype: "F32" as const, shape: [l.rank, l.inF], data: l.down };
    const up = { dtype: "F32" as const, shape: [l.outF, l.rank], data: l.up };
    if (layout === "attn-procs") {
      const m = /^(.+)\.(to_q|to_k|to_v|to_out)(\.0)?$/.exec(l.module);
      if (l.network !== "unet" || !m) throw new Error(`${l.module}: no attention processor name`);
      out.push({ name: `${m[1]}.processor.${m[2]}_lora.down.weight`, ...down });
      out.push({ name: `${m[1]}.processor.${m[2]}_lora.up.weight`, ...up });
      continue;
    }
    if (layout === "peft") {
      out.push({ name: `${l.network}.${l.module}.lora_A.weight`, ...down });
      out.push({ name: `${l.network}.${l.module}.lora_B.weight`, ...up });
      continue;
    }
    const prefix = { unet: "lora_unet", text_encoder: "lora_te1", text_encoder_2: "lora_te2" }[l.network];
    const module = l.network === "unet" && layout === "kohya-sgm" ? sgmName(l.module) : l.module;
    const base = `${prefix}_${module.replace(/\./g, "_")}`;
    out.push({ name: `${base}.lora_down.weight`, ...down });
    out.push({ name: `${base}.lora_up.weight`, ...up });
    if (alpha !== undefined) out.push({ name: `${base}.alpha`, dtype: "F32", shape: [], data: Float32Array.of(alpha) });
  }
  return out;
}

export async function writeLora(
  file: string,
  layers: readonly RandomLayer[],
  layout: Layout,
  alpha?: number,
): Promise<string> {
  await writeSafetensors(file, loraTensors(layers, layout, alpha));
  return file;
}

/**
 * A copy of tiny-sdxl with the LoRAs fused into its weights: W' = W + Σ s · up · down, each s
 * being scale · alpha / rank (the caller's), the product in float64 and the sum rounded to
 * float32 once. Every tensor of a changed file is written as float32 (the fixture's are
 * float16, which the engine reads as float32 too).
 */
export async function fusedSdxlCopy(
  loras: readonly { layers: readonly RandomLayer[]; s: number }[],
): Promise<ModelCopy> {
  const copy = copyModel(TINY_SDXL);
  for (const network of ["unet", "text_encoder", "text_encoder_2"] as const) {
    const deltas = new Map<string, Float64Array>();
    for (const { layers, s } of loras) {
      for (const l of layers) {
        if (l.network !== network) continue;
        const delta = deltas.get(`${l.module}.weight`) ?? new Float64Array(l.outF * l.inF);
        for (let o = 0; o < l.outF; o++) {
          for (let i = 0; i < l.inF; i++) {
            let acc = 0;
            for (let r = 0; r < l.rank; r++)
              acc += (l.up[o * l.rank + r] as number) * (l.down[r * l.inF + i] as number);
            delta[o * l.inF + i] = (delta[o * l.inF + i] as number) + s * acc;
          }
        }
        deltas.set(`${l.module}.weight`, delta);
      }
    }
    if (deltas.size === 0) continue;
    const file = path.join(copy.dir, WEIGHT_FILES[network]);
    const st = await readSafetensors(file);
    const tensors: TensorToWrite[] = [];
    for (const t of st.tensors.values()) {
      const data = Float32Array.from(await readTensor(t));
      const delta = deltas.get(t.name);
      if (delta) for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + (delta[i] as number);
      tensors.push({ name: t.name, dtype: "F32", shape: t.shape, data });
    }
    await writeSafetensors(file, tensors);
  }
  return copy;
}
