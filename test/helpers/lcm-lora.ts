/**
 * LoRA files shaped like the published LCM-LoRAs (latent-consistency/lcm-lora-sdv1-5), made on
 * the spot for a model's UNet with deterministic factors, and the same deltas fused into a copy
 * of the model by hand, to compare a pipeline applying the file against plain weights.
 *
 * The layers are those diffusers' LCM-LoRA distillation scripts (train_lcm_distill_lora_*.py)
 * give PEFT as target_modules — a module is trained when its name is the target or ends with
 * "." + target — saved in kohya's layout with diffusers module names:
 * `lora_unet_<path, dots as underscores>.lora_down.weight` [r, in] (a k×k convolution: [r, in, k, k]),
 * `.lora_up.weight` [out, r] ([out, r, 1, 1] for convolutions) and `.alpha`.
 */
import path from "node:path";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";

export const LCM_LORA_TARGETS = [
  "to_q",
  "to_k",
  "to_v",
  "to_out.0",
  "proj_in",
  "proj_out",
  "ff.net.0.proj",
  "ff.net.2",
  "conv1",
  "conv2",
  "conv_shortcut",
  "downsamplers.0.conv",
  "upsamplers.0.conv",
  "time_emb_proj",
] as const;

/** PEFT's rule: the module's full name is a target, or ends with "." + a target. */
export function isLcmLoraLayer(module: string): boolean {
  return LCM_LORA_TARGETS.some((t) => module === t || module.endsWith(`.${t}`));
}

export interface LoraRecipe {
  /** Module names of the UNet (diffusers names) to give factors to. */
  layers: readonly string[];
  rank: number;
  alpha: number;
  /** The scale the fused copy is made for. */
  scale: number;
  /** Varies the factors between files. */
  seed?: number;
  /**
   * "kohya" (default): as above. "peft": diffusers' own saved layout, `unet.<path>.lora_A.weight`
   * and `.lora_B.weight` with alpha / rank folded into lora_B and no alpha.
   */
  layout?: "kohya" | "peft";
}

export interface WrittenLora {
  file: string;
  /** The layers written, with their weight shapes. */
  layers: [string, readonly number[]][];
  /** W' = W + scale · alpha/rank · up · down per layer (`<layer>.weight`), float64 then rounded once. */
  deltas: Map<string, Float32Array>;
}

const unetWeights = (modelDir: string) => path.join(modelDir, "unet", "diffusion_pytorch_model.safetensors");

/** The UNet's modules that hold a 2-D or 4-D weight (what a LoRA could change), with their shapes. */
export async function unetLayers(modelDir: string): Promise<Map<string, readonly number[]>> {
  const st = await readSafetensors(unetWeights(modelDir));
  const out = new Map<string, readonly number[]>();
  for (const [name, t] of st.tensors) {
    if (name.endsWith(".weight") && (t.shape.length === 2 || t.shape.length === 4)) out.set(name.slice(0, -7), t.shape);
  }
  return out;
}

/** Writes a kohya-layout LoRA file for `recipe.layers` of the model's UNet. */
export async function writeUnetLora(modelDir: string, file: string, recipe: LoraRecipe): Promise<WrittenLora> {
  const shapes = await unetLayers(modelDir);
  const { rank, alpha, scale } = recipe;
  const seed = recipe.seed ?? 0;
  const value = (i: number, s: number) => Math.sin(i * 0.731 + s) * 0.2;
  const tensors: { name: string; dtype: "F32"; shape: number[]; data: Float32Array }[] = [];
  const deltas = new Map<string, Float32Array>();
  const layers: [string, readonly number[]][] = [];
  recipe.layers.forEach((layer, n) => {
    const shape = shapes.get(layer);
    if (!shape) throw new Error(`the model has no layer ${layer}`);
    layers.push([layer, shape]);
    const [out, inF, kh = 1, kw = 1] = shape as [number, number, number?, number?];
    const cols = inF * kh * kw;
    const down = Float32Array.from({ length: rank * cols }, (_, i) => value(i, seed + n));
    const up = Float32Array.from({ length: out * rank }, (_, i) => value(i, seed + n + 0.5));
    const conv = shape.length === 4;
    const downShape = conv ? [rank, inF, kh, kw] : [rank, inF];
    const upShape = conv ? [out, rank, 1, 1] : [out, rank];
    if (recipe.layout === "peft") {
      const folded = up.map((v) => (v * alpha) / rank);
      tensors.push({ name: `unet.${layer}.lora_A.weight`, dtype: "F32", shape: downShape, data: down });
      tensors.push({ name: `unet.${layer}.lora_B.weight`, dtype: "F32", shape: upShape, data: folded });
    } else {
      const base = `lora_unet_${layer.replace(/\./g, "_")}`;
      tensors.push({ name: `${base}.lora_down.weight`, dtype: "F32", shape: downShape, data: down });
      tensors.push({ name: `${base}.lora_up.weight`, dtype: "F32", shape: upShape, data: up });
      tensors.push({ name: `${base}.alpha`, dtype: "F32", shape: [], data: Float32Array.of(alpha) });
    }
    // A k×k conv to r channels then a 1×1 conv back is one k×k conv with weight up · down
    // (the down factor's columns are its in × k × k taps).
    const delta = new Float32Array(out * cols);
    for (let o = 0; o < out; o++) {
      for (let c = 0; c < cols; c++) {
        let acc = 0;
        for (let r = 0; r < rank; r++) acc += (up[o * rank + r] as number) * (down[r * cols + c] as number);
        delta[o * cols + c] = ((scale * alpha) / rank) * acc;
      }
    }
    deltas.set(`${layer}.weight`, delta);
  });
  await writeSafetensors(file, tensors);
  return { file, layers, deltas };
}

/** Adds the deltas to the UNet weights of `modelDir` (a writable copy), in place. */
export async function fuseIntoUnet(modelDir: string, deltas: ReadonlyMap<string, Float32Array>): Promise<void> {
  const weights = unetWeights(modelDir);
  const st = await readSafetensors(weights);
  const out = [];
  for (const t of st.tensors.values()) {
    const data = Float32Array.from(await readTensor(t));
    const delta = deltas.get(t.name);
    if (delta) for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + (delta[i] as number);
    out.push({ name: t.name, dtype: "F32" as const, shape: [...t.shape], data });
  }
  await writeSafetensors(weights, out);
}

/** The layers of the model's UNet that an LCM-LoRA changes. */
export async function lcmLoraLayers(modelDir: string): Promise<string[]> {
  return [...(await unetLayers(modelDir)).keys()].filter(isLcmLoraLayer).sort();
}
