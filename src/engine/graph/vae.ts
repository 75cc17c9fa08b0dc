/**
 * diffusers' AutoencoderKL as two ONNX graphs.
 *
 * Decoder: latent_sample [B, latent_channels, h, w] (already divided by scaling_factor) → sample
 * [B, out_channels, h·2^(n-1), w·2^(n-1)], the raw decoder output in about [-1, 1].
 *
 * Encoder: sample [B, in_channels, H, W] in [-1, 1] → the latent distribution's mean and std
 * [B, latent_channels, H/2^(n-1), W/2^(n-1)] (not yet multiplied by scaling_factor); the caller
 * draws the sample mean + std · ε from its own generator, as diffusers does.
 */
import type { ConfigReader } from "./config.js";
import { Layers } from "./layers.js";
import { GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

export interface VaeConfig {
  inChannels: number;
  latentChannels: number;
  outChannels: number;
  blockOut: number[];
  upTypes: string[];
  layersPerBlock: number;
  groups: number;
  scalingFactor: number;
  postQuantConv: boolean;
  quantConv: boolean;
  /** 2^(number of upsamplers): latents → pixels. */
  scaleFactor: number;
}

export function readVaeConfig(cfg: ConfigReader): VaeConfig {
  const cls = cfg.raw["_class_name"];
  if (cls !== undefined && cls !== "AutoencoderKL")
    cfg.fail("_class_name", `${JSON.stringify(cls)} is not supported (AutoencoderKL)`);
  const blockOut = cfg.intList("block_out_channels", [64]);
  const upTypes = cfg.strList("up_block_types", ["UpDecoderBlock2D"]);
  if (upTypes.length !== blockOut.length) {
    cfg.fail("up_block_types", `has ${upTypes.length} blocks, block_out_channels ${blockOut.length}`);
  }
  const downTypes = cfg.strList("down_block_types", ["DownEncoderBlock2D"]);
  if (downTypes.length !== blockOut.length) {
    cfg.fail("down_block_types", `has ${downTypes.length} blocks, block_out_channels ${blockOut.length}`);
  }
  downTypes.forEach((t, i) => {
    if (t !== "DownEncoderBlock2D")
      cfg.fail(`down_block_types[${i}]`, `unknown block type "${t}" (supported: DownEncoderBlock2D)`);
  });
  upTypes.forEach((t, i) => {
    if (t !== "UpDecoderBlock2D")
      cfg.fail(`up_block_types[${i}]`, `unknown block type "${t}" (supported: UpDecoderBlock2D)`);
  });
  const act = cfg.str("act_fn", "silu");
  if (act !== "silu") cfg.fail("act_fn", `"${act}" is not supported (silu)`);
  cfg.expectDefault("mid_block_add_attention", true);
  cfg.expectDefault("shift_factor", null, 0);
  const c: VaeConfig = {
    inChannels: cfg.int("in_channels", 3),
    latentChannels: cfg.int("latent_channels", 4),
    outChannels: cfg.int("out_channels", 3),
    blockOut,
    upTypes,
    layersPerBlock: cfg.int("layers_per_block", 1),
    groups: cfg.int("norm_num_groups", 32),
    scalingFactor: cfg.num("scaling_factor", 0.18215),
    postQuantConv: cfg.bool("use_post_quant_conv", true),
    quantConv: cfg.bool("use_quant_conv", true),
    scaleFactor: 2 ** (blockOut.length - 1),
  };
  for (const [i, ch] of blockOut.entries()) {
    if (ch % c.groups !== 0)
      cfg.fail(`block_out_channels[${i}]`, `${ch} is not divisible by norm_num_groups ${c.groups}`);
  }
  return c;
}

/** The ResNet and mid-block attention shared by encoder and decoder (norm eps 1e-6, as diffusers). */
function vaeBlocks(g: GraphBuilder, weights: WeightBinder, c: VaeConfig) {
  const nn = new Layers(g, weights);
  const eps = 1e-6;
  const resnet = (x: string, prefix: string, cin: number, cout: number): string =>
    g.scope(prefix, () => {
      let h = nn.silu(nn.groupNorm(x, `${prefix}.norm1`, cin, c.groups, eps));
      h = nn.conv2d(h, `${prefix}.conv1`, cin, cout, 3);
      h = nn.silu(nn.groupNorm(h, `${prefix}.norm2`, cout, c.groups, eps));
      h = nn.conv2d(h, `${prefix}.conv2`, cout, cout, 3);
      const skip = cin === cout ? x : nn.conv2d(x, `${prefix}.conv_shortcut`, cin, cout, 1);
      return g.op("Add", [skip, h]);
    });

  // Checkpoints saved before diffusers 0.14 name the attention weights query/key/value/proj_attn.
  const attnName = (prefix: string, modern: string, legacy: string) =>
    weights.has(`${prefix}.${modern}.weight`) || !weights.has(`${prefix}.${legacy}.weight`)
      ? `${prefix}.${modern}`
      : `${prefix}.${legacy}`;

  const attention = (x: string, prefix: string, ch: number): string =>
    g.scope(prefix, () => {
      const h = nn.toTokens(nn.groupNorm(x, `${prefix}.group_norm`, ch, c.groups, eps), ch);
      const q = nn.linear(h, attnName(prefix, "to_q", "query"), ch, ch);
      const k = nn.linear(h, attnName(prefix, "to_k", "key"), ch, ch);
      const v = nn.linear(h, attnName(prefix, "to_v", "value"), ch, ch);
      const o = nn.linear(nn.attention(q, k, v, 1, ch), attnName(prefix, "to_out.0", "proj_attn"), ch, ch);
      return g.op("Add", [nn.fromTokens(o, x), x]);
    });

  return { nn, eps, resnet, attention };
}

export function buildVaeDecoderGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readVaeConfig(cfg);
  const g = new GraphBuilder("vae_decoder");
  const { nn, eps, resnet, attention } = vaeBlocks(g, weights, c);

  let x = g.input("latent_sample", "float32", ["batch", c.latentChannels, "height", "width"]);
  if (c.postQuantConv) x = nn.conv2d(x, "post_quant_conv", c.latentChannels, c.latentChannels, 1);
  const top = c.blockOut[c.blockOut.length - 1] as number;
  x = nn.conv2d(x, "decoder.conv_in", c.latentChannels, top, 3);

  x = resnet(x, "decoder.mid_block.resnets.0", top, top);
  x = attention(x, "decoder.mid_block.attentions.0", top);
  x = resnet(x, "decoder.mid_block.resnets.1", top, top);

  const rev = [...c.blockOut].reverse();
  let cin = top;
  rev.forEach((cout, i) => {
    for (let j = 0; j <= c.layersPerBlock; j++) {
      x = resnet(x, `decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? cin : cout, cout);
    }
    if (i < rev.length - 1) {
      x = g.op("Resize", [x, "", g.const("float32", [1, 1, 2, 2])], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      });
      x = nn.conv2d(x, `decoder.up_blocks.${i}.upsamplers.0.conv`, cout, cout, 3);
    }
    cin = cout;
  });

  const base = c.blockOut[0] as number;
  x = nn.silu(nn.groupNorm(x, "decoder.conv_norm_out", base, c.groups, eps));
  x = nn.conv2d(x, "decoder.conv_out", base, c.outChannels, 3);
  g.output(x, "sample", "float32", ["batch", c.outChannels, "pixel_height", "pixel_width"]);
  return g;
}

export function buildVaeEncoderGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readVaeConfig(cfg);
  const g = new GraphBuilder("vae_encoder");
  const { nn, eps, resnet, attention } = vaeBlocks(g, weights, c);

  let x = g.input("sample", "float32", ["batch", c.inChannels, "pixel_height", "pixel_width"]);
  const base = c.blockOut[0] as number;
  x = nn.conv2d(x, "encoder.conv_in", c.inChannels, base, 3);
  let cin = base;
  c.blockOut.forEach((cout, i) => {
    for (let j = 0; j < c.layersPerBlock; j++) {
      x = resnet(x, `encoder.down_blocks.${i}.resnets.${j}`, j === 0 ? cin : cout, cout);
    }
    if (i < c.blockOut.length - 1) {
      // Downsample2D with padding 0: zero-pad one row below and one column right, then a 3×3
      // stride-2 conv (the layout of the original LDM autoencoder).
      const prefix = `encoder.down_blocks.${i}.downsamplers.0.conv`;
      x = g.op("Conv", [x, nn.param(`${prefix}.weight`, [cout, cout, 3, 3]), nn.param(`${prefix}.bias`, [cout])], {
        kernel_shape: [3, 3],
        pads: [0, 0, 1, 1],
        strides: [2, 2],
      });
    }
    cin = cout;
  });

  const top = c.blockOut[c.blockOut.length - 1] as number;
  x = resnet(x, "encoder.mid_block.resnets.0", top, top);
  x = attention(x, "encoder.mid_block.attentions.0", top);
  x = resnet(x, "encoder.mid_block.resnets.1", top, top);
  x = nn.silu(nn.groupNorm(x, "encoder.conv_norm_out", top, c.groups, eps));
  // double_z: the conv gives mean and log-variance side by side.
  const moments = 2 * c.latentChannels;
  x = nn.conv2d(x, "encoder.conv_out", top, moments, 3);
  if (c.quantConv) x = nn.conv2d(x, "quant_conv", moments, moments, 1);

  const L = c.latentChannels;
  const mean = g.op("Slice", [x, g.ints([0]), g.ints([L]), g.ints([1])]);
  const logvar = g.op("Slice", [x, g.ints([L]), g.ints([2 * L]), g.ints([1])]);
  // DiagonalGaussianDistribution: logvar clamped to [-30, 20], std = exp(logvar / 2).
  const clamped = g.op("Clip", [logvar, g.scalar(-30), g.scalar(20)]);
  const std = g.op("Exp", [g.op("Mul", [clamped, g.scalar(0.5)])]);
  const dims = ["batch", L, "height", "width"] as const;
  g.output(mean, "mean", "float32", dims);
  g.output(std, "std", "float32", dims);
  return g;
}
