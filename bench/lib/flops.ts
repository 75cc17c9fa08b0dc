/**
 * Floating-point operations of one call of each network, counted from its config the way the
 * engine's graphs are built (src/engine/graph/): every Conv and MatMul (Linear layers, and
 * attention's q·kᵀ and p·v), a multiply-add counted as 2 FLOPs. Normalisations, activations,
 * softmax and adds are left out: they are a fraction of a percent of the total and bound by
 * memory, not arithmetic.
 */
import { readClipTextConfig } from "../../src/engine/graph/clip.js";
import { ConfigReader } from "../../src/engine/graph/config.js";
import { readTinyAutoencoderConfig } from "../../src/engine/graph/taesd.js";
import { readUNetConfig } from "../../src/engine/graph/unet.js";
import { readVaeConfig } from "../../src/engine/graph/vae.js";

/** 2·out·in·k²·H_out·W_out per image. */
const conv = (batch: number, cin: number, cout: number, k: number, h: number, w: number) =>
  2 * batch * cout * cin * k * k * h * w;
/** 2·rows·in·out. */
const linear = (rows: number, fin: number, fout: number) => 2 * rows * fin * fout;
/** softmax(q·kᵀ)·v over `dim` channels (all heads together): two batched MatMuls. */
const attention = (batch: number, lq: number, lk: number, dim: number) => 2 * (2 * batch * lq * lk * dim);

/** Output size of a 3×3 stride-2 convolution with the given padding. */
const halve = (n: number, pad: number) => Math.floor((n + 2 * pad - 3) / 2) + 1;

/**
 * UNet2DConditionModel at latent size h×w, `batch` samples, `sequence` context tokens, one
 * timestep shared by the batch (as the engine's pipeline feeds it).
 */
export function unetFlops(
  config: Record<string, unknown>,
  opts: { batch: number; height: number; width: number; sequence: number },
): number {
  const c = readUNetConfig(new ConfigReader("unet/config.json", config));
  const B = opts.batch;
  const temb = c.timeEmbedDim;
  const base = c.blockOut[0] as number;
  let total = 0;

  total += linear(1, base, temb) + linear(1, temb, temb);
  // SDXL's add_embedding MLP, once per sample.
  if (c.textTime) total += linear(B, c.textTime.inputDim, temb) + linear(B, temb, temb);

  const resnet = (cin: number, cout: number, h: number, w: number) => {
    total += conv(B, cin, cout, 3, h, w) + conv(B, cout, cout, 3, h, w) + linear(1, temb, cout);
    if (cin !== cout) total += conv(B, cin, cout, 1, h, w);
  };
  const transformer = (ch: number, block: number, h: number, w: number) => {
    const n = h * w;
    const ctx = c.crossDim[block] as number;
    total += 2 * linear(B * n, ch, ch); // proj_in, proj_out (1×1 conv or linear: same count)
    for (let i = 0; i < (c.transformerLayers[block] as number); i++) {
      total += 4 * linear(B * n, ch, ch) + attention(B, n, n, ch); // self-attention
      total += 2 * linear(B * n, ch, ch) + 2 * linear(B * opts.sequence, ctx, ch); // cross: q, out; k, v
      total += attention(B, n, opts.sequence, ch);
      total += linear(B * n, ch, 8 * ch) + linear(B * n, 4 * ch, ch); // GEGLU feed-forward
    }
  };

  let h = opts.height;
  let w = opts.width;
  total += conv(B, c.inChannels, base, c.convInKernel, h, w);
  const skips: { channels: number; h: number; w: number }[] = [{ channels: base, h, w }];
  c.downTypes.forEach((type, i) => {
    const cout = c.blockOut[i] as number;
    let cin = i === 0 ? base : (c.blockOut[i - 1] as number);
    for (let j = 0; j < (c.layersPerBlock[i] as number); j++) {
      resnet(cin, cout, h, w);
      if (type === "CrossAttnDownBlock2D") transformer(cout, i, h, w);
      skips.push({ channels: cout, h, w });
      cin = cout;
    }
    if (i < c.downTypes.length - 1) {
      h = halve(h, c.downsamplePadding);
      w = halve(w, c.downsamplePadding);
      total += conv(B, cout, cout, 3, h, w);
      skips.push({ channels: cout, h, w });
    }
  });

  const last = c.blockOut.length - 1;
  const top = c.blockOut[last] as number;
  if (c.midType !== null) {
    resnet(top, top, h, w);
    transformer(top, last, h, w);
    resnet(top, top, h, w);
  }

  const revOut = [...c.blockOut].reverse();
  const revLayers = [...c.layersPerBlock].reverse();
  let prevOut = top;
  c.upTypes.forEach((type, i) => {
    const cout = revOut[i] as number;
    for (let j = 0; j <= (revLayers[i] as number); j++) {
      const skip = skips.pop() as { channels: number };
      resnet((j === 0 ? prevOut : cout) + skip.channels, cout, h, w);
      if (type === "CrossAttnUpBlock2D") transformer(cout, last - i, h, w);
    }
    if (i < c.upTypes.length - 1) {
      const next = skips[skips.length - 1] as { h: number; w: number };
      h = next.h;
      w = next.w;
      total += conv(B, cout, cout, 3, h, w);
    }
    prevOut = cout;
  });
  total += conv(B, base, c.outChannels, c.convOutKernel, h, w);
  return total;
}

/** AutoencoderKL decoder from latents h×w. */
export function vaeDecodeFlops(
  config: Record<string, unknown>,
  opts: { batch: number; height: number; width: number },
) {
  const c = readVaeConfig(new ConfigReader("vae/config.json", config));
  const B = opts.batch;
  let h = opts.height;
  let w = opts.width;
  let total = 0;
  const resnet = (cin: number, cout: number) => {
    total += conv(B, cin, cout, 3, h, w) + conv(B, cout, cout, 3, h, w);
    if (cin !== cout) total += conv(B, cin, cout, 1, h, w);
  };
  const top = c.blockOut[c.blockOut.length - 1] as number;
  if (c.postQuantConv) total += conv(B, c.latentChannels, c.latentChannels, 1, h, w);
  total += conv(B, c.latentChannels, top, 3, h, w);
  resnet(top, top);
  total += 4 * linear(B * h * w, top, top) + attention(B, h * w, h * w, top);
  resnet(top, top);
  const rev = [...c.blockOut].reverse();
  let cin = top;
  rev.forEach((cout, i) => {
    for (let j = 0; j <= c.layersPerBlock; j++) resnet(j === 0 ? cin : cout, cout);
    if (i < rev.length - 1) {
      h *= 2;
      w *= 2;
      total += conv(B, cout, cout, 3, h, w);
    }
    cin = cout;
  });
  total += conv(B, c.blockOut[0] as number, c.outChannels, 3, h, w);
  return total;
}

/**
 * The VAE encoder on one [B, 3, H, W] picture (height/width in latent pixels, as the decoder's):
 * the decoder's layers in reverse, with stride-2 convs in place of the upsampling ones.
 */
export function vaeEncodeFlops(
  config: Record<string, unknown>,
  opts: { batch: number; height: number; width: number },
) {
  const c = readVaeConfig(new ConfigReader("vae/config.json", config));
  const B = opts.batch;
  let h = opts.height * c.scaleFactor;
  let w = opts.width * c.scaleFactor;
  let total = 0;
  const resnet = (cin: number, cout: number) => {
    total += conv(B, cin, cout, 3, h, w) + conv(B, cout, cout, 3, h, w);
    if (cin !== cout) total += conv(B, cin, cout, 1, h, w);
  };
  total += conv(B, c.inChannels, c.blockOut[0] as number, 3, h, w);
  let cin = c.blockOut[0] as number;
  c.blockOut.forEach((cout, i) => {
    for (let j = 0; j < c.layersPerBlock; j++) resnet(j === 0 ? cin : cout, cout);
    if (i < c.blockOut.length - 1) {
      h /= 2;
      w /= 2;
      total += conv(B, cout, cout, 3, h, w);
    }
    cin = cout;
  });
  const top = c.blockOut[c.blockOut.length - 1] as number;
  resnet(top, top);
  total += 4 * linear(B * h * w, top, top) + attention(B, h * w, h * w, top);
  resnet(top, top);
  total += conv(B, top, 2 * c.latentChannels, 3, h, w);
  if (c.quantConv) total += conv(B, 2 * c.latentChannels, 2 * c.latentChannels, 1, h, w);
  return total;
}

/** CLIPTextModel over `sequence` tokens (the token-embedding Gather is not arithmetic). */
export function textEncoderFlops(config: Record<string, unknown>, opts: { batch: number; sequence: number }): number {
  const c = readClipTextConfig(new ConfigReader("text_encoder/config.json", config));
  const rows = opts.batch * opts.sequence;
  const H = c.hiddenSize;
  const perLayer =
    4 * linear(rows, H, H) +
    attention(opts.batch, opts.sequence, opts.sequence, H) +
    linear(rows, H, c.intermediateSize) +
    linear(rows, c.intermediateSize, H);
  // CLIPTextModelWithProjection's text_projection of the pooled token.
  const projection = c.projectionDim === null ? 0 : linear(opts.batch, H, c.projectionDim);
  return c.layers * perLayer + projection;
}

/** AutoencoderTiny (TAESD) decoder from latents h×w: 3×3 convolutions only. */
export function tinyDecodeFlops(
  config: Record<string, unknown>,
  opts: { batch: number; height: number; width: number },
): number {
  const c = readTinyAutoencoderConfig(new ConfigReader("vae/config.json", config));
  const B = opts.batch;
  let h = opts.height;
  let w = opts.width;
  let total = conv(B, c.latentChannels, c.decoderBlockOut[0] as number, 3, h, w);
  const n = c.decoderBlocks.length;
  c.decoderBlocks.forEach((count, i) => {
    const ch = c.decoderBlockOut[i] as number;
    total += count * 3 * conv(B, ch, ch, 3, h, w);
    if (i < n - 1) {
      h *= 2;
      w *= 2;
    }
    total += conv(B, ch, i < n - 1 ? ch : c.outChannels, 3, h, w);
  });
  return total;
}
