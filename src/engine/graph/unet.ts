/**
 * diffusers' UNet2DConditionModel, the SD 1.x / 2.x / SDXL family, as an ONNX graph.
 *
 * sample [B, C, h, w], timestep [1 | B] float32, encoder_hidden_states [B, L, cross_dim]
 * (and timestep_cond [B, time_cond_proj_dim] for LCM UNets; text_embeds [B, P] and time_ids
 * [B, n] for SDXL's addition_embed_type "text_time") → out_sample [B, C_out, h, w]. Every size
 * and block comes from config.json; options outside these (class embeddings, other added
 * conditions, …) are refused by name.
 */
import type { ConfigReader } from "./config.js";
import { Layers } from "./layers.js";
import { GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

const DOWN_BLOCKS = ["CrossAttnDownBlock2D", "DownBlock2D"];
const UP_BLOCKS = ["CrossAttnUpBlock2D", "UpBlock2D"];

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  blockOut: number[];
  downTypes: string[];
  upTypes: string[];
  midType: string | null;
  layersPerBlock: number[];
  heads: number[];
  transformerLayers: number[];
  crossDim: number[];
  groups: number;
  normEps: number;
  act: string;
  flipSinToCos: boolean;
  freqShift: number;
  linearProjection: boolean;
  upcastAttention: boolean;
  convInKernel: number;
  convOutKernel: number;
  downsamplePadding: number;
  timeEmbedDim: number;
  /**
   * Width of the extra condition added to the timestep embedding (LCM's guidance-scale
   * embedding), or null: with it the graph takes a `timestep_cond` [B, dim] input.
   */
  timeCondProjDim: number | null;
  /**
   * SDXL's "text_time" added embedding: each time id is embedded sinusoidally at
   * `timeIdDim` channels, concatenated after the pooled text embedding (`inputDim` in all), and
   * add_embedding's MLP of that is added to the timestep embedding. Null for other UNets.
   */
  textTime: { timeIdDim: number; inputDim: number } | null;
  /** The VAE-latent scale: 2^(number of downsamplers) must divide h and w. */
  downsamples: number;
}

export function readUNetConfig(cfg: ConfigReader): UNetConfig {
  const cls = cfg.raw["_class_name"];
  if (cls !== undefined && cls !== "UNet2DConditionModel") {
    cfg.fail("_class_name", `${JSON.stringify(cls)} is not supported (UNet2DConditionModel)`);
  }
  // Options that change the architecture beyond SD 1.x / 2.x.
  cfg.expectDefault("center_input_sample", false);
  cfg.expectDefault("class_embed_type", null);
  cfg.expectDefault("num_class_embeds", null);
  cfg.expectDefault("addition_embed_type", null, "text_time");
  cfg.expectDefault("encoder_hid_dim", null);
  cfg.expectDefault("encoder_hid_dim_type", null);
  cfg.expectDefault("time_embedding_type", "positional");
  cfg.expectDefault("timestep_post_act", null);
  cfg.expectDefault("time_embedding_act_fn", null);
  cfg.expectDefault("resnet_time_scale_shift", "default");
  cfg.expectDefault("resnet_skip_time_act", false);
  cfg.expectDefault("resnet_out_scale_factor", 1, 1.0);
  cfg.expectDefault("mid_block_scale_factor", 1, 1.0);
  cfg.expectDefault("only_cross_attention", false);
  cfg.expectDefault("dual_cross_attention", false);
  cfg.expectDefault("cross_attention_norm", null);
  cfg.expectDefault("attention_type", "default");
  cfg.expectDefault("class_embeddings_concat", false);
  cfg.expectDefault("mid_block_only_cross_attention", null, false);
  cfg.expectDefault("reverse_transformer_layers_per_block", null);
  cfg.expectDefault("num_attention_heads", null);
  cfg.expectDefault("attention_bias", false);

  const blockOut = cfg.intList("block_out_channels", [320, 640, 1280, 1280]);
  const n = blockOut.length;
  const downTypes = cfg.strList("down_block_types");
  const upTypes = cfg.strList("up_block_types");
  if (downTypes.length !== n) cfg.fail("down_block_types", `has ${downTypes.length} blocks, block_out_channels ${n}`);
  if (upTypes.length !== n) cfg.fail("up_block_types", `has ${upTypes.length} blocks, block_out_channels ${n}`);
  downTypes.forEach((t, i) => {
    if (!DOWN_BLOCKS.includes(t))
      cfg.fail(`down_block_types[${i}]`, `unknown block type "${t}" (supported: ${DOWN_BLOCKS.join(", ")})`);
  });
  upTypes.forEach((t, i) => {
    if (!UP_BLOCKS.includes(t))
      cfg.fail(`up_block_types[${i}]`, `unknown block type "${t}" (supported: ${UP_BLOCKS.join(", ")})`);
  });
  const midRaw = cfg.raw["mid_block_type"];
  const midType = midRaw === null ? null : cfg.str("mid_block_type", "UNetMidBlock2DCrossAttn");
  if (midType !== null && midType !== "UNetMidBlock2DCrossAttn") {
    cfg.fail("mid_block_type", `unknown block type "${midType}" (supported: UNetMidBlock2DCrossAttn)`);
  }

  // diffusers' naming quirk: for UNet2DConditionModel "attention_head_dim" holds the
  // number of heads per block (num_attention_heads defaults to it).
  const heads = cfg.perBlock("attention_head_dim", n, 8);
  const crossDim = cfg.perBlock("cross_attention_dim", n, 1280);
  const act = cfg.str("act_fn", "silu");
  if (act !== "silu" && act !== "swish") cfg.fail("act_fn", `"${act}" is not supported (silu)`);
  const c: UNetConfig = {
    inChannels: cfg.int("in_channels", 4),
    outChannels: cfg.int("out_channels", 4),
    blockOut,
    downTypes,
    upTypes,
    midType,
    layersPerBlock: cfg.perBlock("layers_per_block", n, 2),
    heads,
    transformerLayers: cfg.perBlock("transformer_layers_per_block", n, 1),
    crossDim,
    groups: cfg.int("norm_num_groups", 32),
    normEps: cfg.num("norm_eps", 1e-5),
    act,
    flipSinToCos: cfg.bool("flip_sin_to_cos", true),
    freqShift: cfg.num("freq_shift", 0),
    linearProjection: cfg.bool("use_linear_projection", false),
    upcastAttention: cfg.bool("upcast_attention", false),
    convInKernel: cfg.int("conv_in_kernel", 3),
    convOutKernel: cfg.int("conv_out_kernel", 3),
    downsamplePadding: cfg.int("downsample_padding", 1),
    timeEmbedDim: cfg.has("time_embedding_dim") ? cfg.int("time_embedding_dim") : (blockOut[0] as number) * 4,
    timeCondProjDim: cfg.has("time_cond_proj_dim") ? cfg.int("time_cond_proj_dim") : null,
    textTime:
      cfg.raw["addition_embed_type"] === "text_time"
        ? {
            timeIdDim: cfg.int("addition_time_embed_dim"),
            inputDim: cfg.int("projection_class_embeddings_input_dim"),
          }
        : null,
    downsamples: n - 1,
  };
  // get_timestep_embedding zero-pads an odd width; no published UNet has one, so none is built.
  if (c.textTime && c.textTime.timeIdDim % 2 !== 0) cfg.fail("addition_time_embed_dim", "must be even");
  for (const [i, ch] of blockOut.entries()) {
    if (ch % c.groups !== 0)
      cfg.fail(`block_out_channels[${i}]`, `${ch} is not divisible by norm_num_groups ${c.groups}`);
    if (ch % (heads[i] as number) !== 0)
      cfg.fail("attention_head_dim", `${heads[i]} heads do not divide ${ch} channels`);
  }
  return c;
}

/**
 * Sinusoidal frequencies of diffusers' get_timestep_embedding, computed in float32 as torch
 * does: exp(-ln(10000)·k / (half − shift)).
 */
export function timestepFrequencies(dim: number, shift: number): number[] {
  const half = Math.floor(dim / 2);
  const lnMax = Math.fround(-Math.log(10000));
  const out: number[] = [];
  for (let k = 0; k < half; k++) {
    const exponent = Math.fround(Math.fround(lnMax * k) / Math.fround(half - shift));
    out.push(Math.fround(Math.exp(exponent)));
  }
  return out;
}

/**
 * The guidance-scale embedding of LCM UNets (diffusers' `get_guidance_scale_embedding`, after
 * VDM, Kingma et al. 2021, and the LCM paper's w-conditioning): w' = 1000·w, then
 * [sin(w'·f_k), cos(w'·f_k)] with f_k = exp(−k·ln(10000) / (half − 1)), zero-padded to an odd
 * `dim`, in float32 as torch computes it. The pipelines pass w = guidance_scale − 1.
 */
export function guidanceScaleEmbedding(w: number, dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  if (half < 2) throw new RangeError(`a guidance embedding needs at least 4 values, got ${dim}`);
  const scaled = Math.fround(Math.fround(w) * 1000);
  const step = Math.fround(Math.fround(Math.log(10000)) / (half - 1));
  const out = new Float32Array(dim);
  for (let k = 0; k < half; k++) {
    const angle = Math.fround(scaled * Math.fround(Math.exp(Math.fround(k * -step))));
    out[k] = Math.sin(angle);
    out[half + k] = Math.cos(angle);
  }
  return out;
}

export function buildUNetGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readUNetConfig(cfg);
  const g = new GraphBuilder("unet");
  const nn = new Layers(g, weights);
  const temb = c.timeEmbedDim;

  const sample = g.input("sample", "float32", ["batch", c.inChannels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["timestep_batch"]);
  const context = g.input("encoder_hidden_states", "float32", ["batch", "sequence", c.crossDim[0] as number]);

  // Time embedding: sinusoidal projection, then TimestepEmbedding (linear, act, linear).
  const base = c.blockOut[0] as number;
  const freqs = g.const("float32", timestepFrequencies(base, c.freqShift), [1, Math.floor(base / 2)]);
  const angles = g.op("Mul", [g.op("Unsqueeze", [timestep, g.ints([1])]), freqs]);
  const sin = g.op("Sin", [angles]);
  const cos = g.op("Cos", [angles]);
  let emb = g.op("Concat", c.flipSinToCos ? [cos, sin] : [sin, cos], { axis: 1 });
  if (c.timeCondProjDim !== null) {
    // diffusers' TimestepEmbedding with cond_proj_dim: sample + cond_proj(condition) (no bias)
    // before linear_1; the condition is LCM's guidance-scale embedding.
    const cond = g.input("timestep_cond", "float32", ["batch", c.timeCondProjDim]);
    emb = g.op("Add", [emb, nn.linear(cond, "time_embedding.cond_proj", c.timeCondProjDim, base, false)]);
  }
  emb = nn.linear(emb, "time_embedding.linear_1", base, temb);
  emb = nn.linear(nn.silu(emb), "time_embedding.linear_2", temb, temb);
  if (c.textTime !== null) {
    // SDXL: emb += add_embedding(cat([text_embeds, flatten(time_proj(time_ids))])), time_proj
    // being the same sinusoidal embedding as the timestep's, at addition_time_embed_dim.
    const { timeIdDim, inputDim } = c.textTime;
    const textEmbeds = g.input("text_embeds", "float32", ["batch", "text_embeds_dim"]);
    const timeIds = g.input("time_ids", "float32", ["batch", "time_ids_count"]);
    const idFreqs = g.const("float32", timestepFrequencies(timeIdDim, c.freqShift), [1, 1, Math.floor(timeIdDim / 2)]);
    const idAngles = g.op("Mul", [g.op("Unsqueeze", [timeIds, g.ints([2])]), idFreqs]);
    const idSin = g.op("Sin", [idAngles]);
    const idCos = g.op("Cos", [idAngles]);
    const idEmb = g.op("Concat", c.flipSinToCos ? [idCos, idSin] : [idSin, idCos], { axis: 2 });
    const flat = g.op("Reshape", [idEmb, g.ints([0, -1])]);
    let added = g.op("Concat", [textEmbeds, flat], { axis: 1 });
    added = nn.linear(added, "add_embedding.linear_1", inputDim, temb);
    added = nn.linear(nn.silu(added), "add_embedding.linear_2", temb, temb);
    emb = g.op("Add", [emb, added]);
  }
  // Every ResNet applies its own projection to act(emb); compute act(emb) once.
  const embAct = nn.silu(emb);

  const resnet = (x: string, prefix: string, cin: number, cout: number): string =>
    g.scope(prefix, () => {
      let h = nn.silu(nn.groupNorm(x, `${prefix}.norm1`, cin, c.groups, c.normEps));
      h = nn.conv2d(h, `${prefix}.conv1`, cin, cout, 3);
      const t = nn.linear(embAct, `${prefix}.time_emb_proj`, temb, cout);
      h = g.op("Add", [h, g.op("Unsqueeze", [t, g.ints([2, 3])])]);
      h = nn.silu(nn.groupNorm(h, `${prefix}.norm2`, cout, c.groups, c.normEps));
      h = nn.conv2d(h, `${prefix}.conv2`, cout, cout, 3);
      const skip = cin === cout ? x : nn.conv2d(x, `${prefix}.conv_shortcut`, cin, cout, 1);
      return g.op("Add", [skip, h]);
    });

  const crossAttention = (x: string, prefix: string, dim: number, heads: number, ctx: string, ctxDim: number) => {
    const q = nn.linear(x, `${prefix}.to_q`, dim, dim, false);
    const k = nn.linear(ctx, `${prefix}.to_k`, ctxDim, dim, false);
    const v = nn.linear(ctx, `${prefix}.to_v`, ctxDim, dim, false);
    // upcast_attention only changes the dtype of the scores; this graph computes in float32.
    return nn.linear(nn.attention(q, k, v, heads, dim / heads), `${prefix}.to_out.0`, dim, dim);
  };

  const transformer = (x: string, prefix: string, ch: number, block: number): string =>
    g.scope(prefix, () => {
      const heads = c.heads[block] as number;
      const ctxDim = c.crossDim[block] as number;
      let h = nn.groupNorm(x, `${prefix}.norm`, ch, c.groups, 1e-6);
      if (c.linearProjection) {
        h = nn.linear(nn.toTokens(h, ch), `${prefix}.proj_in`, ch, ch);
      } else {
        const conv = nn.toTokens(nn.conv2d(h, `${prefix}.proj_in`, ch, ch, 1, { lowRank: false }), ch);
        // A 1×1 conv is a linear over channels: a LoRA on it applies to the tokens.
        h = nn.hasLowRank(`${prefix}.proj_in`)
          ? nn.lowRank(conv, nn.toTokens(h, ch), `${prefix}.proj_in`, ch, ch)
          : conv;
      }
      for (let i = 0; i < (c.transformerLayers[block] as number); i++) {
        const p = `${prefix}.transformer_blocks.${i}`;
        let n = nn.layerNorm(h, `${p}.norm1`, ch, 1e-5);
        h = g.op("Add", [crossAttention(n, `${p}.attn1`, ch, heads, n, ch), h]);
        n = nn.layerNorm(h, `${p}.norm2`, ch, 1e-5);
        h = g.op("Add", [crossAttention(n, `${p}.attn2`, ch, heads, context, ctxDim), h]);
        n = nn.layerNorm(h, `${p}.norm3`, ch, 1e-5);
        // GEGLU feed-forward: proj to 2·inner, value ⊙ gelu(gate), back to ch.
        const inner = ch * 4;
        const proj = nn.linear(n, `${p}.ff.net.0.proj`, ch, inner * 2);
        const [value, gate] = g.opN("Split", [proj, g.ints([inner, inner])], { axis: -1 }, { outputs: 2 });
        const ff = nn.linear(g.op("Mul", [value as string, nn.gelu(gate as string)]), `${p}.ff.net.2`, inner, ch);
        h = g.op("Add", [ff, h]);
      }
      let out: string;
      if (c.linearProjection) {
        out = nn.fromTokens(nn.linear(h, `${prefix}.proj_out`, ch, ch), x);
      } else if (nn.hasLowRank(`${prefix}.proj_out`)) {
        const conv = nn.toTokens(
          nn.conv2d(nn.fromTokens(h, x), `${prefix}.proj_out`, ch, ch, 1, { lowRank: false }),
          ch,
        );
        out = nn.fromTokens(nn.lowRank(conv, h, `${prefix}.proj_out`, ch, ch), x);
      } else {
        out = nn.conv2d(nn.fromTokens(h, x), `${prefix}.proj_out`, ch, ch, 1);
      }
      return g.op("Add", [out, x]);
    });

  let x = nn.conv2d(sample, "conv_in", c.inChannels, base, c.convInKernel);
  const skips: { value: string; channels: number }[] = [{ value: x, channels: base }];

  c.downTypes.forEach((type, i) => {
    const cout = c.blockOut[i] as number;
    let cin = i === 0 ? base : (c.blockOut[i - 1] as number);
    for (let j = 0; j < (c.layersPerBlock[i] as number); j++) {
      x = resnet(x, `down_blocks.${i}.resnets.${j}`, cin, cout);
      if (type === "CrossAttnDownBlock2D") x = transformer(x, `down_blocks.${i}.attentions.${j}`, cout, i);
      skips.push({ value: x, channels: cout });
      cin = cout;
    }
    if (i < c.downTypes.length - 1) {
      x = nn.conv2d(x, `down_blocks.${i}.downsamplers.0.conv`, cout, cout, 3, {
        stride: 2,
        padding: c.downsamplePadding,
      });
      skips.push({ value: x, channels: cout });
    }
  });

  const last = c.blockOut.length - 1;
  const top = c.blockOut[last] as number;
  if (c.midType !== null) {
    x = resnet(x, "mid_block.resnets.0", top, top);
    x = transformer(x, "mid_block.attentions.0", top, last);
    x = resnet(x, "mid_block.resnets.1", top, top);
  }

  // Up blocks mirror the down path: block i of up_blocks works at block_out[n-1-i].
  const revOut = [...c.blockOut].reverse();
  const revLayers = [...c.layersPerBlock].reverse();
  let prevOut = top;
  c.upTypes.forEach((type, i) => {
    const cout = revOut[i] as number;
    const block = last - i;
    for (let j = 0; j <= (revLayers[i] as number); j++) {
      const skip = skips.pop();
      if (!skip) cfg.fail("up_block_types", "the up path needs more skip connections than the down path made");
      x = g.op("Concat", [x, skip.value], { axis: 1 });
      x = resnet(x, `up_blocks.${i}.resnets.${j}`, (j === 0 ? prevOut : cout) + skip.channels, cout);
      if (type === "CrossAttnUpBlock2D") x = transformer(x, `up_blocks.${i}.attentions.${j}`, cout, block);
    }
    if (i < c.upTypes.length - 1) {
      // Nearest ×2, but to the exact size of the next skip so odd sizes line up (diffusers'
      // forward_upsample_size).
      const next = skips[skips.length - 1] as { value: string };
      const size = g.op(
        "Concat",
        [
          g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([2])]),
          g.op("Slice", [g.op("Shape", [next.value]), g.ints([2]), g.ints([4])]),
        ],
        { axis: 0 },
      );
      x = g.op("Resize", [x, "", "", size], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      });
      x = nn.conv2d(x, `up_blocks.${i}.upsamplers.0.conv`, cout, cout, 3);
    }
    prevOut = cout;
  });

  x = nn.silu(nn.groupNorm(x, "conv_norm_out", base, c.groups, c.normEps));
  x = nn.conv2d(x, "conv_out", base, c.outChannels, c.convOutKernel);
  g.output(x, "out_sample", "float32", ["batch", c.outChannels, "height", "width"]);
  return g;
}
