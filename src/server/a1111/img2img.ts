/**
 * img2img's pictures prepared as AUTOMATIC1111's StableDiffusionProcessingImg2Img.init prepares
 * them (modules/processing.py), before the prediction is made: the init image flattened and
 * resized to width × height by resize_mode; the mask made grey, inverted, blurred along x then y,
 * and either resized with the picture or, with inpaint_full_res, used to cut the picture down to
 * the mask's box (plus padding, widened to the width : height ratio) that is then generated at
 * width × height; inpainting_fill 0 fills the area to repaint with the colours around it.
 *
 * After generation (`finish`), the original is laid back over what the mask keeps, the crop
 * pasted back into the whole picture: A1111's apply_overlay. The prediction keeps the picture
 * the model made; the /sdapi answer is the composed one.
 */

import { toGray } from "../../engine/image-input.js";
import { decodeImage, encodePng, type GrayImage, RequestError, type RgbImage } from "../../engine/index.js";
import { invalid } from "./errors.js";
import { blurMask, crop, cropRegion, expandCropRegion, fillMasked, overlayOriginal, resizeImage } from "./images.js";
import { IMG2IMG_DEFAULTS, type Img2ImgBody } from "./schemas.js";

/**
 * The engine's strength for A1111's img2img step count: its sampler schedules `steps` and runs
 * the last int(min(d, 0.999) · steps) + 1 of them (setup_img2img_steps without
 * img2img_fix_steps; k-diffusion's sigma_sched = sigmas[steps − t_enc − 1:]). The engine runs
 * floor(steps · strength): (runs + 0.5) / steps gives exactly `runs`.
 */
export function img2imgStrength(steps: number, denoising: number): number {
  return Math.min(1, (img2imgRuns(steps, denoising) + 0.5) / steps);
}

/** The steps A1111's img2img runs of `steps` at a denoising strength. */
export function img2imgRuns(steps: number, denoising: number): number {
  return Math.min(steps, Math.trunc(Math.min(denoising, 0.999) * steps) + 1);
}

export interface Img2ImgPlan {
  /** The picture to start from, at width × height, as a PNG data: URI. */
  image: string;
  /** White = repaint, at width × height, as a PNG data: URI. */
  mask?: string;
  /** resize_mode 3 without a mask: `image` is at its own size; its latents are resized to width × height. */
  latentResize?: boolean;
  /** The answer's picture from the model's (PNG bytes): the original laid back over what is kept. */
  finish?: (png: Uint8Array, parameters: string) => Promise<Uint8Array>;
  /**
   * The inpainting's entries of A1111's extra_generation_params, in the order its init adds them
   * (Mask mode, Mask blur, Inpaint area, Masked area padding, Masked content for a fill).
   */
  extra?: [string, string | number][];
}

const BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** Raw base64 or a data: URI → bytes; malformed base64 is a 422 on the field. */
function bytesOf(picture: string, field: string): Uint8Array {
  const body = picture.replace(/^data:[^,]*,/i, "");
  if (!BASE64.test(body)) throw invalid(field, "has invalid base64");
  return new Uint8Array(Buffer.from(body, "base64"));
}

async function decode(picture: string, field: string) {
  try {
    return await decodeImage(bytesOf(picture, field), { field });
  } catch (err) {
    if (err instanceof RequestError) throw invalid(field, err.message);
    throw err;
  }
}

function dataUri(image: RgbImage | GrayImage): string {
  const rgb =
    image.data.length === image.width * image.height
      ? { width: image.width, height: image.height, data: expandGray(image.data) }
      : (image as RgbImage);
  return `data:image/png;base64,${Buffer.from(encodePng(rgb)).toString("base64")}`;
}

function expandGray(g: Uint8Array): Uint8Array {
  const out = new Uint8Array(g.length * 3);
  for (let i = 0; i < g.length; i++) out.fill(g[i] as number, i * 3, i * 3 + 3);
  return out;
}

/** images.flatten: transparency over A1111's img2img background colour (white). */
function flatten(image: RgbImage & { alpha?: Uint8Array }): RgbImage {
  const { alpha } = image;
  if (!alpha) return { width: image.width, height: image.height, data: image.data };
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < alpha.length; i++) {
    const a = (alpha[i] as number) / 255;
    for (let k = 0; k < 3; k++) data[i * 3 + k] = Math.round((image.data[i * 3 + k] as number) * a + 255 * (1 - a));
  }
  return { width: image.width, height: image.height, data };
}

/**
 * create_binary_mask: a mask with real transparency is its alpha cut at 128; anything else its
 * grey (PIL's convert("L")).
 */
function maskOf(image: RgbImage & { alpha?: Uint8Array }): GrayImage {
  const { alpha } = image;
  if (alpha?.some((a) => a !== 255)) {
    return { width: image.width, height: image.height, data: alpha.map((a) => (a > 128 ? 255 : 0)) };
  }
  return toGray(image);
}

/** The pictures of an img2img call at width × height, and how its answer is finished. */
export async function prepareImg2img(
  body: Img2ImgBody,
  width: number,
  height: number,
  maxPixels: number,
): Promise<Img2ImgPlan> {
  const first = body.init_images?.[0];
  if (typeof first !== "string") {
    throw invalid("init_images", "ensure this value has at least 1 items", "value_error.list.min_items");
  }
  const init = flatten(await decode(first, "init_images"));
  const resizeMode = body.resize_mode ?? IMG2IMG_DEFAULTS.resize_mode;
  // img2img without a mask: the picture by resize_mode.
  const plain = async (): Promise<Img2ImgPlan> => {
    if (resizeMode !== 3) return { image: dataUri(await resizeImage(resizeMode, init, width, height)) };
    // Encoded at its own size: bounded as a generation is.
    if (init.width * init.height > maxPixels) {
      throw invalid(
        "resize_mode",
        `resize_mode 3 encodes the picture at its own size: at most ${maxPixels} pixels here`,
      );
    }
    return { image: dataUri(init), latentResize: true };
  };
  if (body.mask === undefined) return plain();

  const decodedMask = await decode(body.mask, "mask");
  let mask = maskOf(decodedMask);
  if (mask.width !== init.width || mask.height !== init.height) {
    // A1111 needs them of one size; a mask of another is stretched to the picture first.
    mask = await resizeImage(0, mask, init.width, init.height);
  }
  if ((body.inpainting_mask_invert ?? IMG2IMG_DEFAULTS.inpainting_mask_invert) === 1) {
    mask = { ...mask, data: mask.data.map((v) => 255 - v) };
  }
  // mask_blur, when given, sets both (A1111's property setter runs after mask_blur_x / _y).
  const blurX = body.mask_blur ?? body.mask_blur_x ?? IMG2IMG_DEFAULTS.mask_blur_x;
  const blurY = body.mask_blur ?? body.mask_blur_y ?? IMG2IMG_DEFAULTS.mask_blur_y;
  mask = await blurMask(mask, blurX, "x");
  mask = await blurMask(mask, blurY, "y");
  const extra: [string, string | number][] = [];
  if ((body.inpainting_mask_invert ?? IMG2IMG_DEFAULTS.inpainting_mask_invert) === 1) {
    extra.push(["Mask mode", "Inpaint not masked"]);
  }
  // A1111's mask_blur property: the blur when x and y agree (else None, and no entry).
  if ((blurX > 0 || blurY > 0) && blurX === blurY) extra.push(["Mask blur", blurX]);

  const fullRes = body.inpaint_full_res ?? IMG2IMG_DEFAULTS.inpaint_full_res;
  const padding = body.inpaint_full_res_padding ?? IMG2IMG_DEFAULTS.inpaint_full_res_padding;
  const box = fullRes ? cropRegion(mask, padding) : undefined;
  // Nothing to repaint under inpaint_full_res: A1111 (1.10) drops the mask and runs img2img
  // ("Unable to perform Inpaint Only mask because mask is blank, switch to img2img mode").
  if (fullRes && !box) return plain();
  let image: RgbImage;
  let processMask: GrayImage;
  let finish: Img2ImgPlan["finish"];
  if (box) {
    const [x1, y1, x2, y2] = expandCropRegion(box, width, height, mask.width, mask.height);
    const at = { x: x1, y: y1, width: x2 - x1, height: y2 - y1 };
    processMask = await resizeImage(2, crop(mask, at.x, at.y, at.width, at.height), width, height);
    image = await resizeImage(2, crop(init, at.x, at.y, at.width, at.height), width, height);
    const overlayMask = mask;
    extra.push(["Inpaint area", "Only masked"], ["Masked area padding", padding]);
    finish = async (png, parameters) => {
      const made = await decodeImage(png, { field: "output" });
      return encodePng(await overlayOriginal(made, init, overlayMask, at), { parameters });
    };
  } else {
    processMask = await resizeImage(resizeMode, mask, width, height);
    image = await resizeImage(resizeMode, init, width, height);
    const overlayMask = { ...processMask, data: processMask.data.map((v) => Math.min(255, v * 2)) };
    const original = image;
    finish = async (png, parameters) => {
      const made = await decodeImage(png, { field: "output" });
      if (made.width !== original.width || made.height !== original.height) return png;
      return encodePng(await overlayOriginal(made, original, overlayMask), { parameters });
    };
  }
  if ((body.inpainting_fill ?? IMG2IMG_DEFAULTS.inpainting_fill) === 0) {
    image = await fillMasked(image, processMask);
    extra.push(["Masked content", "fill"]);
  }
  return { image: dataUri(image), mask: dataUri(processMask), finish, extra };
}
