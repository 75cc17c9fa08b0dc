/** sdxl.ts: stability-ai/sdxl's inputs beyond its schema (data URIs, replicate_weights, sizes) and the engine job made from them. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { SDXL_DEFAULTS } from "../../src/model-catalog.js";
import { validate } from "../../src/server/models/json-schema.js";
import {
  dataUriBytes,
  MAX_PICTURE_BYTES,
  sdxlInvalidFields,
  sdxlJob,
  sdxlSchemas,
} from "../../src/server/models/sdxl.js";

const schemas = sdxlSchemas(SDXL_DEFAULTS);
const defaults = Object.fromEntries(
  Object.entries(schemas["Input"]?.properties ?? {}).map(([k, p]) => [k, p["default"]]),
);

test("data URIs: base64 and percent-encoded are read; anything else is a reason, never a throw", () => {
  assert.deepEqual([...(dataUriBytes("data:image/png;base64,AAEC") as Uint8Array)], [0, 1, 2]);
  assert.deepEqual([...(dataUriBytes("data:,%00%01a") as Uint8Array)], [0, 1, 97]);
  for (const bad of [
    "",
    "https://example.com/a.png",
    "/files/abc",
    "data:image/png;base64",
    "data:image/png;base64,@@@@",
    "data:image/png;base64,AAEC====",
    "data:,%E0%A4%A",
    "DATA",
    `data:${"x".repeat(100_000)}`,
  ]) {
    assert.equal(typeof dataUriBytes(bad), "string", bad.slice(0, 40));
  }
  const huge = `data:image/png;base64,${"A".repeat(Math.ceil((MAX_PICTURE_BYTES * 4) / 3) + 8)}`;
  assert.match(dataUriBytes(huge) as string, /larger than/);
});

test("a long run of adversarial parameters in a data URI is rejected quickly by the pattern (no backtracking blow-up)", () => {
  const uri = `data:image/png${";a=b".repeat(50_000)};base64!`;
  assert.equal(typeof dataUriBytes(uri), "string");
});

test("422s the schema cannot express: replicate_weights, mask without image, sizes, unreadable URIs", () => {
  const fields = (input: Record<string, unknown>) => sdxlInvalidFields({ ...defaults, ...input }).map((f) => f.field);
  assert.deepEqual(fields({}), []);
  assert.deepEqual(fields({ replicate_weights: "https://x/y.tar" }), ["input.replicate_weights"]);
  assert.deepEqual(fields({ mask: "data:,x" }), ["input.image"]);
  assert.deepEqual(fields({ width: 1004 }), ["input.width"]);
  assert.deepEqual(fields({ width: 2048, height: 1032 }), ["input.width"]);
  assert.deepEqual(fields({ image: "ftp://a" }), ["input.image"]);
  assert.deepEqual(fields({ image: "data:,x", mask: "nope" }), ["input.mask"]);
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
});

test("the job: cog-sdxl's negative prompt \"\" passed as text, the image's size with an image, refine modes", () => {
  const text = sdxlJob({ ...defaults, prompt: "p" }, 3);
  assert.equal(text.request.negativePrompt, "");
  assert.equal(text.request.width, 1024);
  assert.equal(text.request.scheduler, "K_EULER");
  assert.equal(text.refine, undefined);
  assert.equal(text.watermark, true);
  assert.equal(text.steps, 50);
  const img = sdxlJob({ ...defaults, image: "data:,abc", prompt_strength: 0.5 }, 3);
  assert.equal(img.request.width, undefined);
  assert.equal(img.request.strength, 0.5);
  assert.deepEqual([...(img.pictures?.image ?? [])], [97, 98, 99]);
  const ensemble = sdxlJob({ ...defaults, refine: "expert_ensemble_refiner", high_noise_frac: 0.7 }, 3);
  assert.deepEqual(ensemble.refine, { mode: "expert_ensemble_refiner", highNoiseFrac: 0.7 });
  const after = sdxlJob({ ...defaults, refine: "base_image_refiner", refine_steps: 10, apply_watermark: false }, 3);
  assert.deepEqual(after.refine, { mode: "base_image_refiner", highNoiseFrac: 0.8, steps: 10 });
  assert.equal(after.steps, 60);
  assert.equal(after.watermark, false);
});
