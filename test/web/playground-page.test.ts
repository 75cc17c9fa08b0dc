/** The playground page: one per served model, each with the form of its own schema. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModelAdapter } from "../../src/server/models/model.js";
import { STABLE_DIFFUSION_SCHEMAS } from "../../src/server/models/stable-diffusion.js";
import type { JsonSchema } from "../../src/server/schemas/json-schema.js";
import { playgroundPage } from "../../src/web/playground-page.js";

test("with several models, the playground links to each and builds the form of the chosen one", () => {
  const adapter = (name: string, schemas: Record<string, JsonSchema>) =>
    ({
      model: { owner: "me", name, description: `the ${name} model` },
      version: { id: name.padEnd(64, "0") },
      schemas,
    }) as unknown as ModelAdapter;
  const one = adapter("one", STABLE_DIFFUSION_SCHEMAS);
  const two = adapter("two", {
    Input: { type: "object", properties: { caption: { type: "string", title: "Caption", "x-order": 0 } } },
  });
  const page = playgroundPage(two, "http://127.0.0.1:8080/v1", [one, two]);
  assert.match(page, /<a href="\/\?model=me%2Fone">me\/one<\/a><a href="\/\?model=me%2Ftwo" aria-current="page">/);
  assert.match(page, /<textarea id="field-caption"/);
  assert.doesNotMatch(page, /field-prompt/);
  assert.match(page, /data-version="two0{61}"/);
  // One model: no picker.
  assert.doesNotMatch(playgroundPage(one, "http://127.0.0.1:8080/v1", [one]), /aria-label="Models"/);
});
