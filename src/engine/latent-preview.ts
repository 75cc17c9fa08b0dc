/**
 * A cheap look at an image while it is being denoised: the latents mapped to RGB by one 4×3
 * linear map, at latent resolution (an eighth of the output's width and height), instead of
 * running the VAE decoder. Each latent pixel becomes one RGB pixel; the browser scales it up.
 *
 * The factors are those fitted for SD 1.4's VAE by Keturn ("Decoding latents to RGB without
 * upscaling", discuss.huggingface.co/t/23204/2), which AUTOMATIC1111 uses as its "Approx cheap"
 * preview. SD 1.x and 2.x share that VAE, so one table serves both.
 */
import type { RgbImage } from "./image.js";
import type { TensorF32 } from "./networks.js";

/** Rows: latent channels 0–3; columns: R, G, B. The result is in about [-1, 1], like the decoder's. */
const LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/** True when the latents have the 4 channels the factors are for. */
export function canPreview(latents: TensorF32): boolean {
  return latents.shape.length === 4 && latents.shape[1] === LATENT_RGB_FACTORS.length;
}

/**
 * One RGB image per batch entry of `latents` [B, 4, h, w]. The latents of a step still hold
 * noise, whose spread is the scheduler's sigma (up to ~15 for the K-samplers at the start), so
 * each image's latents are first divided by their standard deviation when it exceeds 1: the same
 * normalisation the UNet's input gets (scale_model_input), and the preview stays grey rather than
 * saturated while noise dominates.
 */
export function latentsToPreviewImages(latents: TensorF32): RgbImage[] {
  if (!canPreview(latents)) throw new Error(`expected latents [B, 4, h, w], got [${latents.shape.join(", ")}]`);
  const [batch, channels, height, width] = latents.shape as [number, number, number, number];
  const plane = height * width;
  const images: RgbImage[] = [];
  for (let b = 0; b < batch; b++) {
    const x = latents.data.subarray(b * channels * plane, (b + 1) * channels * plane);
    let sum = 0;
    let sumSquares = 0;
    for (const v of x) {
      sum += v;
      sumSquares += v * v;
    }
    const mean = sum / x.length;
    const std = Math.sqrt(Math.max(0, sumSquares / x.length - mean * mean));
    const scale = std > 1 ? 1 / std : 1;
    const data = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (let l = 0; l < channels; l++) v += (x[l * plane + i] as number) * (LATENT_RGB_FACTORS[l]?.[c] as number);
        // [-1, 1] → [0, 255], as the decoder's output is converted.
        data[i * 3 + c] = Math.round(Math.min(1, Math.max(0, (v * scale + 1) / 2)) * 255);
      }
    }
    images.push({ width, height, data });
  }
  return images;
}
