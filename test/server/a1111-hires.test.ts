/**
 * The hires fix's fields read as A1111's StableDiffusionProcessingTxt2Img reads them
 * (calculate_target_resolution, its extra_generation_params in order), and img2img's step count
 * (setup_img2img_steps): worked cases, and the refusals as 422s on the field at fault.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { A1111Error } from "../../src/server/a1111/errors.js";
import { resolveHires } from "../../src/server/a1111/hires.js";
import { img2imgRuns, img2imgStrength } from "../../src/server/a1111/img2img.js";

const first = { width: 512, height: 512, steps: 20, prompt: "a cat", negative: "", sampler: "Euler" };
const LIMIT = 1024 * 1024;

describe("resolveHires", () => {
  test("off unless enable_hr", () => {
    assert.equal(resolveHires({ hr_scale: 2 }, first, LIMIT), undefined);
  });

  test("hr_scale: int(size × scale); defaults Latent, 0.75, the first pass's steps", () => {
    const r = resolveHires({ enable_hr: true, hr_scale: 1.7 }, { ...first, width: 512, height: 384 }, LIMIT);
    assert.ok(r);
    assert.deepEqual([r.fix.width, r.fix.height, r.outWidth, r.outHeight], [870, 652, 864, 648]);
    assert.deepEqual([r.fix.upscaler, r.fix.denoisingStrength, r.fix.steps], ["Latent", 0.75, 20]);
    assert.deepEqual(r.extra, [["Hires upscale", 1.7]]);
  });

  test("hr_resize_x alone follows the ratio; both cover the box, then crop in latents", () => {
    const one = resolveHires({ enable_hr: true, hr_resize_x: 768 }, { ...first, height: 256 }, LIMIT);
    assert.deepEqual([one?.fix.width, one?.fix.height, one?.fix.cropX, one?.fix.cropY], [768, 384, 0, 0]);
    // 512×512 to 1024×768: covered as 1024×1024, cropped (1024 − 768) / 8 = 32 latent rows.
    const both = resolveHires({ enable_hr: true, hr_resize_x: 1024, hr_resize_y: 768 }, first, LIMIT);
    assert.deepEqual([both?.fix.width, both?.fix.height, both?.fix.cropX, both?.fix.cropY], [1024, 1024, 0, 256]);
    assert.deepEqual([both?.outWidth, both?.outHeight], [1024, 768]);
    assert.deepEqual(both?.extra, [["Hires resize", "1024x768"]]);
  });

  test('hr_sampler_name "Use same sampler" or the first pass\'s: no Hires sampler entry', () => {
    for (const name of ["Use same sampler", "Euler", ""]) {
      const r = resolveHires({ enable_hr: true, hr_sampler_name: name }, first, LIMIT);
      assert.deepEqual(r?.extra, [["Hires upscale", 2]]);
      assert.equal(r?.sampler, undefined);
    }
  });

  test("the old firstphase fields: width/height are the final size", () => {
    const r = resolveHires({ enable_hr: true, firstphase_width: 256, firstphase_height: 256 }, first, LIMIT);
    assert.deepEqual([r?.width, r?.height, r?.fix.width, r?.fix.height], [256, 256, 512, 512]);
  });

  test("extra parameters in A1111's order", () => {
    const r = resolveHires(
      {
        enable_hr: true,
        hr_sampler_name: "DDIM",
        hr_prompt: "a big cat",
        hr_second_pass_steps: 8,
        hr_upscaler: "Latent (nearest)",
        denoising_strength: 0.4,
      },
      first,
      LIMIT,
    );
    assert.deepEqual(r?.extra, [
      ["Hires sampler", "DDIM"],
      ["Hires prompt", "a big cat"],
      ["Hires upscale", 2],
      ["Hires steps", 8],
      ["Hires upscaler", "Latent (nearest)"],
    ]);
    assert.deepEqual([r?.fix.steps, r?.fix.denoisingStrength, r?.sampler], [8, 0.4, "DDIM"]);
  });

  test("refusals are 422s on the field", () => {
    const field = (body: Record<string, unknown>) => {
      try {
        resolveHires({ enable_hr: true, ...body }, first, LIMIT);
      } catch (err) {
        assert.ok(err instanceof A1111Error);
        assert.equal(err.status, 422);
        return ((err.body["detail"] as { loc: string[] }[])[0]?.loc ?? [])[1];
      }
      return undefined;
    };
    assert.equal(field({ hr_upscaler: "SwinIR 4x" }), "hr_upscaler");
    assert.equal(field({ hr_scale: 4 }), "hr_scale"); // 2048² > the limit
    assert.equal(field({ hr_resize_x: 4096 }), "hr_resize_x");
    assert.equal(field({ denoising_strength: 0 }), "denoising_strength");
    assert.equal(field({ hr_resize_x: 4, hr_resize_y: 4 }), "hr_resize_x");
  });
});

describe("img2img's step count (A1111's setup_img2img_steps)", () => {
  test("int(min(d, 0.999) · steps) + 1 of steps run, and the engine's strength runs exactly that", () => {
    assert.equal(img2imgRuns(20, 0.75), 16);
    assert.equal(img2imgRuns(20, 1), 20); // int(19.98) + 1
    assert.equal(img2imgRuns(20, 0), 1);
    for (let steps = 1; steps <= 80; steps++) {
      for (const d of [0, 0.05, 0.3, 0.5, 0.75, 0.999, 1]) {
        const runs = img2imgRuns(steps, d);
        assert.equal(Math.min(Math.floor(steps * img2imgStrength(steps, d)), steps), runs, `${steps} steps, d ${d}`);
      }
    }
  });
});
