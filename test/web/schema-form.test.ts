/** The playground's form is made from the model's own Input schema, and its HTML is escaped. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { REPLICATE_DEFAULTS } from "../../src/model-catalog.js";
import { imageInputSchemas, STABLE_DIFFUSION_SCHEMAS } from "../../src/server/models/stable-diffusion.js";
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

test("file inputs (format uri) are a picker with a drop zone, a URL field and, for a mask beside an image, the brush", () => {
  const inpaint = inputFields(imageInputSchemas("inpainting", REPLICATE_DEFAULTS));
  const image = inpaint.find((f) => f.name === "image");
  const mask = inpaint.find((f) => f.name === "mask");
  assert.deepEqual([image?.type, image?.required, image?.paintsOver], ["file", true, undefined]);
  assert.deepEqual([mask?.type, mask?.required, mask?.paintsOver], ["file", true, "image"]);
  const form = schemaFormFields(inpaint).text;
  assert.match(
    form,
    /<label for="field-image">Image <span aria-hidden="true">\*<\/span><\/label>\n<div class="file-input" data-file-input="image"/,
  );
  assert.match(
    form,
    /<input type="file" id="field-image" name="image" data-type="file" accept="image\/png,image\/jpeg,image\/webp" aria-describedby="field-image-hint field-image-error" required>/,
  );
  assert.match(
    form,
    /<label class="inline" for="field-image-url">Image URL<\/label>\n<input type="url" id="field-image-url"/,
  );
  // One brush, on the mask, over the image; its controls labelled.
  assert.equal(form.match(/data-role="mask-painter"/g)?.length, 1);
  assert.match(form, /<div class="mask-painter" data-role="mask-painter" data-over="image" hidden>/);
  assert.match(form, /<label class="inline" for="field-mask-brush">Brush size<\/label>/);
  for (const b of ["Erase", "Clear mask", "Invert mask"])
    assert.match(form, new RegExp(`<button type="button"[^>]*>${b}</button>`));
  assert.match(form, /<canvas data-role="mask-canvas" role="img" aria-label="Mask painted over the image"/);

  // img2img: an image, no brush; text-to-image: no file input at all.
  const img2img = schemaFormFields(inputFields(imageInputSchemas("img2img", REPLICATE_DEFAULTS))).text;
  assert.match(img2img, /data-file-input="image"/);
  assert.doesNotMatch(img2img, /mask-painter/);
  assert.doesNotMatch(schemaFormFields(inputFields(STABLE_DIFFUSION_SCHEMAS)).text, /type="file"/);
  // A mask without an image to paint over is a plain file input.
  const maskOnly = inputFields({
    Input: { type: "object", properties: { mask: { type: "string", format: "uri", title: "Mask" } } },
  });
  assert.deepEqual([maskOnly[0]?.type, maskOnly[0]?.paintsOver], ["file", undefined]);
});
