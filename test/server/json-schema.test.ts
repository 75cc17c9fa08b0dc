/** The schema check behind 422s, on stability-ai/stable-diffusion's Input schema. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { modelSpec, SCHEDULERS } from "../../src/model-catalog.js";
import { jsonNestsDeeperThan, MAX_JSON_DEPTH } from "../../src/server/http/json-depth.js";
import {
  MAX_PROMPT_LENGTH,
  STABLE_DIFFUSION_SCHEMAS,
  StableDiffusionAdapter,
} from "../../src/server/models/stable-diffusion.js";
import { type JsonSchema, validate } from "../../src/server/schemas/json-schema.js";

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

test("additionalProperties and required look at own properties: Object.prototype's names are keys like any other", () => {
  const schema: JsonSchema = {
    type: "object",
    properties: { version: { type: "string" } },
    required: ["version"],
    additionalProperties: false,
  };
  for (const key of ["toString", "constructor", "hasOwnProperty", "valueOf", "__defineGetter__", "bogus"]) {
    assert.deepEqual(
      validate(schema, { version: "v", [key]: 1 }),
      [
        {
          type: "additional_property_not_allowed",
          field: "",
          description: `Additional property ${key} is not allowed`,
        },
      ],
      key,
    );
  }
  const needsConstructor: JsonSchema = { type: "object", required: ["constructor"] };
  assert.deepEqual(validate(needsConstructor, {}), [
    { type: "required", field: "", description: "constructor is required" },
  ]);
  // A prototype-named key in the model's input is unknown, so accepted and ignored, not validated as a function.
  assert.deepEqual(adapter.validateInput({ toString: "x", constructor: 5 }), []);
});

test("prompt and negative_prompt are at most MAX_PROMPT_LENGTH characters, counted in code points", () => {
  assert.deepEqual(adapter.validateInput({ prompt: "a".repeat(MAX_PROMPT_LENGTH) }), []);
  // Astral characters are one code point each (two UTF-16 units).
  assert.deepEqual(adapter.validateInput({ negative_prompt: "🦊".repeat(MAX_PROMPT_LENGTH) }), []);
  for (const key of ["prompt", "negative_prompt"]) {
    assert.deepEqual(adapter.validateInput({ [key]: "a".repeat(MAX_PROMPT_LENGTH + 1) }), [
      {
        type: "string_lte",
        field: `input.${key}`,
        description: `String length must be less than or equal to ${MAX_PROMPT_LENGTH}`,
      },
    ]);
  }
  assert.equal(adapter.validateInput({ prompt: "a".repeat(4_000_000) }).length, 1);
  assert.equal(adapter.schemas["Input"]?.properties?.["prompt"]?.maxLength, MAX_PROMPT_LENGTH);
  assert.deepEqual(validate({ type: "string", minLength: 2 }, "🦊"), [
    { type: "string_gte", field: "", description: "String length must be greater than or equal to 2" },
  ]);
});

test("JSON nesting depth: found in one pass, strings and escapes skipped", () => {
  assert.equal(jsonNestsDeeperThan('{"a":[[1]]}', 3), false);
  assert.equal(jsonNestsDeeperThan('{"a":[[[1]]]}', 3), true);
  assert.equal(jsonNestsDeeperThan(`{"a":"${"[".repeat(100)}"}`, 1), false);
  assert.equal(jsonNestsDeeperThan(`{"a":"\\"${"[".repeat(100)}"}`, 1), false);
  assert.equal(jsonNestsDeeperThan(`{"a":"\\\\",${"[".repeat(3)}`, 3), true);
  assert.equal(jsonNestsDeeperThan(`${"[".repeat(400_000)}${"]".repeat(400_000)}`, MAX_JSON_DEPTH), true);
  assert.equal(jsonNestsDeeperThan(`[${"[],".repeat(400_000)}[]]`, MAX_JSON_DEPTH), false);
});

test("stability-ai/stable-diffusion on Replicate's weights publishes exactly Replicate's schemas; few-step models widen theirs", () => {
  const replicate = new StableDiffusionAdapter({});
  assert.deepEqual(replicate.schemas, STABLE_DIFFUSION_SCHEMAS);
  assert.deepEqual((replicate.schemas["scheduler"] as JsonSchema)["enum"], [...SCHEDULERS]);
  const lcm = new StableDiffusionAdapter({ spec: modelSpec("me/lcm", "SimianLuo/LCM_Dreamshaper_v7") });
  assert.deepEqual(lcm.validateInput({ scheduler: "LCM", guidance_scale: 0 }), []);
  assert.equal(replicate.validateInput({ scheduler: "LCM" })[0]?.type, "enum");
  assert.equal(replicate.validateInput({ guidance_scale: 0 })[0]?.type, "number_gte");
  assert.equal(lcm.validateInput({ guidance_scale: -0.5 })[0]?.type, "number_gte");
});
