/**
 * Full text-to-image runs of both fixture models with every scheduler the fixtures hold,
 * against diffusers' StableDiffusionPipeline: latents after every step, final latents and
 * the output images.
 *
 * Tolerances: latents 1e-4 relative to the tensor's largest |value| (measured ≤ 8e-6; the
 * reference itself moves by 6e-6 between torch's CPU kernels; the fixtures' README suggests
 * 1e-3); images 1e-4 abs in [0, 1] floats (measured ≤ 2e-5) and 8-bit values within ±1 level.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { FIXTURE_MODELS, manifest, maxAbs, maxAbsDiff, modelDir, refTensor } from "../helpers/fixtures.js";

const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;

interface Run {
  id: string;
  scheduler_class: string;
  scheduler_from_config_extra: Record<string, unknown>;
  prompt: string;
  negative_prompt: string;
  num_inference_steps: number;
  guidance_scale: number;
  height: number;
  width: number;
  num_images_per_prompt: number;
  generator_seed: number;
  initial_latents: string | null;
  callback_timesteps: number[];
}

const key = (file: string) => file.replace(/^ref\/|\.bin$/g, "");

function relErr(actual: Float32Array, expected: Float32Array): number {
  return maxAbsDiff(actual, expected) / maxAbs(expected);
}

for (const model of FIXTURE_MODELS) {
  describe(`${model} text-to-image`, () => {
    let pipe: Pipeline;
    before(async () => {
      pipe = await loadPipeline(modelDir(model), { threads: 2 });
    });
    after(() => pipe.release());

    for (const run of manifest(model).runs as Run[]) {
      test(`${run.id}: ${run.scheduler_class} ${run.num_inference_steps} steps, cfg ${run.guidance_scale}`, async () => {
        const steps: Float32Array[] = [];
        const timesteps: number[] = [];
        const extra = run.scheduler_from_config_extra;
        const result = await pipe.generate(
          {
            prompt: run.prompt,
            negativePrompt: run.negative_prompt,
            numInferenceSteps: run.num_inference_steps,
            guidanceScale: run.guidance_scale,
            height: run.height,
            width: run.width,
            numOutputs: run.num_images_per_prompt,
            seed: run.generator_seed,
            scheduler: run.scheduler_class,
            useKarrasSigmas: extra["use_karras_sigmas"] === true,
            latents: run.initial_latents?.startsWith("ref/") ? refTensor(model, key(run.initial_latents)) : undefined,
          },
          {
            onStep: ({ latents, timestep }) => {
              steps.push(Float32Array.from(latents.data));
              timesteps.push(timestep);
            },
          },
        );
        assert.equal(result.seed, BigInt(run.generator_seed));
        assert.deepEqual(
          timesteps,
          run.callback_timesteps.map((t) => Math.fround(t)),
        );

        const stepRef = refTensor(model, `run_${run.id}_step_latents`);
        const per = stepRef.data.length / steps.length;
        assert.equal(stepRef.shape[0], steps.length);
        steps.forEach((s, i) => {
          const err = relErr(s, stepRef.data.subarray(i * per, (i + 1) * per));
          assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
        });

        const finalRef = refTensor(model, `run_${run.id}_final_latents`);
        assert.deepEqual(result.latents.shape, finalRef.shape);
        const latentErr = relErr(result.latents.data, finalRef.data);
        assert.ok(latentErr <= LATENT_REL_TOL, `final latents: relative error ${latentErr}`);

        const imageRef = refTensor(model, `run_${run.id}_image`);
        const images = decodedToFloatImages(result.decoded);
        const imageErr = maxAbsDiff(images, imageRef.data);
        assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
        const ours = result.images.flatMap((im) => Array.from(im.data));
        let levels = 0;
        for (let i = 0; i < ours.length; i++) {
          levels = Math.max(levels, Math.abs((ours[i] as number) - Math.round((imageRef.data[i] as number) * 255)));
        }
        assert.ok(levels <= 1, `8-bit image differs by ${levels} levels`);
      });
    }
  });
}
