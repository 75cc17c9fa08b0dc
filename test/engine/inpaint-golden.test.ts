/**
 * Inpainting against diffusers' StableDiffusionInpaintPipeline (golden-family/inpaint), both
 * ways: the 9-channel inpainting UNet (`tiny-sd1-inpaint`, F16 weights computed in float32) and
 * an ordinary 4-channel model (golden `tiny-sd1`) with the known region blended back after every
 * step. Checked: the mask's binarisation and nearest downsampling and the masked picture
 * (exact), then every fixture run in full: the timesteps run, the latents after every step and
 * the image.
 *
 * Tolerances are the text-to-image golden test's (pipeline.test.ts): latents 1e-4 relative to
 * the tensor's largest |value|, images 1e-4 abs and 8-bit within ±1 level. Measured figures are
 * printed as test diagnostics.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { binariseMask, decodeImage, pixelsToTensor, resizeNearest, toGray } from "../../src/engine/image-input.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import {
  assertRunMatches,
  familyManifest,
  familyTensor,
  GOLDEN_FAMILY,
  maxAbsDiff,
  modelDir,
} from "../helpers/fixtures.js";

const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;

interface InpaintRun {
  id: string;
  kind: "inpaint9" | "legacy4";
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

const SECTION = "inpaint";
const m = familyManifest(SECTION);
const runs = m.runs as InpaintRun[];
const tensor = (key: string) => familyTensor(SECTION, key);
const file = (rel: string) => readFileSync(path.join(GOLDEN_FAMILY, SECTION, rel));

async function inputs(name: string) {
  const image = await decodeImage(file(m.inputs[name].png));
  const mask = await decodeImage(file(m.inputs[name].mask_png), { field: "mask" });
  return { image, mask };
}

test("mask: binarised at full size, nearest-downsampled, and the masked picture, exactly as diffusers", async () => {
  const seen = new Set<string>();
  for (const run of runs) {
    if (seen.has(run.input)) continue;
    seen.add(run.input);
    const { image, mask } = await inputs(run.input);
    const condition = binariseMask(toGray(mask));
    assert.equal(
      maxAbsDiff(condition.data, tensor(`${run.id}_mask_condition`).data),
      0,
      `${run.input}: mask condition`,
    );
    const mref = tensor(`${run.id}_mask_latents`);
    const small = resizeNearest(condition, mref.shape[2] as number, mref.shape[3] as number);
    // The reference holds the mask twice (uncond and cond halves).
    assert.equal(maxAbsDiff([...small.data, ...small.data], mref.data), 0, `${run.input}: mask latents`);
    const pixels = pixelsToTensor(image);
    const plane = condition.data.length;
    const masked = pixels.data.map((v, j) => ((condition.data[j % plane] as number) < 0.5 ? v : 0));
    assert.equal(maxAbsDiff(masked, tensor(`${run.id}_masked_image`).data), 0, `${run.input}: masked image`);
  }
});

for (const kind of ["inpaint9", "legacy4"] as const) {
  describe(`${kind} inpainting runs`, () => {
    let pipe: Pipeline;
    before(async () => {
      const dir = kind === "inpaint9" ? path.join(GOLDEN_FAMILY, SECTION, m.inpaint_model.dir) : modelDir("tiny-sd1");
      pipe = await loadPipeline(dir, { threads: 2 });
      assert.equal(pipe.info.inpaintingUNet, kind === "inpaint9");
    });
    after(() => pipe.release());

    for (const run of runs.filter((r) => r.kind === kind)) {
      test(`${run.id}: ${run.scheduler_class}, strength ${run.strength}`, async (t) => {
        const steps: Float32Array[] = [];
        const timesteps: number[] = [];
        const { image, mask } = await inputs(run.input);
        const result = await pipe.generate(
          {
            prompt: run.prompt,
            negativePrompt: run.negative_prompt,
            image,
            mask,
            strength: run.strength,
            width: run.width,
            height: run.height,
            numInferenceSteps: run.num_inference_steps,
            guidanceScale: run.guidance_scale,
            seed: run.generator_seed,
            scheduler: run.scheduler_class,
          },
          {
            onStep: ({ latents, timestep }) => {
              steps.push(Float32Array.from(latents.data));
              timesteps.push(timestep);
            },
          },
        );
        assert.deepEqual(
          timesteps,
          run.timesteps_used.map((v) => Math.fround(v)),
        );
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
