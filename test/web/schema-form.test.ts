/** The playground's form is made from the model's own Input schema, and its HTML is escaped. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { STABLE_DIFFUSION_SCHEMAS } from "../../src/server/models/stable-diffusion.js";
import type { JsonSchema } from "../../src/server/schemas/json-schema.js";
import { html, raw } from "../../src/web/html.js";
import { inputFields, schemaFormFields } from "../../src/web/schema-form.js";

const props = (STABLE_DIFFUSION_SCHEMAS["Input"] as JsonSchema).properties as Record<string, JsonSchema>;

test("one field per Input property, in x-order, with the schema's enums, bounds and defaults", () => {
  const fields = inputFields(STABLE_DIFFUSION_SCHEMAS);
  const byOrder = Object.keys(props).sort((a, b) => Number(props[a]?.["x-order"]) - Number(props[b]?.["x-order"]));
  assert.deepEqual(
    fields.map((f) => f.name),
    byOrder,
  );
  const width = fields.find((f) => f.name === "width");
  assert.deepEqual(width?.enum, (STABLE_DIFFUSION_SCHEMAS["width"] as JsonSchema).enum);
  assert.equal(width?.default, props["width"]?.["default"]);
  assert.equal(width?.label, "Width");
  const steps = fields.find((f) => f.name === "num_inference_steps");
  assert.deepEqual([steps?.type, steps?.minimum, steps?.maximum], ["integer", 1, 500]);
  assert.equal(steps?.label, "Num Inference Steps");
  assert.equal(fields.find((f) => f.name === "seed")?.default, undefined);

  const form = schemaFormFields(fields).text;
  for (const f of fields) assert.match(form, new RegExp(`<label for="field-${f.name}">`));
  assert.match(form, /<select id="field-scheduler" name="scheduler" data-type="string"/);
  assert.match(form, /<option value="DPMSolverMultistep" selected>/);
  assert.match(form, /<option value="768" selected>768<\/option>/);
  assert.match(form, /name="num_inference_steps" data-type="integer"[^>]* min="1" max="500" value="50">/);
  assert.match(form, /name="guidance_scale" data-type="number"[^>]* step="any" min="1" max="20" value="7.5">/);
  assert.match(form, /<input type="number" id="field-seed" name="seed" data-type="integer"[^>]*step="1">/);
  assert.match(form, /<textarea id="field-prompt"[^>]*>a photo of an astronaut riding a horse on mars<\/textarea>/);
  assert.match(form, /<textarea id="field-prompt"[^>]* maxlength="10000">/);
});

test("booleans are checkboxes, required fields are marked, and schema text is escaped", () => {
  const schemas: Record<string, JsonSchema> = {
    Input: {
      type: "object",
      required: ["caption"],
      properties: {
        caption: { type: "string", title: "Caption", description: "<b>bold</b> & more", "x-order": 0 },
        upscale: { type: "boolean", title: "Upscale", default: true, "x-order": 1 },
        mode: { allOf: [{ $ref: "#/components/schemas/mode" }], "x-order": 2 },
      },
    },
    mode: { title: "mode", type: "string", enum: ["fast", "good"] },
  };
  const form = schemaFormFields(inputFields(schemas)).text;
  assert.match(form, /<textarea id="field-caption" name="caption" data-type="string"[^>]* required/);
  assert.ok(form.includes("&#60;b&#62;bold&#60;/b&#62; &#38; more"));
  assert.match(form, /<input type="checkbox" id="field-upscale"[^>]* checked>/);
  // An enum without a default can be left blank.
  assert.match(form, /<select id="field-mode"[^>]*><option value="">—<\/option><option value="fast">/);
});

test("html escapes what it interpolates, except Html", () => {
  assert.equal(
    html`<p title="${`"x"`}">${"<i>"}${raw("<b>ok</b>")}${[1, html`<br>`]}${null}${false}</p>`.text,
    '<p title="&#34;x&#34;">&#60;i&#62;<b>ok</b>1<br></p>',
  );
});
