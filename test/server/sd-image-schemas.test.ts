/**
 * stability-ai/stable-diffusion-img2img's and -inpainting's Input schemas against what Cog
 * renders from their predict.py (replicate/cog-stable-diffusion-img2img at a02d577, the live
 * inpainting version: shared/spec/replicate-sd-family.md).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { REPLICATE_DEFAULTS } from "../../src/model-catalog.js";
import { imageInputSchemas } from "../../src/server/models/stable-diffusion.js";
import type { JsonSchema } from "../../src/server/schemas/json-schema.js";

function inputOf(kind: "img2img" | "inpainting") {
  const input = imageInputSchemas(kind, REPLICATE_DEFAULTS)["Input"] as JsonSchema;
  return { required: input.required, props: input.properties as Record<string, JsonSchema> };
}

test("img2img: its predict.py's names, defaults, ranges, order and descriptions", () => {
  const { required, props } = inputOf("img2img");
  assert.deepEqual(required, ["image"]);
  assert.deepEqual(Object.keys(props), [
    "prompt",
    "negative_prompt",
    "image",
    "prompt_strength",
    "num_outputs",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "seed",
  ]);
  assert.deepEqual(
    Object.values(props).map((p) => p["x-order"]),
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
  );
  assert.equal(props["prompt"]?.default, "A fantasy landscape, trending on artstation");
  assert.equal(props["negative_prompt"]?.default, undefined);
  assert.equal(
    props["negative_prompt"]?.description,
    "The prompt NOT to guide the image generation. Ignored when not using guidance",
  );
  assert.equal(props["image"]?.description, "Inital image to generate variations of.");
  assert.equal(props["prompt_strength"]?.default, 0.8);
  assert.deepEqual(
    [props["num_outputs"]?.minimum, props["num_outputs"]?.maximum, props["num_outputs"]?.default],
    [1, 8, 1],
  );
  assert.equal(props["num_outputs"]?.description, "Number of images to output. Higher number of outputs may OOM.");
  assert.deepEqual(
    [
      props["num_inference_steps"]?.minimum,
      props["num_inference_steps"]?.maximum,
      props["num_inference_steps"]?.default,
    ],
    [1, 500, 25],
  );
  assert.deepEqual(
    [props["guidance_scale"]?.minimum, props["guidance_scale"]?.maximum, props["guidance_scale"]?.default],
    [1, 20, 7.5],
  );
  assert.equal(props["scheduler"]?.default, "DPMSolverMultistep");
});

test("inpainting: image and mask required, width/height 512, 1–4 outputs, 50 steps", () => {
  const { required, props } = inputOf("inpainting");
  assert.deepEqual(required, ["image", "mask"]);
  assert.equal(
    props["mask"]?.description,
    "Black and white image to use as mask for inpainting over the image provided. White pixels are inpainted and black pixels are preserved",
  );
  assert.deepEqual([props["width"]?.default, props["height"]?.default], [512, 512]);
  assert.deepEqual([props["num_outputs"]?.maximum, props["num_inference_steps"]?.default], [4, 50]);
  assert.equal(props["negative_prompt"]?.description, "Specify things to not see in the output");
  assert.equal(props["scheduler"]?.default, "DPMSolverMultistep");
});
