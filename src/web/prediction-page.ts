/**
 * The page behind a prediction's urls.web: its status, input, logs and images, following the
 * prediction live through its event stream. Like the stream and the files, its URL is a
 * capability (the unguessable stream key), so it opens in a browser without a token.
 */
import type { ApiPrediction } from "../server/predictions/serialize.js";

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function predictionPage(p: ApiPrediction): string {
  const images = (p.output ?? [])
    .map((url) => `<a href="${escapeHtml(url)}"><img src="${escapeHtml(url)}" alt="output"></a>`)
    .join("");
  const live = p.status === "starting" || p.status === "processing";
  // The stream replays everything, so the page reloads itself once the prediction is done.
  const script = live
    ? `<script>
const es = new EventSource(${JSON.stringify(p.urls.stream)});
const logs = document.getElementById("logs");
logs.textContent = "";
es.addEventListener("logs", (e) => { logs.textContent += e.data + "\\n"; });
es.addEventListener("done", () => { es.close(); location.reload(); });
</script>`
    : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Prediction ${escapeHtml(p.id)} · sdserve</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
pre { background: #f4f4f4; padding: .75rem; overflow-x: auto; white-space: pre-wrap; }
img { max-width: 100%; margin: .25rem; border: 1px solid #ddd; }
.status { font-weight: 600; }
</style>
</head>
<body>
<h1>Prediction <code>${escapeHtml(p.id)}</code></h1>
<p>${escapeHtml(p.model)} · status <span class="status">${escapeHtml(p.status)}</span> · created ${escapeHtml(p.created_at)}</p>
${p.error ? `<p><strong>Error:</strong> ${escapeHtml(p.error)}</p>` : ""}
${p.data_removed ? "<p>The inputs and outputs were removed when the retention period ended.</p>" : ""}
<div>${images}</div>
<h2>Input</h2>
<pre>${escapeHtml(JSON.stringify(p.input, null, 2))}</pre>
<h2>Logs</h2>
<pre id="logs">${escapeHtml(p.logs)}</pre>
${script}
</body>
</html>
`;
}
