/** The page behind urls.web: served without a token, so its size must not multiply the input's. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { STABLE_DIFFUSION_SCHEMAS } from "../../src/server/models/stable-diffusion.js";
import type { ApiPrediction } from "../../src/server/predictions/serialize.js";
import { predictionPage } from "../../src/web/prediction-page.js";
import { SHOWN_VALUE_LENGTH } from "../../src/web/prediction-view.js";
import { inputFields } from "../../src/web/schema-form.js";

function prediction(input: Record<string, unknown>): ApiPrediction {
  const base = "http://127.0.0.1:8080/v1";
  return {
    id: "p".repeat(26),
    model: "stability-ai/stable-diffusion",
    version: "v".repeat(64),
    input,
    logs: "Using seed: 42\n",
    output: [1, 2, 3, 4].map((i) => `http://127.0.0.1:8080/files/key/out-${i}.png`),
    data_removed: false,
    error: null,
    status: "succeeded",
    source: "api",
    created_at: "2026-01-01T00:00:00.000000Z",
    started_at: "2026-01-01T00:00:01.000000Z",
    completed_at: "2026-01-01T00:00:02.000000Z",
    metrics: { predict_time: 1, total_time: 2 },
    urls: {
      get: `${base}/predictions/x`,
      cancel: `${base}/predictions/x/cancel`,
      stream: `${base}/streams/k`,
      web: "http://127.0.0.1:8080/p/k",
    },
  };
}

test("a 900 kB prompt (stored before prompts were bounded) appears once in the page, not once per image", () => {
  const fields = inputFields(STABLE_DIFFUSION_SCHEMAS);
  const small = predictionPage(prediction({ prompt: "a fox", num_outputs: 4 }), fields).length;
  const prompt = "a".repeat(900_000);
  const page = predictionPage(prediction({ prompt, negative_prompt: prompt, num_outputs: 4 }), fields);
  // Each prompt once, in data-input (what "run again" sends), plus the shown excerpts.
  assert.ok(page.length < small + 2 * prompt.length + 8 * SHOWN_VALUE_LENGTH, `${page.length} bytes`);
  assert.match(page, new RegExp(`<p class="lead">a{${SHOWN_VALUE_LENGTH}}…</p>`));
  assert.ok(
    page.includes(JSON.stringify({ prompt, negative_prompt: prompt, num_outputs: 4 }).replaceAll('"', "&#34;")),
  );
  // A surrogate pair is never cut in half.
  const astral = predictionPage(prediction({ prompt: `x${"🦊".repeat(SHOWN_VALUE_LENGTH)}` }), fields);
  assert.doesNotMatch(astral, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
});
