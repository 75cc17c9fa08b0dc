/**
 * Step previews with the tiny autoencoder (TAESD): a real picture of the image being made, for
 * a small fraction of a UNet step, instead of a linear map of the latents to RGB. TAESD was
 * trained to decode the SD VAE's scaled latents directly, so the pipeline's latents go in as
 * they are (TAESD's scaling_factor is 1).
 */

import { ModelError } from "./errors.js";
import { decodedToImages, type RgbImage } from "./image.js";
import type { TensorF32 } from "./networks.js";
import { TinyVaeDecoder } from "./networks.js";
import type { RuntimeOptions } from "./runtime.js";
import { openComponentFolder } from "./weights/model-folder.js";

export interface PreviewOptions {
  /**
   * The longest side of a preview in pixels: larger images are previewed from latents averaged
   * over 2×2, 4×4, … blocks, which cuts the decoder's work by 4, 16, … (TAESD at 512² costs about
   * a sixth of an SD 1.5 UNet call; at 256² a twenty-third). Default: full size.
   */
  maxSize?: number;
}

export class TinyAutoencoderPreview {
  private constructor(
    readonly decoder: TinyVaeDecoder,
    readonly maxSize: number,
  ) {}

  /** Loads an AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors). */
  static async load(dir: string, opts: RuntimeOptions & PreviewOptions = {}): Promise<TinyAutoencoderPreview> {
    const maxSize = opts.maxSize ?? Number.POSITIVE_INFINITY;
    if (!(maxSize >= 8)) throw new RangeError(`a preview's size must be at least 8 pixels, got ${opts.maxSize}`);
    const files = await openComponentFolder(dir, "vae");
    if (files.config["_class_name"] !== "AutoencoderTiny") {
      throw new ModelError("a preview decoder must be an AutoencoderTiny (TAESD) folder", {
        file: files.configPath,
        field: "_class_name",
      });
    }
    return new TinyAutoencoderPreview(await TinyVaeDecoder.load(files, opts), maxSize);
  }

  /** One RGB picture per batch entry of `latents` [B, C, h, w] (the pipeline's latent space). */
  async images(latents: TensorF32): Promise<RgbImage[]> {
    const channels = this.decoder.config.latentChannels;
    if (latents.shape.length !== 4 || latents.shape[1] !== channels) {
      throw new Error(`expected latents [B, ${channels}, h, w], got [${latents.shape.join(", ")}]`);
    }
    const [, , h, w] = latents.shape as [number, number, number, number];
    let factor = 1;
    while (
      Math.max(h, w) * this.decoder.config.scaleFactor > this.maxSize * factor &&
      h % (factor * 2) === 0 &&
      w % (factor * 2) === 0
    ) {
      factor *= 2;
    }
    const pooled = factor === 1 ? latents : averagePool(latents, factor);
    const s = Math.fround(this.decoder.config.scalingFactor);
    const input = s === 1 ? pooled : { data: pooled.data.map((v) => Math.fround(v / s)), shape: pooled.shape };
    return decodedToImages(await this.decoder.decode(input));
  }

  release(): Promise<void> {
    return this.decoder.session.release();
  }
}

/** Mean over factor×factor blocks of [B, C, h, w] (h and w multiples of factor). */
function averagePool(latents: TensorF32, factor: number): TensorF32 {
  const [b, c, h, w] = latents.shape as [number, number, number, number];
  const oh = h / factor;
  const ow = w / factor;
  const out = new Float32Array(b * c * oh * ow);
  const area = factor * factor;
  for (let plane = 0; plane < b * c; plane++) {
    const src = plane * h * w;
    const dst = plane * oh * ow;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        let sum = 0;
        for (let dy = 0; dy < factor; dy++) {
          const row = src + (y * factor + dy) * w + x * factor;
          for (let dx = 0; dx < factor; dx++) sum += latents.data[row + dx] as number;
        }
        out[dst + y * ow + x] = sum / area;
      }
    }
  }
  return { data: out, shape: [b, c, oh, ow] };
}
