/**
 * One prediction as HTML: status, progress, images (or the live preview while it runs), seed,
 * timings, actions, inputs and logs. Rendered by the server in full, so it reads without
 * JavaScript; static/prediction.js then follows a running one through its event stream and,
 * when it ends, swaps in this same section fetched afresh (?fragment=…), so there is one renderer.
 */
import { ownFileId } from "../server/files/file-inputs.js";
import type { ApiPrediction } from "../server/predictions/serialize.js";
import { type Html, html, raw } from "./html.js";
import type { FormField } from "./schema-form.js";

export interface PredictionViewOptions {
  /** Embedded in the playground: smaller headings, no input list, a link to the page. */
  embed: boolean;
  /** The model's input fields (for inputs with their defaults); undefined if the model is not served here. */
  fields: readonly FormField[] | undefined;
}

/** The clients' progress regex (see server/models/progress-bar.ts). */
const PROGRESS = /^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)/;
const SEED = /^Using seed: (\d+)$/m;

function lastProgress(logs: string): { done: number; total: number } | undefined {
  const lines = logs.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = PROGRESS.exec(lines[i] ?? "");
    if (m) return { done: Number(m[2]), total: Number(m[3]) };
  }
  return undefined;
}

/** The seed the run used: its first log line, as predict.py writes it, or the input's. */
function seedOf(p: ApiPrediction): string | undefined {
  const m = SEED.exec(p.logs);
  if (m) return m[1];
  const s = p.input["seed"];
  return typeof s === "number" ? String(s) : undefined;
}

/** The value a run used for each input: the given one, else the schema's default. */
function effectiveInput(p: ApiPrediction, fields: readonly FormField[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields ?? []) if (f.default !== undefined) out[f.name] = f.default;
  for (const [k, v] of Object.entries(p.input)) if (v !== null) out[k] = v;
  return out;
}

function when(iso: string | null): Html | string {
  if (!iso) return "—";
  // 2026-11-21T08:13:10.316973Z → 2026-11-21 08:13:10 UTC; the script shows it in local time.
  return html`<time datetime="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "")} UTC</time>`;
}

function seconds(s: number | undefined): string {
  if (s === undefined) return "—";
  return s < 10
    ? `${s.toFixed(2)} s`
    : s < 120
      ? `${s.toFixed(1)} s`
      : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function secondsBetween(a: string | null, b: string | null): number | undefined {
  if (!a || !b) return undefined;
  return Math.max(0, (Date.parse(b) - Date.parse(a)) / 1000);
}

/**
 * Longest value shown in full in the page's text (the prompt under the heading, image alt
 * texts, the input list). Longer ones are cut with an ellipsis: the page is served without a
 * token, and each copy of a stored prompt once made it larger; the full input is still in
 * `data-input`, once, for running it again.
 */
export const SHOWN_VALUE_LENGTH = 2000;
/** Alt texts repeat the prompt for every image: a shorter cut there. */
const ALT_PROMPT_LENGTH = 200;

export function shorten(text: string, max = SHOWN_VALUE_LENGTH): string {
  if (text.length <= max) return text;
  // Not inside a surrogate pair.
  const last = text.charCodeAt(max - 1);
  const end = last >= 0xd800 && last <= 0xdbff ? max - 1 : max;
  return `${text.slice(0, end)}…`;
}

function formatValue(v: unknown): string {
  return shorten(typeof v === "string" ? v : JSON.stringify(v));
}

/** A data: URI's head and size instead of its base64 (the picture itself is shown above). */
function formatFileValue(v: unknown): string {
  if (typeof v === "string" && v.slice(0, 5).toLowerCase() === "data:") {
    const comma = v.indexOf(",");
    const head = v.slice(0, comma < 0 ? Math.min(v.length, 64) : Math.min(comma, 64));
    return `${head},… (${Math.round(((v.length - comma - 1) * 3) / 4 / 1024)} kB)`;
  }
  return formatValue(v);
}

/** The names of the file inputs (format "uri"); without the model's fields, image and mask. */
function fileInputsGiven(p: ApiPrediction, fields: readonly FormField[] | undefined): string[] {
  const names = fields ? fields.filter((f) => f.type === "file").map((f) => f.name) : ["image", "mask"];
  return names.filter((n) => typeof p.input[n] === "string");
}

/** The URL an input's data: URI picture is served at, under the page's own capability URL. */
export function inputImageUrl(web: string, name: string): string {
  return `${web}/inputs/${encodeURIComponent(name)}`;
}

/**
 * The input pictures: a data: URI is served under the page's URL (it is part of the input the
 * page shows anyway); a file uploaded through the Files API stays its token's, so the script
 * fetches it with the token kept in the browser, if that is the uploader's; any other URL is a
 * link (the page loads nothing from elsewhere).
 */
function inputImages(p: ApiPrediction, fields: readonly FormField[] | undefined): Html | string {
  const names = fileInputsGiven(p, fields);
  if (names.length === 0) return "";
  const labelOf = (n: string) => fields?.find((f) => f.name === n)?.label ?? n;
  return html`<div class="input-images" data-role="input-images">${names.map((name) => {
    const value = String(p.input[name]);
    const label = labelOf(name);
    if (value.slice(0, 5).toLowerCase() === "data:") {
      const src = inputImageUrl(p.urls.web, name);
      return html`<figure class="input-image" data-input-image="${name}"><a href="${src}"><img src="${src}" alt="Input ${label.toLowerCase()}"></a><figcaption>${label}</figcaption></figure>`;
    }
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
    if (url && ownFileId(url) !== undefined) {
      return html`<figure class="input-image" data-input-image="${name}" data-file="${value}"><span class="muted" data-role="file-note">An uploaded file: shown to the API token that uploaded it.</span><figcaption>${label}</figcaption></figure>`;
    }
    const text = shorten(value, ALT_PROMPT_LENGTH);
    // Only http(s) is ever a link (the API refuses other schemes, but the page does not rely on it).
    const shown =
      url && (url.protocol === "http:" || url.protocol === "https:")
        ? html`<a href="${value}" rel="noreferrer noopener">${text}</a>`
        : html`<span>${text}</span>`;
    return html`<figure class="input-image" data-input-image="${name}">${shown}<figcaption>${label} (not loaded here)</figcaption></figure>`;
  })}</div>`;
}

const LIVE = ["starting", "processing"];

export function predictionSection(p: ApiPrediction, opts: PredictionViewOptions): Html {
  const h = raw(opts.embed ? "h3" : "h2");
  const live = LIVE.includes(p.status);
  const input = effectiveInput(p, opts.fields);
  const prompt = typeof input["prompt"] === "string" ? shorten(input["prompt"], ALT_PROMPT_LENGTH) : "";
  const width = typeof input["width"] === "number" ? input["width"] : undefined;
  const height = typeof input["height"] === "number" ? input["height"] : undefined;
  const size = width && height ? html` width="${width}" height="${height}"` : "";
  const seed = seedOf(p);
  const progress = lastProgress(p.logs);
  const outputs = p.output ?? [];
  const fragment = `${p.urls.web}?fragment=${opts.embed ? "embed" : "page"}`;
  const canRerun = opts.fields !== undefined && !p.data_removed;

  const images = outputs.map((url, i) => {
    const file = url.slice(url.lastIndexOf("/") + 1);
    const label = outputs.length > 1 ? `Output ${i + 1} of ${outputs.length}` : "Output";
    return html`<figure class="output">
<a href="${url}"><img src="${url}"${size} alt="${prompt ? `${label}: ${prompt}` : label}"></a>
<figcaption><a href="${url}" download="${p.id}-${file}">Download ${file}</a></figcaption>
</figure>`;
  });
  // While it runs: one frame the script draws previews into (it adds one per output).
  const previewFrame = live
    ? html`<figure class="output pending" data-role="preview-frame">
<canvas data-role="preview"${size || html` width="1" height="1"`} role="img" aria-label="Preview, updated while the image is denoised"></canvas>
<figcaption>${p.status === "starting" ? "Waiting to start…" : "Denoising…"}</figcaption>
</figure>`
    : "";

  const details: [string, Html | string][] = [
    ["Status", p.status],
    ["Seed", seed ?? "—"],
    ["Model", html`${p.model} <span class="muted">${p.version.slice(0, 12)}</span>`],
    ["Created", when(p.created_at)],
    ["Started", when(p.started_at)],
    ["Completed", when(p.completed_at)],
    ["Waited", seconds(secondsBetween(p.created_at, p.started_at))],
    ["Run time", seconds(p.metrics["predict_time"])],
    ["Total time", seconds(p.metrics["total_time"])],
  ];

  const given = new Set(Object.keys(p.input).filter((k) => p.input[k] !== null));
  const fileNames = new Set(fileInputsGiven(p, opts.fields));
  const inputRows = [
    ...(opts.fields ?? []).map((f) => ({
      label: f.label,
      value: input[f.name],
      given: given.has(f.name),
      file: fileNames.has(f.name),
    })),
    ...Object.keys(p.input)
      .filter((k) => !opts.fields?.some((f) => f.name === k))
      .map((k) => ({ label: k, value: p.input[k], given: true, file: fileNames.has(k) })),
  ];

  return html`<section class="prediction${opts.embed ? " embed" : ""}" id="prediction-${p.id}" data-prediction
 data-id="${p.id}" data-status="${p.status}" data-stream="${p.urls.stream}" data-web="${p.urls.web}"
 data-cancel="${p.urls.cancel}" data-version="${p.version}" data-fragment="${fragment}"
 data-input="${JSON.stringify(p.input)}" data-seed="${seed ?? ""}" aria-label="Prediction ${p.id}">
${opts.embed ? html`<p class="embed-title">Prediction <a href="${p.urls.web}"><code>${p.id}</code></a></p>` : ""}
<p class="state"><span class="badge" data-role="status" data-status="${p.status}" role="status">${p.status}</span></p>
${
  live
    ? html`<div class="progress" data-role="progress">
<progress data-role="progress-bar" max="${progress?.total ?? 1}"${progress ? html` value="${progress.done}"` : ""} aria-label="Denoising progress"></progress>
<span data-role="progress-text">${progress ? `${progress.done} / ${progress.total} steps` : "Waiting for a worker…"}</span>
</div>`
    : ""
}
${p.error ? html`<p class="error" role="alert" data-role="error">${p.error}</p>` : html`<p class="error" role="alert" data-role="error" hidden></p>`}
${
  progress && (p.status === "canceled" || p.status === "failed")
    ? html`<p class="muted">Stopped after ${progress.done} of ${progress.total} steps.</p>`
    : ""
}
${p.data_removed ? html`<p class="notice">The inputs and outputs were removed when the retention period ended.</p>` : ""}
<div class="outputs" data-role="outputs">${images}${previewFrame}</div>
<div class="actions">
<!-- The buttons need the script (and the kept token): it shows them. -->
${live ? html`<button type="button" data-action="cancel" hidden>Cancel</button>` : ""}
${
  canRerun
    ? html`<button type="button" data-action="rerun-same"${seed ? "" : html` disabled`} hidden>Run again, same seed</button>
<button type="button" data-action="rerun-new" hidden>Run again, new seed</button>`
    : ""
}
<p class="action-message" data-role="message" role="status"></p>
</div>
<${h}>Details</${h}>
<dl class="details">
${details.map(([k, v]) => html`<div><dt>${k}</dt><dd data-detail="${k.toLowerCase().replace(/ /g, "-")}">${v}</dd></div>\n`)}
</dl>
${
  opts.embed || p.data_removed
    ? ""
    : html`<h2>Input</h2>
${inputImages(p, opts.fields)}
<dl class="inputs">
${inputRows.map(
  (r) =>
    html`<div><dt>${r.label}</dt><dd>${
      r.value === undefined
        ? html`<span class="muted">not set</span>`
        : r.file
          ? formatFileValue(r.value)
          : formatValue(r.value)
    }${r.given || r.value === undefined ? "" : html` <span class="muted">(default)</span>`}</dd></div>\n`,
)}
</dl>`
}
<details class="logs"${opts.embed ? "" : html` open`}>
<summary>Logs</summary>
<pre data-role="logs" tabindex="0">${p.logs}</pre>
</details>
</section>`;
}
