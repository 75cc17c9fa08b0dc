/**
 * img2img and inpainting on SDXL: the same recipe as SD's (the fixtures hold no SDXL image-input
 * references; SD's own img2img / inpainting goldens cover the shared code), with SDXL's
 * conditioning and diffusers' SDXL defaults: strength 0.3 for StableDiffusionXLImg2ImgPipeline,
 * 0.9999 for StableDiffusionXLInpaintPipeline, and time ids at the picture's size.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { AddedConditions } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { GOLDEN_FAMILY } from "../helpers/fixtures.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

/** A deterministic picture with some structure. */
function picture(width: number, height: number) {
  const data = new Uint8Array(width * height * 3).map((_, i) => (i * 37 + Math.floor(i / (width * 3)) * 11) % 256);
  return { width, height, data };
}

describe("SDXL image inputs (tiny-sdxl)", () => {
  let pipe: Pipeline;
  let seen: { timesteps: number[]; added: AddedConditions[] };
  before(async () => {
    pipe = await loadPipeline(BASE, { threads: 2 });
    const run = pipe.unet.run.bind(pipe.unet);
    pipe.unet.run = (sample, t, context, cond, adapters, added) => {
      seen.timesteps.push(t);
      if (added) seen.added.push(added);
      return run(sample, t, context, cond, adapters, added);
    };
  });
  after(() => pipe.release());

  test("img2img: diffusers' SDXL default strength 0.3 runs the last 2 of 8 steps, time ids at the picture's size", async () => {
    seen = { timesteps: [], added: [] };
    const result = await pipe.generate({
      prompt: "a lion",
      negativePrompt: "low quality",
      image: picture(96, 64),
      numInferenceSteps: 8,
      seed: 3,
    });
    assert.deepEqual(seen.timesteps, [126, 1]);
    assert.equal(result.parameters.strength, 0.3);
    assert.deepEqual([result.images[0]?.width, result.images[0]?.height], [96, 64]);
    assert.deepEqual(Array.from(seen.added[0]?.timeIds.data ?? []), [64, 96, 0, 0, 64, 96, 64, 96, 0, 0, 64, 96]);
    assert.ok(result.latents.data.every(Number.isFinite));
  });

  test("inpainting (4-channel blending): default strength 0.9999 skips the first of 8 steps", async () => {
    seen = { timesteps: [], added: [] };
    const mask = { width: 96, height: 64, data: new Uint8Array(96 * 64).map((_, i) => (i % 96 < 48 ? 255 : 0)) };
    const result = await pipe.generate({
      prompt: "a lion",
      image: picture(96, 64),
      mask,
      numInferenceSteps: 8,
      guidanceScale: 1,
      seed: 3,
    });
    assert.deepEqual(seen.timesteps, [751, 626, 501, 376, 251, 126, 1]);
    assert.equal(result.parameters.strength, 0.9999);
    // Guidance 1: one UNet row, the prompt's.
    assert.deepEqual(seen.added[0]?.timeIds.shape, [1, 6]);
    assert.ok(result.latents.data.every(Number.isFinite));
  });

  test("the same seed and picture give the same image; micro-conditioning changes it", async () => {
    seen = { timesteps: [], added: [] };
    const req = { prompt: "a lion", image: picture(96, 64), numInferenceSteps: 4, strength: 0.5, seed: 9 };
    const a = await pipe.generate(req);
    const b = await pipe.generate(req);
    const c = await pipe.generate({ ...req, cropsCoordsTopLeft: [16, 0] });
    assert.deepEqual(a.latents.data, b.latents.data);
    assert.notDeepEqual(a.latents.data, c.latents.data);
    assert.deepEqual(
      Array.from(seen.added[seen.added.length - 1]?.timeIds.data.subarray(0, 6) ?? []),
      [64, 96, 16, 0, 64, 96],
    );
  });
});

describe("the negative time ids, as each of diffusers' SDXL pipelines makes them", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(BASE, { threads: 1 });
  });
  after(() => pipe.release());
  const ids = (fromImage: boolean, extra: Record<string, unknown>) => {
    const t = pipe.sdxl?.timeIds({ width: 96, height: 64, cropsCoordsTopLeft: [8, 4], ...extra }, fromImage);
    return [Array.from(t?.positive ?? []), Array.from(t?.negative ?? [])];
  };

  test("text-to-image: the prompt's row, unless both negative sizes are given", () => {
    assert.deepEqual(ids(false, {}), [
      [64, 96, 8, 4, 64, 96],
      [64, 96, 8, 4, 64, 96],
    ]);
    assert.deepEqual(ids(false, { negativeOriginalSize: [32, 48] })[1], [64, 96, 8, 4, 64, 96]);
    assert.deepEqual(
      ids(false, { negativeOriginalSize: [32, 48], negativeTargetSize: [64, 96] })[1],
      [32, 48, 0, 0, 64, 96],
    );
  });

  test("from an image: negative sizes default to the prompt's, with the prompt's crop", () => {
    assert.deepEqual(
      ids(true, { negativeOriginalSize: [32, 48], negativeCropsCoordsTopLeft: [1, 1] })[1],
      [32, 48, 8, 4, 64, 96],
    );
  });
});
