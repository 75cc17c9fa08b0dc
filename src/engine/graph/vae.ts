/**
 * The decoder half of diffusers' AutoencoderKL as an ONNX graph.
 *
 * latent_sample [B, latent_channels, h, w] (already divided by scaling_factor) → sample
 * [B, out_channels, h·2^(n-1), w·2^(n-1)], the raw decoder output in about [-1, 1].
 */
import type { ConfigReader } from "./config.js";
import { Layers } from "./layers.js";
import { GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

export interface VaeConfig {
  latentChannels: number;
  outChannels: number;
  blockOut: number[];
  upTypes: string[];
  layersPerBlock: number;
  groups: number;
  scalingFactor: number;
  postQuantConv: boolean;
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
  upTypes.forEach((t, i) => {
    if (t !== "UpDecoderBlock2D")
      cfg.fail(`up_block_types[${i}]`, `unknown block type "${t}" (supported: UpDecoderBlock2D)`);
  });
  const act = cfg.str("act_fn", "silu");
  if (act !== "silu") cfg.fail("act_fn", `"${act}" is not supported (silu)`);
  cfg.expectDefault("mid_block_add_attention", true);
  cfg.expectDefault("shift_factor", null, 0);
  const c: VaeConfig = {
    latentChannels: cfg.int("latent_channels", 4),
    outChannels: cfg.int("out_channels", 3),
    blockOut,
    upTypes,
    layersPerBlock: cfg.int("layers_per_block", 1),
    groups: cfg.int("norm_num_groups", 32),
    scalingFactor: cfg.num("scaling_factor", 0.18215),
    postQuantConv: cfg.bool("use_post_quant_conv", true),
    scaleFactor: 2 ** (blockOut.length - 1),
  };
  for (const [i, ch] of blockOut.entries()) {
    if (ch % c.groups !== 0)
      cfg.fail(`block_out_channels[${i}]`, `${ch} is not divisible by norm_num_groups ${c.groups}`);
  }
  return c;
}

export function buildVaeDecoderGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readVaeConfig(cfg);
  const g = new GraphBuilder("vae_decoder");
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
