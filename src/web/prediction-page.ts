/**
 * The page behind a prediction's urls.web. Like the stream and the files, its URL is a
 * capability (the unguessable stream key), so it opens in a browser without a token; cancelling
 * and running again use the token kept in the browser, as the API would.
 */
import type { ApiPrediction } from "../server/predictions/serialize.js";
import { html } from "./html.js";
import { page } from "./layout.js";
import { predictionSection, shorten } from "./prediction-view.js";
import type { FormField } from "./schema-form.js";

export function predictionPage(p: ApiPrediction, fields: readonly FormField[] | undefined): string {
  return page({
    title: `Prediction ${p.id}`,
    scripts: ["prediction-page.js"],
    main: html`<h1>Prediction <code>${p.id}</code></h1>
${typeof p.input["prompt"] === "string" ? html`<p class="lead">${shorten(p.input["prompt"])}</p>` : ""}
${predictionSection(p, { embed: false, fields })}`,
  });
}
