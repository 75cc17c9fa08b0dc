/**
 * The img2img starts AUTOMATIC1111 has beside diffusers': latentResize (resize_mode 3: the
 * picture's latents resized, not the picture) and inpainting's maskedContent (A1111's inpainting_fill 2 "latent noise" and 3 "latent nothing"):
 * the area to repaint starts from a fresh draw of the seed or from zeros instead of the picture's
 * latents. Checked on tiny-sd2v (4-channel, so inpainting blends): with strength < 1 each choice
 * starts elsewhere, the same request gives the same picture, and it is refused without a mask.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { modelDir } from "../helpers/fixtures.js";

describe("latentResize and maskedContent (tiny-sd2v)", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  });
  after(() => pipe.release());
  const data = new Uint8Array(32 * 32 * 3).map((_, i) => (i * 29) % 256);
  const maskData = new Uint8Array(32 * 32).map((_, i) => (i % 32 >= 16 ? 255 : 0));
  const req = {
    prompt: "a cat",
    numInferenceSteps: 4,
    seed: 3,
    scheduler: "K_EULER",
    image: { width: 32, height: 32, data },
    mask: { width: 32, height: 32, data: maskData },
    strength: 0.5,
  };

  test("noise and zeros start the repainted area elsewhere; the same request, the same picture", async () => {
    const original = await pipe.generate(req);
    const zeros = await pipe.generate({ ...req, maskedContent: "zeros" });
    const noise = await pipe.generate({ ...req, maskedContent: "noise" });
    assert.notDeepEqual(zeros.latents.data, original.latents.data);
    assert.notDeepEqual(noise.latents.data, zeros.latents.data);
    assert.deepEqual((await pipe.generate({ ...req, maskedContent: "noise" })).latents.data, noise.latents.data);
    // The kept half (latent columns 0–1 of 4) is the picture's, whatever the fill.
    const [, c, h, w] = original.latents.shape as number[];
    for (let k = 0; k < (c as number) * (h as number); k++) {
      for (let x = 0; x < (w as number) / 2; x++) {
        const i = k * (w as number) + x;
        assert.equal(zeros.latents.data[i], original.latents.data[i]);
      }
    }
  });

  test("latentResize: the picture encoded at its own size, its latents resized to width × height", async () => {
    const { mask: _, ...img2img } = req;
    const a = await pipe.generate({ ...img2img, width: 48, height: 64, latentResize: true });
    assert.deepEqual([a.images[0]?.width, a.images[0]?.height, a.latents.shape[2], a.latents.shape[3]], [48, 64, 8, 6]);
    const again = await pipe.generate({ ...img2img, width: 48, height: 64, latentResize: true });
    assert.deepEqual(again.latents.data, a.latents.data);
    const resized = await pipe.generate({ ...img2img, width: 48, height: 64 });
    assert.notDeepEqual(resized.latents.data, a.latents.data);
    await assert.rejects(pipe.generate({ ...req, latentResize: true }), RequestError);
  });

  test("without a mask, or an unknown value: a RequestError", async () => {
    const { mask: _, ...img2img } = req;
    await assert.rejects(pipe.generate({ ...img2img, maskedContent: "zeros" }), RequestError);
    await assert.rejects(pipe.generate({ ...req, maskedContent: "fill" as never }), RequestError);
  });
});
