/**
 * tiny-random: a Stable Diffusion pipeline with SD 1.5's layout at tiny widths and random
 * weights, made on the spot (deterministic, nothing downloaded), so the whole path can be
 * tried offline in seconds. Same block types and attention placement as SD 1.5, VAE scale
 * factor 8; its tokenizer is CLIP's byte-level BPE without merges (one token per
 * character), which keeps the vocabulary small.
 */
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { writeRandomComponent } from "./weights/random-weights.js";

export const TINY_RANDOM = "tiny-random";
// 2: the VAE has its encoder (image inputs).
const VERSION = 2;
const SEED = 20240601;

/** CLIP's reversible byte → printable-character table (as in its simple_tokenizer). */
function byteCharacters(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Map<number, string>(printable.map((b) => [b, String.fromCodePoint(b)]));
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!chars.has(b)) chars.set(b, String.fromCodePoint(256 + extra++));
  return [...printable, ...[...chars.keys()].filter((b) => !printable.includes(b))].map((b) => chars.get(b) as string);
}

function tokenizerFiles(): Record<string, string> {
  const chars = byteCharacters();
  const vocab: Record<string, number> = {};
  for (const c of chars) vocab[c] = Object.keys(vocab).length;
  for (const c of chars) vocab[`${c}</w>`] = Object.keys(vocab).length;
  vocab["<|startoftext|>"] = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = Object.keys(vocab).length;
  const special = {
    bos_token: "<|startoftext|>",
    eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    pad_token: "<|endoftext|>",
  };
  return {
    "vocab.json": JSON.stringify(vocab),
    "merges.txt": "#version: 0.2\n",
    "special_tokens_map.json": JSON.stringify(special, null, 2),
    "tokenizer_config.json": JSON.stringify(
      { tokenizer_class: "CLIPTokenizer", model_max_length: 77, do_lower_case: true, errors: "replace", ...special },
      null,
      2,
    ),
  };
}

export const TINY_RANDOM_CONFIGS = {
  model_index: {
    _class_name: "StableDiffusionPipeline",
    scheduler: ["diffusers", "PNDMScheduler"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
  },
  // SD 1.5's scheduler file.
  scheduler: {
    _class_name: "PNDMScheduler",
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    trained_betas: null,
    clip_sample: false,
  },
  text_encoder: {
    architectures: ["CLIPTextModel"],
    hidden_act: "quick_gelu",
    hidden_size: 32,
    intermediate_size: 64,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    num_attention_heads: 2,
    num_hidden_layers: 2,
    vocab_size: 514,
    model_type: "clip_text_model",
  },
  unet: {
    _class_name: "UNet2DConditionModel",
    act_fn: "silu",
    attention_head_dim: 1,
    block_out_channels: [16, 16, 32, 32],
    center_input_sample: false,
    cross_attention_dim: 32,
    down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: 4,
    layers_per_block: 1,
    mid_block_scale_factor: 1,
    norm_eps: 1e-5,
    norm_num_groups: 8,
    out_channels: 4,
    sample_size: 64,
    up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  },
  vae: {
    _class_name: "AutoencoderKL",
    act_fn: "silu",
    block_out_channels: [8, 8, 16, 16],
    down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    in_channels: 3,
    latent_channels: 4,
    layers_per_block: 1,
    norm_num_groups: 8,
    out_channels: 3,
    sample_size: 512,
    scaling_factor: 0.18215,
    up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  },
} as const;

/**
 * Writes the tiny-random model folder into the cache (once; later calls find it there) and
 * returns its path. Built in a private folder and renamed into place, so concurrent callers
 * never see half a model.
 */
export async function ensureTinyRandomModel(cacheDir: string): Promise<string> {
  const dir = path.join(cacheDir, `tiny-random-v${VERSION}`);
  if ((await stat(path.join(dir, "model_index.json")).catch(() => undefined))?.isFile()) return dir;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  const c = TINY_RANDOM_CONFIGS;
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  try {
    await mkdir(path.join(tmp, "scheduler"), { recursive: true });
    await mkdir(path.join(tmp, "tokenizer"), { recursive: true });
    await writeFile(path.join(tmp, "scheduler", "scheduler_config.json"), json(c.scheduler));
    for (const [name, text] of Object.entries(tokenizerFiles()))
      await writeFile(path.join(tmp, "tokenizer", name), text);
    await writeRandomComponent(path.join(tmp, "text_encoder"), "text_encoder", c.text_encoder, { seed: SEED });
    await writeRandomComponent(path.join(tmp, "unet"), "unet", c.unet, { seed: SEED + 1 });
    await writeRandomComponent(path.join(tmp, "vae"), "vae", c.vae, { seed: SEED + 2 });
    // model_index.json last: its presence marks a complete folder.
    await writeFile(path.join(tmp, "model_index.json"), json(c.model_index));
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Another process finished first; its copy is identical.
      if (err.code !== "ENOTEMPTY" && err.code !== "EEXIST") throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}
