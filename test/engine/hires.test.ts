/**
 * The hires fix (engine/hires.ts): A1111's second-pass schedule, then whole runs on a tiny model:
 * the output size, the steps reported, the same seed giving the same picture, and the second
 * pass being exactly "denoise from the upscaled latents" (checked against the pieces run by hand).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { generateHires, HIRES_UPSCALERS, hiresSchedule } from "../../src/engine/hires.js";
import { interpolate } from "../../src/engine/latent-resize.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { modelDir } from "../helpers/fixtures.js";
import { TINY_SDXL } from "../helpers/tiny-refiner.js";

describe("hiresSchedule (A1111's setup_img2img_steps with steps given)", () => {
  test("schedules int(steps / min(d, 0.999)) and runs exactly `steps`", () => {
    assert.deepEqual(hiresSchedule(10, 0.5).total, 20);
    assert.deepEqual(hiresSchedule(4, 0.7).total, 5); // int(5.71…)
    assert.deepEqual(hiresSchedule(1, 1).total, 1); // int(1 / 0.999)
    assert.deepEqual(hiresSchedule(20, 1).total, 20); // int(20.02…)
    for (let steps = 1; steps <= 60; steps++) {
      for (const d of [0.01, 0.1, 0.3, 0.33, 0.5, 0.7, 0.75, 0.9, 0.999, 1]) {
        const { total, strength } = hiresSchedule(steps, d);
        assert.ok(strength > 0 && strength <= 1);
        assert.equal(Math.min(Math.floor(total * strength), total), steps, `steps ${steps}, d ${d}`);
      }
    }
  });
});

describe("generateHires (tiny-sd2v, VAE factor 8)", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  });
  after(() => pipe.release());
  const req = { prompt: "a cat", width: 32, height: 32, numInferenceSteps: 3, seed: 7, scheduler: "K_EULER" };

  for (const upscaler of ["Latent", "Latent (bicubic antialiased)", "None"]) {
    test(`${upscaler}: twice the size, both passes' steps reported, the same seed the same picture`, async () => {
      const steps: [number, number][] = [];
      const hires = { width: 64, height: 64, upscaler, steps: 2, denoisingStrength: 0.5 };
      const a = await generateHires(pipe, req, hires, { onStep: (e) => void steps.push([e.step, e.total]) });
      assert.deepEqual([a.images[0]?.width, a.images[0]?.height], [64, 64]);
      assert.deepEqual(steps, [
        [1, 5],
        [2, 5],
        [3, 5],
        [4, 5],
        [5, 5],
      ]);
      assert.deepEqual(a.parameters.extra, [
        ["Denoising strength", 0.5],
        ["Hires steps", 2],
        ["Hires upscaler", upscaler],
      ]);
      const b = await generateHires(pipe, req, hires);
      assert.deepEqual(b.images[0]?.data, a.images[0]?.data);
    });
  }

  test("the second pass is a denoise from the interpolated latents with the seed's first draw", async () => {
    const hires = { width: 48, height: 64, upscaler: "Latent (nearest)", steps: 2, denoisingStrength: 0.6 };
    const got = await generateHires(pipe, req, hires);
    const first = await pipe.denoise(req);
    const { total, strength } = hiresSchedule(2, 0.6);
    const want = await pipe.generate({
      ...req,
      width: 48,
      height: 64,
      numInferenceSteps: total,
      strength,
      initLatents: interpolate(first.latents, 8, 6, { mode: "nearest" }),
    });
    assert.deepEqual([got.images[0]?.width, got.images[0]?.height], [48, 64]);
    assert.deepEqual(got.latents.data, want.latents.data);
  });

  test("a crop (hr_resize_x and _y both given) cuts the latents", async () => {
    const hires = { width: 64, height: 64, cropX: 16, cropY: 0, upscaler: "Latent", steps: 1, denoisingStrength: 0.5 };
    const r = await generateHires(pipe, req, hires);
    assert.deepEqual([r.images[0]?.width, r.images[0]?.height], [48, 64]);
  });

  test("bad settings are RequestErrors before any step", async () => {
    const good = { width: 64, height: 64, upscaler: "Latent", steps: 1, denoisingStrength: 0.5 };
    let stepped = false;
    const onStep = () => {
      stepped = true;
    };
    for (const bad of [
      { upscaler: "ESRGAN_4x" },
      { width: 4 },
      { steps: 0 },
      { denoisingStrength: 0 },
      { denoisingStrength: 1.5 },
      { cropX: -1 },
    ]) {
      await assert.rejects(generateHires(pipe, req, { ...good, ...bad }, { onStep }), RequestError);
    }
    assert.equal(stepped, false);
    assert.ok(HIRES_UPSCALERS.includes("None") && HIRES_UPSCALERS.includes("Latent (nearest-exact)"));
  });
});

describe("generateHires (tiny SDXL)", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(TINY_SDXL, { threads: 1 });
  });
  after(() => pipe.release());
  const req = { prompt: "a cat", width: 64, height: 64, numInferenceSteps: 2, seed: 5, scheduler: "K_EULER" };

  for (const upscaler of ["Latent", "None"]) {
    test(`${upscaler}: the upscaled size, the same seed the same picture`, async () => {
      const hires = { width: 96, height: 128, upscaler, steps: 2, denoisingStrength: 0.5 };
      const a = await generateHires(pipe, req, hires);
      assert.deepEqual([a.images[0]?.width, a.images[0]?.height], [96, 128]);
      const b = await generateHires(pipe, req, hires);
      assert.deepEqual(b.images[0]?.data, a.images[0]?.data);
    });
  }

  test("the second pass is conditioned on the size upscaled to, before the crop (A1111's hr conds)", async () => {
    const hires = { width: 128, height: 96, cropX: 32, upscaler: "Latent", steps: 2, denoisingStrength: 0.6 };
    const got = await generateHires(pipe, req, hires);
    const first = await pipe.denoise(req);
    const { total, strength } = hiresSchedule(2, 0.6);
    // Upscaled to (96/f, 128/f) latents, then 32 px cut from the columns: half on each side.
    const f = pipe.info.vaeScaleFactor;
    const [h, w, cut] = [96 / f, 128 / f, 32 / f];
    const upscaled = interpolate(first.latents, h, w, { mode: "bilinear" });
    const cropped = { data: new Float32Array(4 * h * (w - cut)), shape: [1, 4, h, w - cut] };
    for (let p = 0; p < 4 * h; p++) {
      cropped.data.set(upscaled.data.subarray(p * w + cut / 2, p * w + w - cut / 2), p * (w - cut));
    }
    const second = { ...req, width: 96, height: 96, numInferenceSteps: total, strength, initLatents: cropped };
    const want = await pipe.generate({ ...second, originalSize: [96, 128], targetSize: [96, 128] });
    assert.deepEqual([got.images[0]?.width, got.images[0]?.height], [96, 96]);
    assert.deepEqual(got.latents.data, want.latents.data);
    // The conditioning matters: at the cropped size the picture differs.
    const plain = await pipe.generate(second);
    assert.notDeepEqual(plain.latents.data, want.latents.data);
  });
});
