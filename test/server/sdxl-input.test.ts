/** sdxl.ts: stability-ai/sdxl's inputs beyond its schema (replicate_weights URLs, mask without image, sizes) and the engine job made from them. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { SDXL_DEFAULTS, SDXL_MAX_PIXELS } from "../../src/model-catalog.js";
import { sdxlInvalidFields, sdxlJob, sdxlSchemas } from "../../src/server/models/sdxl.js";
import { validate } from "../../src/server/schemas/json-schema.js";

const schemas = sdxlSchemas(SDXL_DEFAULTS);
const defaults = Object.fromEntries(
  Object.entries(schemas["Input"]?.properties ?? {}).map(([k, p]) => [k, p["default"]]),
);

test("422s the schema cannot express: replicate_weights, mask without image, sizes", () => {
  const fields = (input: Record<string, unknown>) => sdxlInvalidFields({ ...defaults, ...input }).map((f) => f.field);
  assert.deepEqual(fields({}), []);
  assert.deepEqual(fields({ replicate_weights: "https://x/y.tar" }), []);
  assert.deepEqual(fields({ replicate_weights: "" }), [], "an empty string is no weights, as in cog-sdxl");
  assert.deepEqual(fields({ replicate_weights: "ftp://x/y.tar" }), ["input.replicate_weights"]);
  assert.deepEqual(fields({ replicate_weights: "data:application/x-tar;base64,@@" }), ["input.replicate_weights"]);
  assert.deepEqual(fields({ replicate_weights: "not a url" }), ["input.replicate_weights"]);
  assert.deepEqual(fields({ mask: "data:,x" }), ["input.image"]);
  assert.deepEqual(fields({ width: 1004 }), ["input.width"]);
  assert.deepEqual(fields({ width: 2048, height: 1032 }), ["input.width"]);
});

test("the schema itself: Replicate's bounds and enums", () => {
  const root = { components: { schemas } };
  const check = (input: Record<string, unknown>) =>
    validate(schemas["Input"] ?? {}, input, { root, path: "input", name: "input" }).map((f) => f.field);
  assert.deepEqual(check({ prompt: "x" }), []);
  assert.deepEqual(check({ scheduler: "KLMS" }), ["input.scheduler"]);
  assert.deepEqual(check({ refine: "all" }), ["input.refine"]);
  assert.deepEqual(check({ num_inference_steps: 501 }), ["input.num_inference_steps"]);
  assert.deepEqual(check({ apply_watermark: "yes" }), ["input.apply_watermark"]);
  assert.deepEqual(check({ prompt: "x".repeat(10_001) }), ["input.prompt"]);
  // Descriptions as cog-sdxl's predict.py writes them, its link included.
  assert.equal(
    schemas["Input"]?.properties?.["disable_safety_checker"]?.description,
    "Disable safety checker for generated images. This feature is only available through the API. See [https://replicate.com/docs/how-does-replicate-work#safety](https://replicate.com/docs/how-does-replicate-work#safety)",
  );
});

test("the job: replicate_weights' LoRA at lora_scale (default 0.6), none without it", () => {
  assert.equal(sdxlJob({ ...defaults, prompt: "p" }, 3, undefined).request.loras, undefined);
  const job = sdxlJob({ ...defaults, prompt: "p" }, 3, undefined, "/cache/abc.safetensors");
  assert.deepEqual(job.request.loras, [{ path: "/cache/abc.safetensors", scale: 0.6 }]);
  const scaled = sdxlJob({ ...defaults, prompt: "p", lora_scale: 0.25 }, 3, undefined, "/cache/abc.safetensors");
  assert.deepEqual(scaled.request.loras, [{ path: "/cache/abc.safetensors", scale: 0.25 }]);
});

test("the job: cog-sdxl's negative prompt \"\" passed as text, the image's size with an image, refine modes", () => {
  const text = sdxlJob({ ...defaults, prompt: "p" }, 3, undefined);
  assert.equal(text.request.negativePrompt, "");
  assert.equal(text.request.width, 1024);
  assert.equal(text.request.scheduler, "K_EULER");
  assert.equal(text.refine, undefined);
  assert.equal(text.watermark, true);
  assert.equal(text.steps, 50);
  const img = sdxlJob({ ...defaults, image: "data:,abc", prompt_strength: 0.5 }, 3, {
    image: new Uint8Array([97, 98, 99]),
  });
  assert.equal(img.request.width, undefined);
  assert.equal(img.request.strength, 0.5);
  // Progress counts the steps that run: the last ⌊50 × 0.5⌋ of the schedule.
  assert.equal(img.steps, 25);
  assert.deepEqual([...(img.pictures?.image ?? [])], [97, 98, 99]);
  // Its size is the picture's, bounded as width × height are: a larger one is made smaller to fit.
  assert.equal(img.maxPixels, SDXL_MAX_PIXELS);
  assert.equal(text.maxPixels, undefined);
  // Inpainting: cog-sdxl passes width and height, and diffusers resizes the picture and mask to them.
  const inpaint = sdxlJob({ ...defaults, image: "data:,abc", mask: "data:,m", width: 768, height: 512 }, 3, {
    image: new Uint8Array([97, 98, 99]),
    mask: new Uint8Array([109]),
  });
  assert.deepEqual([inpaint.request.width, inpaint.request.height, inpaint.request.strength], [768, 512, 0.8]);
  assert.equal(inpaint.maxPixels, undefined, "width × height are checked by the schema");
  assert.deepEqual([...(inpaint.pictures?.mask ?? [])], [109]);
  assert.equal(inpaint.steps, 40);
  const refinedPicture = sdxlJob(
    { ...defaults, image: "data:,abc", prompt_strength: 0.7, refine: "base_image_refiner", refine_steps: 20 },
    3,
    { image: new Uint8Array([97]) },
  );
  assert.equal(refinedPicture.steps, 35 + 6);
  const ensemble = sdxlJob({ ...defaults, refine: "expert_ensemble_refiner", high_noise_frac: 0.7 }, 3, undefined);
  assert.deepEqual(ensemble.refine, { mode: "expert_ensemble_refiner", highNoiseFrac: 0.7 });
  const after = sdxlJob(
    { ...defaults, refine: "base_image_refiner", refine_steps: 10, apply_watermark: false },
    3,
    undefined,
  );
  assert.deepEqual(after.refine, { mode: "base_image_refiner", highNoiseFrac: 0.8, steps: 10 });
  // The refiner is diffusers' SDXL img2img at strength 0.3: ⌊10 × 0.3⌋ = 3 steps after the base's 50.
  assert.equal(after.steps, 53);
  const byDefault = sdxlJob({ ...defaults, refine: "base_image_refiner" }, 3, undefined);
  assert.equal(byDefault.steps, 50 + 15);
  // The ensemble splits 50 steps between base and refiner; at high_noise_frac 0 or 1 diffusers
  // takes no split: the base's 50, then the refiner as img2img, ⌊50 × 0.3⌋.
  assert.equal(ensemble.steps, 50);
  for (const high_noise_frac of [0, 1]) {
    assert.equal(sdxlJob({ ...defaults, refine: "expert_ensemble_refiner", high_noise_frac }, 3, undefined).steps, 65);
  }
  assert.equal(after.watermark, false);
});
