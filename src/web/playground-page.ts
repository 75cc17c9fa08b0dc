/**
 * The playground at /: a form made from the model's Input schema (schema-form.ts), the live
 * result of the last run, a curl / JavaScript snippet for the current inputs, and the token's
 * recent predictions. Everything that needs the API runs in the browser with the token it keeps
 * (static/playground.js); the page itself holds nothing private.
 */
import { MAX_FILE_INPUT_BYTES } from "../server/files/file-inputs.js";
import type { ModelAdapter } from "../server/models/model.js";
import { html } from "./html.js";
import { page } from "./layout.js";
import { inputFields, schemaFormFields } from "./schema-form.js";

const nameOf = (m: ModelAdapter) => `${m.model.owner}/${m.model.name}`;

/** The playground of `model`; with several models served, links to the others' playgrounds. */
export function playgroundPage(model: ModelAdapter, apiBase: string, models: readonly ModelAdapter[]): string {
  const name = nameOf(model);
  const picker =
    models.length > 1
      ? html`<nav class="models" aria-label="Models">${models.map(
          (m) =>
            html`<a href="/?model=${encodeURIComponent(nameOf(m))}"${m === model ? html` aria-current="page"` : ""}>${nameOf(m)}</a>`,
        )}</nav>`
      : "";
  return page({
    title: `Playground · ${name}`,
    scripts: ["playground.js"],
    main: html`${picker}<h1>Playground <span class="muted">${name}</span></h1>
<p class="lead">${model.model.description}</p>
<noscript><p class="callout">The playground runs in the browser and needs JavaScript; the API at <code>${apiBase}</code> does not.</p></noscript>
<div class="callout" data-role="token-callout" hidden>
<p>Paste one of this server's API tokens to run predictions and see your recent ones.</p>
<button type="button" class="primary" data-action="open-token">Set API token</button>
</div>
<div class="playground" data-playground data-model="${name}" data-version="${model.version.id}" data-api="${apiBase}" data-max-file-bytes="${MAX_FILE_INPUT_BYTES}">
<section class="panel" aria-labelledby="input-title">
<h2 id="input-title">Input</h2>
<form id="playground-form" novalidate>
${schemaFormFields(inputFields(model.schemas))}
<div class="buttons">
<button type="submit" class="primary">Run</button>
<button type="reset">Reset</button>
</div>
<p class="form-message" data-role="form-message" role="status"></p>
</form>
</section>
<section class="panel" aria-labelledby="output-title">
<h2 id="output-title">Output</h2>
<div data-role="result"><p class="muted" data-role="result-empty">Run the model to see its images here.</p></div>
</section>
</div>
<details class="snippet panel">
<summary>API: the same prediction from code</summary>
<p>Set <code>REPLICATE_API_TOKEN</code> to your token, then:</p>
<div class="snippet-head"><h3 id="curl-title">curl</h3><button type="button" data-action="copy" data-target="snippet-curl">Copy</button></div>
<pre id="snippet-curl" aria-labelledby="curl-title" tabindex="0"></pre>
<div class="snippet-head"><h3 id="js-title">JavaScript (<code>replicate</code>)</h3><button type="button" data-action="copy" data-target="snippet-js">Copy</button></div>
<pre id="snippet-js" aria-labelledby="js-title" tabindex="0"></pre>
</details>
<section aria-labelledby="recent-title" class="recent">
<h2 id="recent-title">Recent predictions</h2>
<p class="muted" data-role="gallery-message">Set an API token to see the predictions made with it.</p>
<ul class="gallery" data-role="gallery"></ul>
<button type="button" data-action="more" hidden>Load more</button>
</section>`,
  });
}
