/** The schema check behind 422s, on stability-ai/stable-diffusion's Input schema. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { StableDiffusionAdapter } from "../../src/server/models/stable-diffusion.js";

const adapter = new StableDiffusionAdapter({ source: "tiny-random" });

test("an empty input is valid: nothing is required and every field has a default or is optional", () => {
  assert.deepEqual(adapter.validateInput({}), []);
  assert.deepEqual(adapter.validateInput({ seed: null, negative_prompt: null, extra: 1, width: 512.0 }), []);
});

test("each rule of the published schema, with gojsonschema's types and wording", () => {
  const one = (input: Record<string, unknown>) => adapter.validateInput(input)[0];
  assert.deepEqual(one({ num_inference_steps: 0 }), {
    type: "number_gte",
    field: "input.num_inference_steps",
    description: "Must be greater than or equal to 1",
  });
  assert.equal(one({ num_inference_steps: 501 })?.type, "number_lte");
  assert.equal(one({ guidance_scale: 50 })?.description, "Must be less than or equal to 20");
  assert.equal(one({ num_outputs: 1.5 })?.description, "Invalid type. Expected: integer, given: number");
  assert.equal(one({ width: 64 })?.type, "enum");
  assert.equal(one({ prompt: ["a"] })?.description, "Invalid type. Expected: string, given: array");
  assert.equal(one({ guidance_scale: true })?.description, "Invalid type. Expected: number, given: boolean");
  assert.deepEqual(adapter.validateInput("cat"), [
    { type: "invalid_type", field: "input", description: "Invalid type. Expected: object, given: string" },
  ]);
});
