/**
 * Replicate's SDXL refine modes (engine-process.ts `refined`) as cog-sdxl's predict() runs diffusers,
 * on tiny-sdxl and a tiny refiner made from it:
 * - the base's latents go to the refiner as they are (output_type="latent", image=output.images):
 *   no decode and re-encode between them;
 * - one torch generator, seeded once, for both: the refiner's noise (base_image_refiner's img2img
 *   start) is the generator's next draw after the base's, for the whole batch at once;
 * - the refiner keeps its own scheduler (cog-sdxl sets `scheduler` on the base's pipeline only);
 * - base_image_refiner is diffusers' SDXL img2img at its default strength 0.3;
 * - the refiner's latents are decoded by the base's VAE (cog-sdxl's refiner shares it).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decodedToImages, type RgbImage } from "../../src/engine/image.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { TorchCpuGenerator } from "../../src/engine/random/torch-cpu.js";
import { refined } from "../../src/server/models/engine-process.js";
import { TINY_SDXL, writeTinyRefiner } from "../helpers/tiny-refiner.js";

let tmp: string;
let base: Pipeline;
let refiner: Pipeline;
before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "sdserve-sdxl-refine-modes-"));
  base = await loadPipeline(TINY_SDXL, { threads: 2 });
  refiner = await loadPipeline(await writeTinyRefiner(path.join(tmp, "refiner")), { threads: 2 });
});
after(async () => {
  await base?.release();
  await refiner?.release();
  rmSync(tmp, { recursive: true, force: true });
});

const request = {
  prompt: "a lighthouse at dusk",
  negativePrompt: "",
  guidanceScale: 7.5,
  numInferenceSteps: 8,
  width: 96,
  height: 64,
  seed: 77,
  numOutputs: 2,
};

const pixels = (images: readonly RgbImage[]) => images.map((i) => Array.from(i.data));

describe("cog-sdxl's refine modes", () => {
  test("a generator passed in is continued: fresh it is the seed's, after a draw it is not", async () => {
    const one = { ...request, numOutputs: 1, numInferenceSteps: 2 };
    const seeded = await base.denoise(one);
    const fresh = await base.denoise(one, { generator: new TorchCpuGenerator(77) });
    assert.deepEqual(Array.from(fresh.latents.data), Array.from(seeded.latents.data));
    const used = new TorchCpuGenerator(77);
    used.randn([1, 4, 8, 12]);
    const later = await base.denoise(one, { generator: used });
    assert.notDeepEqual(Array.from(later.latents.data), Array.from(seeded.latents.data));
  });

  test("expert_ensemble_refiner: the base's latents to high_noise_frac, the rest on the refiner's own scheduler", async () => {
    const req = { ...request, scheduler: "DDIM" };
    const steps: number[] = [];
    const out = await refined(
      base,
      refiner,
      req,
      { mode: "expert_ensemble_refiner", highNoiseFrac: 0.5 },
      { onStep: ({ timestep }) => void steps.push(timestep) },
    );
    // DDIM then the refiner's Euler, 8 leading steps: 876, 751, 626, 501 | 376, 251, 126, 1.
    assert.deepEqual(steps, [876, 751, 626, 501, 376, 251, 126, 1]);

    const generator = new TorchCpuGenerator(77);
    const high = await base.denoise({ ...req, denoisingEnd: 0.5 }, { generator });
    const hand = { ...request, latents: high.latents, denoisingStart: 0.5 };
    // No scheduler named: the refiner folder's own (EulerDiscreteScheduler), as cog-sdxl leaves it.
    const low = await refiner.denoise(hand, { generator });
    const expected = decodedToImages(await base.decodeLatents(low.latents));
    assert.deepEqual(pixels(out.images), pixels(expected));
    // The input's scheduler on the refiner too (what was done before) is another picture.
    const onDdim = await refiner.denoise({ ...hand, scheduler: "DDIM" });
    assert.notDeepEqual(pixels(out.images), pixels(decodedToImages(await base.decodeLatents(onDdim.latents))));
  });

  test("expert_ensemble_refiner at high_noise_frac 0 or 1: no split (diffusers takes only 0 < x < 1), the refiner as img2img", async () => {
    const req = { ...request, numOutputs: 1, numInferenceSteps: 4 };
    const generator = new TorchCpuGenerator(77);
    const whole = await base.denoise(req, { generator });
    const after = { ...request, numOutputs: 1, numInferenceSteps: 4, initLatents: whole.latents, strength: 0.3 };
    const low = await refiner.denoise(after, { generator });
    const expected = pixels(decodedToImages(await base.decodeLatents(low.latents)));
    for (const highNoiseFrac of [0, 1]) {
      const steps: number[] = [];
      // refine_steps is base_image_refiner's: not used here.
      const out = await refined(
        base,
        refiner,
        req,
        { mode: "expert_ensemble_refiner", highNoiseFrac, steps: 9 },
        { onStep: ({ timestep }) => void steps.push(timestep) },
      );
      // The base's 4 steps, then ⌊4 × 0.3⌋ = 1 of the refiner's 4.
      assert.deepEqual(steps, [751, 501, 251, 1, 1]);
      assert.deepEqual(pixels(out.images), expected, `high_noise_frac ${highNoiseFrac}`);
    }
  });

  test("expert_ensemble_refiner from a picture at a low strength: the base keeps no step, the refiner runs its part", async () => {
    const image = { width: 96, height: 64, data: new Uint8Array(96 * 64 * 3).fill(90) };
    const steps: number[] = [];
    // 8 steps at strength 0.2 start at t = 1, below the 0.5 cutoff (500): diffusers' base runs
    // none and hands on the noised picture; the refiner runs its steps under 500.
    const out = await refined(
      base,
      refiner,
      { ...request, numOutputs: 1, image, strength: 0.2 },
      { mode: "expert_ensemble_refiner", highNoiseFrac: 0.5 },
      { onStep: ({ timestep }) => void steps.push(timestep) },
    );
    assert.deepEqual(steps, [376, 251, 126, 1]);
    assert.deepEqual([out.images.length, out.images[0]?.width, out.images[0]?.height], [1, 96, 64]);
  });

  test("base_image_refiner: the base's latents, noised by the generator's next draw, refined at strength 0.3", async () => {
    const req = { ...request, scheduler: "K_EULER_ANCESTRAL" };
    const steps: number[] = [];
    const out = await refined(
      base,
      refiner,
      req,
      { mode: "base_image_refiner", highNoiseFrac: 0.8, steps: 10 },
      { onStep: ({ timestep }) => void steps.push(timestep) },
    );
    // The base's 8 steps, then ⌊10 × 0.3⌋ = 3 of the refiner's 10 (Euler, leading: 201, 101, 1).
    assert.equal(steps.length, 8 + 3);
    assert.deepEqual(steps.slice(8), [201, 101, 1]);
    assert.equal(out.images.length, 2);
    assert.notDeepEqual(Array.from(out.images[0]?.data ?? []), Array.from(out.images[1]?.data ?? []));

    // The same run written out: one generator through both, the whole batch in one refiner call.
    const generator = new TorchCpuGenerator(77);
    const first = await base.denoise(req, { generator });
    const after = { ...request, numInferenceSteps: 10, initLatents: first.latents, strength: 0.3 };
    const low = await refiner.denoise(after, { generator });
    assert.deepEqual(pixels(out.images), pixels(decodedToImages(await base.decodeLatents(low.latents))));
    // A new generator for the refiner (its noise then the base's first draw) is another picture.
    const reseeded = await refiner.denoise(after);
    assert.notDeepEqual(pixels(out.images), pixels(decodedToImages(await base.decodeLatents(reseeded.latents))));
    // So is refining the decoded picture (a VAE round trip through 8 bits) instead of the latents.
    const decoded = decodedToImages(await base.decodeLatents(first.latents));
    const viaPicture = await refiner.generate({
      ...request,
      numOutputs: 1,
      numInferenceSteps: 10,
      image: decoded[0],
      strength: 0.3,
    });
    assert.notDeepEqual(Array.from(out.images[0]?.data ?? []), Array.from(viaPicture.images[0]?.data ?? []));
  });
});
