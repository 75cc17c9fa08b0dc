/**
 * What generate() promises for image inputs besides the golden numbers: the generation size
 * (the picture's own, rounded down, or width/height with the picture resized), masks of another
 * size, batches, the 4-channel blend keeping what the mask keeps, and clear RequestErrors for
 * every bad combination.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import type { RgbImage } from "../../src/engine/image.js";
import { pixelsToTensor } from "../../src/engine/image-input.js";
import { type GenerateRequest, loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { TorchCpuGenerator } from "../../src/engine/random/torch-cpu.js";
import { familyManifest, GOLDEN_FAMILY, maxAbsDiff, modelDir } from "../helpers/fixtures.js";

function picture(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i % 7) * 11) % 256;
  return { width, height, data };
}

function grey(width: number, height: number, value: (x: number, y: number) => number) {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = value(x, y);
  return { width, height, data };
}

async function rejectsWith(p: Promise<unknown>, field: string, pattern: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RequestError, `a RequestError, got ${String(err)}`);
    assert.equal(err.field, field);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("image inputs (tiny-sd2v, VAE factor 8)", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  });
  after(() => pipe.release());
  const base = { prompt: "a cat", numInferenceSteps: 4, seed: 5, scheduler: "DDIM" };

  test("img2img runs at the picture's own size rounded down to a multiple of 8", async () => {
    const r = await pipe.generate({ ...base, image: picture(70, 45) });
    assert.deepEqual([r.images[0]?.width, r.images[0]?.height], [64, 40]);
    assert.equal(r.parameters.strength, 0.8);
  });

  test("width and height resize the picture first", async () => {
    const r = await pipe.generate({ ...base, image: picture(70, 45), width: 32, height: 48 });
    assert.deepEqual([r.images[0]?.width, r.images[0]?.height], [32, 48]);
  });

  test("strength sets how many steps run: floor(steps × strength)", async () => {
    const totals: number[] = [];
    for (const strength of [0.25, 0.5, 0.99, 1]) {
      let total = 0;
      const onStep = (e: { total: number }) => {
        total = e.total;
      };
      await pipe.generate({ ...base, image: picture(32, 32), strength }, { onStep });
      totals.push(total);
    }
    assert.deepEqual(totals, [1, 2, 3, 4]);
  });

  test("a batch shares the picture's encoding and draws its own noise", async () => {
    const r = await pipe.generate({ ...base, image: picture(32, 32), numOutputs: 2 });
    assert.equal(r.images.length, 2);
    assert.notDeepEqual(r.images[0]?.data, r.images[1]?.data);
  });

  test("a mask of another size is resized to the picture; 4-channel inpainting works from a grey or RGB mask", async () => {
    const mask = grey(20, 10, (x) => (x < 10 ? 255 : 0));
    const r = await pipe.generate({ ...base, image: picture(48, 32), mask });
    assert.deepEqual([r.images[0]?.width, r.images[0]?.height], [48, 32]);
    const rgbMask = { width: 20, height: 10, data: new Uint8Array(600).fill(255) };
    const r2 = await pipe.generate({ ...base, image: picture(48, 32), mask: rgbMask, strength: 0.5 });
    assert.equal(r2.images.length, 1);
  });

  test("4-channel inpainting with an all-black mask keeps the picture's latents (the last blend is un-noised)", async () => {
    const image = picture(32, 32);
    const r = await pipe.generate({ ...base, image, mask: grey(32, 32, () => 0), strength: 1 });
    const { mean, std } = await (await pipe.vaeEncoder()).encode(pixelsToTensor(image));
    const eps = new TorchCpuGenerator(base.seed).randn(mean.shape);
    const s = Math.fround(pipe.info.vaeScalingFactor);
    const expected = mean.data.map((m, i) =>
      Math.fround(s * Math.fround(m + Math.fround((std.data[i] as number) * (eps[i] as number)))),
    );
    assert.equal(maxAbsDiff(r.latents.data, expected), 0);
  });

  test("bad combinations and values are RequestErrors naming the field", async () => {
    const image = picture(32, 32);
    const cases: [Partial<GenerateRequest>, string, RegExp][] = [
      [{ image, strength: 0 }, "strength", /in \(0, 1\]/],
      [{ image, strength: 1.5 }, "strength", /in \(0, 1\]/],
      [{ image, strength: Number.NaN }, "strength", /in \(0, 1\]/],
      [{ strength: 0.5 }, "strength", /image inputs only/],
      [{ image, strength: 0.2 }, "strength", /runs no step/],
      [{ mask: grey(32, 32, () => 255) }, "mask", /needs an image/],
      [{ image: { width: 32, height: 32, data: new Uint8Array(10) } }, "image", /RGB pixels/],
      [{ image, mask: { width: 32, height: 32, data: new Uint8Array(7) } }, "mask", /pixels/],
      [
        { image, latents: { data: new Float32Array(64), shape: [1, 4, 4, 4] } },
        "latents",
        /cannot be given with an image/,
      ],
      [{ image: picture(5, 5) }, "width", /positive multiple of 8/],
    ];
    for (const [extra, field, pattern] of cases)
      await rejectsWith(pipe.generate({ ...base, ...extra }), field, pattern);
  });
});

test("release() also releases the VAE encoder loaded for image inputs", async () => {
  const pipe = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  const encoder = await pipe.vaeEncoder();
  const pixels = pixelsToTensor(picture(16, 16));
  await encoder.encode(pixels);
  await pipe.release();
  await assert.rejects(encoder.encode(pixels));
});

test("with the tiny autoencoder as decoder, the picture is still encoded by the model's VAE at its scaling factor", async () => {
  const full = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  const tiny = await loadPipeline(modelDir("tiny-sd2v"), {
    threads: 1,
    vae: path.join(GOLDEN_FAMILY, "taesd", "tiny-taesd"),
  });
  try {
    assert.notEqual(tiny.info.vaeScalingFactor, full.info.vaeScalingFactor);
    const req = { prompt: "a cat", image: picture(32, 32), strength: 0.5, numInferenceSteps: 4, seed: 9 };
    const a = await full.generate(req);
    const b = await tiny.generate(req);
    // The denoising does not depend on the decoder: the same latents, decoded two ways.
    assert.equal(maxAbsDiff(a.latents.data, b.latents.data), 0);
    assert.deepEqual([b.images[0]?.width, b.images[0]?.height], [32, 32]);
  } finally {
    await full.release();
    await tiny.release();
  }
});

describe("an inpainting checkpoint (9-channel UNet)", () => {
  let pipe: Pipeline;
  before(async () => {
    const m = familyManifest("inpaint");
    pipe = await loadPipeline(path.join(GOLDEN_FAMILY, "inpaint", m.inpaint_model.dir), { threads: 1 });
  });
  after(() => pipe.release());

  test("needs an image and a mask", async () => {
    await rejectsWith(pipe.generate({ prompt: "a cat", numInferenceSteps: 2 }), "image", /inpainting model/);
    await rejectsWith(
      pipe.generate({ prompt: "a cat", numInferenceSteps: 2, image: picture(32, 32) }),
      "mask",
      /inpainting model/,
    );
  });
});
