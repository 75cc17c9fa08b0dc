/** The page behind urls.web: served without a token, so its size must not multiply the input's. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { REPLICATE_DEFAULTS } from "../../src/model-catalog.js";
import { imageInputSchemas, STABLE_DIFFUSION_SCHEMAS } from "../../src/server/models/stable-diffusion.js";
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

test("input pictures: a data: URI from the page's own URL, an upload for its token's script, other URLs as links", () => {
  const fields = inputFields(imageInputSchemas("inpainting", REPLICATE_DEFAULTS));
  const base64 = Buffer.alloc(300_000, 7).toString("base64");
  const upload = "http://127.0.0.1:8080/v1/files/abc123/download";
  const page = predictionPage(
    prediction({ prompt: "a door", image: `data:image/png;base64,${base64}`, mask: upload }),
    fields,
  );
  assert.match(
    page,
    /<figure class="input-image" data-input-image="image"><a href="http:\/\/127\.0\.0\.1:8080\/p\/k\/inputs\/image"><img src="http:\/\/127\.0\.0\.1:8080\/p\/k\/inputs\/image" alt="Input image">/,
  );
  // The upload is not linked or loaded by the page itself: its script asks with the token.
  assert.match(
    page,
    /<figure class="input-image" data-input-image="mask" data-file="http:\/\/127\.0\.0\.1:8080\/v1\/files\/abc123\/download"><span class="muted" data-role="file-note">/,
  );
  assert.doesNotMatch(page, /<img[^>]*files\/abc123/);
  // The base64 once (data-input, for running it again), not again in the input list.
  assert.equal(page.split(base64).length - 1, 1);
  assert.match(page, /<dd>data:image\/png;base64,… \(293 kB\)<\/dd>/);

  const remote = predictionPage(
    prediction({ prompt: "x", image: 'https://pictures.example.com/a.png?x="><script>', mask: "javascript:alert(1)" }),
    fields,
  );
  assert.match(
    remote,
    /<a href="https:\/\/pictures\.example\.com\/a\.png\?x=&#34;&#62;&#60;script&#62;" rel="noreferrer noopener">/,
  );
  assert.doesNotMatch(remote, /<img[^>]*pictures\.example/);
  assert.doesNotMatch(remote, /<script>/);
  // Not a URL at all: shown as text, never as a link.
  assert.doesNotMatch(remote, /href="javascript:/);
  // The input pictures are the page's, not the embedded section's; removed data shows none.
  const removed = predictionPage(
    { ...prediction({ image: `data:image/png;base64,${base64}` }), data_removed: true },
    fields,
  );
  assert.doesNotMatch(removed, /input-image/);
});
