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

export class TinyAutoencoderPreview {
  private constructor(readonly decoder: TinyVaeDecoder) {}

  /** Loads an AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors). */
  static async load(dir: string, opts: RuntimeOptions = {}): Promise<TinyAutoencoderPreview> {
    const files = await openComponentFolder(dir, "vae");
    if (files.config["_class_name"] !== "AutoencoderTiny") {
      throw new ModelError("a preview decoder must be an AutoencoderTiny (TAESD) folder", {
        file: files.configPath,
        field: "_class_name",
      });
    }
    return new TinyAutoencoderPreview(await TinyVaeDecoder.load(files, opts));
  }

  /** One RGB picture per batch entry of `latents` [B, C, h, w] (the pipeline's latent space). */
  async images(latents: TensorF32): Promise<RgbImage[]> {
    const channels = this.decoder.config.latentChannels;
    if (latents.shape.length !== 4 || latents.shape[1] !== channels) {
      throw new Error(`expected latents [B, ${channels}, h, w], got [${latents.shape.join(", ")}]`);
    }
    const s = Math.fround(this.decoder.config.scalingFactor);
    const input = s === 1 ? latents : { data: latents.data.map((v) => Math.fround(v / s)), shape: latents.shape };
    return decodedToImages(await this.decoder.decode(input));
  }

  release(): Promise<void> {
    return this.decoder.session.release();
  }
}
