/**
 * diffusers' AutoencoderTiny (TAESD, Ollin Boer Bohan's tiny autoencoder for Stable Diffusion
 * latents) as two ONNX graphs, encoder and decoder, from its config.json.
 *
 * Both are plain stacks of 3×3 convolutions (diffusers' EncoderTiny / DecoderTiny, weights under
 * `encoder.layers.N` / `decoder.layers.N`, N counting every module of the nn.Sequential, parameterless
 * ones included) around residual blocks relu(conv(relu(conv(relu(conv(x))))) + skip(x)).
 * TAESD latents are the SD VAE's latents already multiplied by its scaling factor, which is why
 * TAESD's own scaling_factor is 1.0.
 *
 * encoder: sample [B, 3, H, W] in [-1, 1] → latents [B, C, H/f, W/f], from (x + 1) / 2;
 * decoder: latents → sample [B, 3, H, W] ≈ [-1, 1], decoder(tanh(z / 3) · 3) · 2 − 1, not clamped.
 */
import type { ConfigReader } from "./config.js";
import { Layers } from "./layers.js";
import { GraphBuilder } from "./onnx.js";
import type { WeightBinder } from "./weights.js";

export interface TinyAutoencoderConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  encoderBlockOut: number[];
  decoderBlockOut: number[];
  encoderBlocks: number[];
  decoderBlocks: number[];
  act: "relu" | "silu";
  upsampleFactor: number;
  /** Latents are multiplied by this after encoding, divided by it before decoding (1.0 for TAESD). */
  scalingFactor: number;
  /** Pixels per latent along each side: 2^(blocks − 1). */
  scaleFactor: number;
}

export function isTinyAutoencoderConfig(raw: Readonly<Record<string, unknown>>): boolean {
  return raw["_class_name"] === "AutoencoderTiny";
}

export function readTinyAutoencoderConfig(cfg: ConfigReader): TinyAutoencoderConfig {
  const cls = cfg.raw["_class_name"];
  if (cls !== "AutoencoderTiny") cfg.fail("_class_name", `${JSON.stringify(cls)} is not AutoencoderTiny`);
  const encoderBlockOut = cfg.intList("encoder_block_out_channels", [64, 64, 64, 64]);
  const decoderBlockOut = cfg.intList("decoder_block_out_channels", [64, 64, 64, 64]);
  const encoderBlocks = cfg.intList("num_encoder_blocks", [1, 3, 3, 3]);
  const decoderBlocks = cfg.intList("num_decoder_blocks", [3, 3, 3, 1]);
  if (encoderBlocks.length !== encoderBlockOut.length) {
    cfg.fail(
      "num_encoder_blocks",
      `has ${encoderBlocks.length} entries, encoder_block_out_channels ${encoderBlockOut.length}`,
    );
  }
  if (decoderBlocks.length !== decoderBlockOut.length) {
    cfg.fail(
      "num_decoder_blocks",
      `has ${decoderBlocks.length} entries, decoder_block_out_channels ${decoderBlockOut.length}`,
    );
  }
  if (encoderBlocks.length !== decoderBlocks.length) {
    cfg.fail("num_decoder_blocks", "the encoder and decoder must have as many blocks (the same latent scale)");
  }
  const act = cfg.str("act_fn", "relu");
  if (act !== "relu" && act !== "silu") cfg.fail("act_fn", `"${act}" is not supported (relu, silu)`);
  const upsample = cfg.str("upsample_fn", "nearest");
  if (upsample !== "nearest") cfg.fail("upsample_fn", `"${upsample}" is not supported (nearest)`);
  const upsampleFactor = cfg.int("upsampling_scaling_factor", 2);
  if (upsampleFactor !== 2) cfg.fail("upsampling_scaling_factor", `${upsampleFactor} is not supported (2)`);
  cfg.expectDefault("shift_factor", null, 0);
  return {
    inChannels: cfg.int("in_channels", 3),
    outChannels: cfg.int("out_channels", 3),
    latentChannels: cfg.int("latent_channels", 4),
    encoderBlockOut,
    decoderBlockOut,
    encoderBlocks,
    decoderBlocks,
    act,
    upsampleFactor,
    scalingFactor: cfg.num("scaling_factor", 1.0),
    // The encoder halves the size at each block after the first (stride-2 convs).
    scaleFactor: 2 ** (encoderBlocks.length - 1),
  };
}

function tinyLayers(g: GraphBuilder, weights: WeightBinder, c: TinyAutoencoderConfig) {
  const nn = new Layers(g, weights);
  const relu = (x: string) => g.op("Relu", [x]);
  const act = (x: string) => (c.act === "relu" ? relu(x) : nn.silu(x));
  /** Conv2d 3×3, padding 1, with or without bias. */
  const conv = (
    x: string,
    prefix: string,
    cin: number,
    cout: number,
    opts: { stride?: number; bias?: boolean } = {},
  ) => {
    const k = 3;
    const weight = nn.param(`${prefix}.weight`, [cout, cin, k, k]);
    const inputs = opts.bias === false ? [x, weight] : [x, weight, nn.param(`${prefix}.bias`, [cout])];
    const s = opts.stride ?? 1;
    return g.op("Conv", inputs, { kernel_shape: [k, k], pads: [1, 1, 1, 1], strides: [s, s] });
  };
  /** AutoencoderTinyBlock: relu(conv.4(act(conv.2(act(conv.0(x))))) + skip(x)). */
  const block = (x: string, prefix: string, cin: number, cout: number) =>
    g.scope(prefix, () => {
      let h = act(conv(x, `${prefix}.conv.0`, cin, cout));
      h = act(conv(h, `${prefix}.conv.2`, cout, cout));
      h = conv(h, `${prefix}.conv.4`, cout, cout);
      const skip =
        cin === cout
          ? x
          : g.op("Conv", [x, nn.param(`${prefix}.skip.weight`, [cout, cin, 1, 1])], { kernel_shape: [1, 1] });
      return relu(g.op("Add", [h, skip]));
    });
  return { conv, block, act };
}

export function buildTinyEncoderGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readTinyAutoencoderConfig(cfg);
  const g = new GraphBuilder("taesd_encoder");
  const { conv, block } = tinyLayers(g, weights, c);
  const input = g.input("sample", "float32", ["batch", c.inChannels, "height", "width"]);
  // TAESD works on [0, 1] pictures: (x + 1) / 2.
  let x = g.op("Div", [g.op("Add", [input, g.scalar(1)]), g.scalar(2)]);
  let index = 0;
  c.encoderBlocks.forEach((count, i) => {
    const ch = c.encoderBlockOut[i] as number;
    // diffusers builds the stride-2 conv as Conv2d(ch, ch): the blocks must keep one width.
    x =
      i === 0
        ? conv(x, `encoder.layers.${index++}`, c.inChannels, ch)
        : conv(x, `encoder.layers.${index++}`, ch, ch, { stride: 2, bias: false });
    for (let j = 0; j < count; j++) x = block(x, `encoder.layers.${index++}`, ch, ch);
  });
  const last = c.encoderBlockOut[c.encoderBlockOut.length - 1] as number;
  x = conv(x, `encoder.layers.${index}`, last, c.latentChannels);
  g.output(x, "latents", "float32", ["batch", c.latentChannels, "latent_height", "latent_width"]);
  return g;
}

export function buildTinyDecoderGraph(cfg: ConfigReader, weights: WeightBinder): GraphBuilder {
  const c = readTinyAutoencoderConfig(cfg);
  const g = new GraphBuilder("taesd_decoder");
  const { conv, block, act } = tinyLayers(g, weights, c);
  const input = g.input("latent_sample", "float32", ["batch", c.latentChannels, "height", "width"]);
  // Soft clamp of the latents to (−3, 3).
  let x = g.op("Mul", [g.op("Tanh", [g.op("Div", [input, g.scalar(3)])]), g.scalar(3)]);
  // layers.0 = conv, layers.1 = the activation.
  x = act(conv(x, "decoder.layers.0", c.latentChannels, c.decoderBlockOut[0] as number));
  let index = 2;
  const n = c.decoderBlocks.length;
  c.decoderBlocks.forEach((count, i) => {
    const ch = c.decoderBlockOut[i] as number;
    for (let j = 0; j < count; j++) x = block(x, `decoder.layers.${index++}`, ch, ch);
    const final = i === n - 1;
    if (!final) {
      x = g.op("Resize", [x, "", g.const("float32", [1, 1, 2, 2])], {
        mode: "nearest",
        coordinate_transformation_mode: "asymmetric",
        nearest_mode: "floor",
      });
      index++;
    }
    // The last conv maps to the picture's channels and alone has a bias.
    x = conv(x, `decoder.layers.${index++}`, ch, final ? c.outChannels : ch, { bias: final });
  });
  x = g.op("Sub", [g.op("Mul", [x, g.scalar(2)]), g.scalar(1)]);
  g.output(x, "sample", "float32", ["batch", c.outChannels, "pixel_height", "pixel_width"]);
  return g;
}
