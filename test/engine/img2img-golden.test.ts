/**
 * img2img against diffusers' StableDiffusionImg2ImgPipeline (golden-family/img2img): the PNG
 * preprocessing, the VAE encoder's latent distribution, the generator's draws (encode sample,
 * then noise), each scheduler's add_noise at the start step, and every fixture run in full
 * (both models, strengths 0.3 / 0.75 / 1 × DDIM / Euler a / DPM++ 2M, and non-square inputs):
 * the timesteps run, the latents after every step and the image.
 *
 * Tolerances are the text-to-image golden test's (pipeline.test.ts): latents 1e-4 relative to
 * the tensor's largest |value|, images 1e-4 abs and 8-bit within ±1 level; encoder mean / std
 * 5e-4 abs (the fixtures' README). Measured figures are printed as test diagnostics.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { decodeImage, pixelsToTensor } from "../../src/engine/image-input.js";
import { VaeEncoder } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { TorchCpuGenerator } from "../../src/engine/random/torch-cpu.js";
import { createScheduler } from "../../src/engine/schedulers/index.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import {
  assertRunMatches,
  FIXTURE_MODELS,
  familyManifest,
  familyTensor,
  GOLDEN_FAMILY,
  maxAbs,
  maxAbsDiff,
  modelDir,
} from "../helpers/fixtures.js";

const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;
const VAE_TOL = 5e-4;

interface Img2ImgRun {
  id: string;
  model: (typeof FIXTURE_MODELS)[number];
  input: string;
  strength: number;
  scheduler_class: string;
  num_inference_steps: number;
  guidance_scale: number;
  prompt: string;
  negative_prompt: string;
  generator_seed: number;
  height: number;
  width: number;
  timesteps_used: number[];
}

const SECTION = "img2img";
const m = familyManifest(SECTION);
const runs = m.runs as Img2ImgRun[];
const tensor = (key: string) => familyTensor(SECTION, key);
const relErr = (a: Float32Array, e: Float32Array) => maxAbsDiff(a, e) / maxAbs(e);

async function inputImage(name: string) {
  return decodeImage(readFileSync(path.join(GOLDEN_FAMILY, SECTION, m.inputs[name].png)));
}

test("input PNGs decode and preprocess exactly as diffusers (x / 255 · 2 − 1)", async () => {
  for (const name of Object.keys(m.inputs)) {
    const image = await inputImage(name);
    assert.equal(image.width, m.inputs[name].width);
    assert.equal(image.height, m.inputs[name].height);
    const ours = pixelsToTensor(image);
    const ref = tensor(`${name}_preprocessed`);
    assert.deepEqual(ours.shape, ref.shape);
    assert.equal(maxAbsDiff(ours.data, ref.data), 0, name);
  }
});

test("the first two draws are the encode sample and the noise; add_noise gives the starting latents", () => {
  for (const run of runs) {
    const mean = tensor(`${run.id}_encode_mean`);
    const std = tensor(`${run.id}_encode_std`);
    const g = new TorchCpuGenerator(run.generator_seed);
    const eps = g.randn(mean.shape);
    const sample = mean.data.map((v, i) => v + Math.fround((std.data[i] as number) * (eps[i] as number)));
    assert.ok(maxAbsDiff(sample, tensor(`${run.id}_encode_sample`).data) <= 2e-6, `${run.id}: encode sample`);
    const init = sample.map((v) => Math.fround(0.18215) * v);
    assert.ok(maxAbsDiff(init, tensor(`${run.id}_init_latents`).data) <= 2e-6, `${run.id}: init latents`);
    const noise = g.randn(mean.shape);
    assert.ok(maxAbsDiff(noise, tensor(`${run.id}_noise`).data) <= 2e-6, `${run.id}: noise`);

    const config = JSON.parse(readFileSync(path.join(modelDir(run.model), "scheduler/scheduler_config.json"), "utf8"));
    const s = createScheduler(run.scheduler_class, config, run.num_inference_steps);
    const steps = run.num_inference_steps;
    const begin = (steps - Math.min(Math.floor(steps * run.strength), steps)) * s.order;
    assert.deepEqual(
      s.timesteps.slice(begin),
      run.timesteps_used.map((t) => Math.fround(t)),
      `${run.id}: timesteps`,
    );
    const ref = tensor(`${run.id}_init_latents`).data;
    const noised = s.addNoise(ref, tensor(`${run.id}_noise`).data, begin);
    const err = relErr(noised, tensor(`${run.id}_noised_latents`).data);
    assert.ok(err <= 1e-6, `${run.id}: add_noise off by ${err} relative`);
  }
});

for (const model of FIXTURE_MODELS) {
  test(`${model}: the VAE encoder's mean and std match diffusers`, async (t) => {
    const folder = await openModelFolder(modelDir(model));
    const encoder = await VaeEncoder.load(folder.vae, { threads: 2 });
    try {
      for (const name of Object.keys(m.inputs)) {
        const run = runs.find((r) => r.model === model && r.input === name) as Img2ImgRun;
        const { mean, std } = await encoder.encode(tensor(`${name}_preprocessed`));
        const ref = tensor(`${run.id}_encode_mean`);
        assert.deepEqual(mean.shape, ref.shape);
        const dm = maxAbsDiff(mean.data, ref.data);
        const ds = maxAbsDiff(std.data, tensor(`${run.id}_encode_std`).data);
        t.diagnostic(`${name}: mean ${dm.toExponential(1)}, std ${ds.toExponential(1)} abs`);
        assert.ok(dm <= VAE_TOL && ds <= VAE_TOL, `${name}: mean off by ${dm}, std by ${ds}`);
      }
    } finally {
      await encoder.session.release();
    }
  });

  describe(`${model} img2img runs`, () => {
    let pipe: Pipeline;
    before(async () => {
      pipe = await loadPipeline(modelDir(model), { threads: 2 });
    });
    after(() => pipe.release());

    for (const run of runs.filter((r) => r.model === model)) {
      test(`${run.id}: ${run.scheduler_class}, strength ${run.strength}`, async (t) => {
        const steps: Float32Array[] = [];
        const timesteps: number[] = [];
        const result = await pipe.generate(
          {
            prompt: run.prompt,
            negativePrompt: run.negative_prompt,
            image: await inputImage(run.input),
            strength: run.strength,
            numInferenceSteps: run.num_inference_steps,
            guidanceScale: run.guidance_scale,
            seed: run.generator_seed,
            scheduler: run.scheduler_class,
          },
          {
            onStep: ({ latents, timestep, step, total }) => {
              assert.equal(step, steps.length + 1);
              assert.equal(total, run.timesteps_used.length);
              steps.push(Float32Array.from(latents.data));
              timesteps.push(timestep);
            },
          },
        );
        assert.deepEqual(
          timesteps,
          run.timesteps_used.map((v) => Math.fround(v)),
        );
        assert.equal(result.parameters.width, run.width);
        assert.equal(result.parameters.height, run.height);
        assertRunMatches(
          t,
          {
            steps,
            stepRef: tensor(`${run.id}_step_latents`),
            floatImage: decodedToFloatImages(result.decoded),
            image8: result.images[0]?.data as Uint8Array,
            imageRef: tensor(`${run.id}_image`),
          },
          { latentRelTol: LATENT_REL_TOL, imageTol: IMAGE_TOL },
        );
      });
    }
  });
}
