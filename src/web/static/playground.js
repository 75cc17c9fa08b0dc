// @ts-check
/**
 * The playground (/): turns the schema-made form into a prediction's input, runs it with the
 * kept token and follows it in place, shows curl / JavaScript for the same input, and lists the
 * token's recent predictions.
 */
import { ApiError, api, getToken, initTokenControls, onTokenChange, openTokenDialog } from "./api.js";
import { initFileInputs } from "./file-input.js";
import { followPrediction } from "./prediction.js";

const GALLERY_PAGE = 24;

/**
 * @template {Element} T
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {T}
 */
function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`${selector} is missing`);
  return /** @type {T} */ (el);
}

/** @type {HTMLElement} */
const root = $("[data-playground]");
/** @type {HTMLFormElement} */
const form = $("#playground-form");
/** @type {HTMLElement} */
const result = $('[data-role="result"]', root);
/** @type {HTMLElement} */
const formMessage = $('[data-role="form-message"]', form);
/** @type {HTMLElement} */
const gallery = $('[data-role="gallery"]');
/** @type {HTMLElement} */
const galleryMessage = $('[data-role="gallery-message"]');
/** @type {HTMLButtonElement} */
const more = $('[data-action="more"]');
/** @type {HTMLElement} */
const callout = $('[data-role="token-callout"]');
const apiBase = root.dataset.api ?? "/v1";
const model = root.dataset.model ?? "";
const version = root.dataset.version ?? "";

/** The controls of the fields that are not file inputs (file-input.js has those). @returns {(HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement)[]} */
function controls() {
  return [...form.querySelectorAll('[data-type]:not([data-type="file"])')].map(
    (el) => /** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */ (el),
  );
}

const files = initFileInputs(form, {
  maxBytes: Number(root.dataset.maxFileBytes ?? Number.POSITIVE_INFINITY),
  setError: (name, text) => {
    fieldError(name, text);
  },
  onChange: () => updateSnippets(),
});

/** The input the form describes: each filled field as its schema type; blank fields are left out. File inputs are not in it. */
function formInput() {
  /** @type {Record<string, unknown>} */
  const input = {};
  for (const el of controls()) {
    const type = el.dataset.type;
    if (el instanceof HTMLInputElement && el.type === "checkbox") {
      input[el.name] = el.checked;
      continue;
    }
    if (el.value.trim() === "") continue;
    input[el.name] = type === "integer" || type === "number" ? Number(el.value) : el.value;
  }
  return input;
}

/** @param {string} name @param {string} text */
function fieldError(name, text) {
  const el = form.querySelector(`[name="${CSS.escape(name)}"]`);
  const slot = document.getElementById(`field-${name}-error`);
  if (!el || !slot) return false;
  slot.textContent = text;
  slot.hidden = !text;
  if (text) el.setAttribute("aria-invalid", "true");
  else el.removeAttribute("aria-invalid");
  return true;
}

function clearErrors() {
  for (const el of form.querySelectorAll("[data-type]")) fieldError(el.getAttribute("name") ?? "", "");
  formMessage.textContent = "";
}

/** The browser's own checks (the schema's bounds and enums are on the controls), shown by each field; then the file inputs'. */
function validate() {
  clearErrors();
  const invalid = controls().filter((el) => !el.checkValidity());
  for (const el of invalid) fieldError(el.name, el.validationMessage);
  const filesOk = files.validate();
  // The first invalid field in the form's order has the focus.
  invalid[0]?.focus();
  return invalid.length === 0 && filesOk;
}

/** @param {string} text */
function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function updateSnippets() {
  const input = { ...formInput(), ...files.snippetValues() };
  const body = JSON.stringify({ version, input }, null, 2);
  $("#snippet-curl").textContent = [
    `curl -s -X POST ${apiBase}/predictions \\`,
    `  -H "Authorization: Bearer $REPLICATE_API_TOKEN" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -H "Prefer: wait" \\`,
    `  -d ${shellQuote(body)}`,
  ].join("\n");
  const inputJs = JSON.stringify(input, null, 2).replace(/\n/g, "\n  ");
  $("#snippet-js").textContent = [
    `import Replicate from "replicate";`,
    ``,
    `const replicate = new Replicate({ baseUrl: ${JSON.stringify(apiBase)} });`,
    `const output = await replicate.run(${JSON.stringify(`${model}:${version}`)}, {`,
    `  input: ${inputJs},`,
    `});`,
    `console.log(output.map(String));`,
  ].join("\n");
}

/** @param {HTMLButtonElement} button */
async function copy(button) {
  const pre = document.getElementById(button.dataset.target ?? "");
  if (!pre) return;
  const text = pre.textContent ?? "";
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (a plain-http origin other than localhost): select the text instead.
    const range = document.createRange();
    range.selectNodeContents(pre);
    getSelection()?.removeAllRanges();
    getSelection()?.addRange(range);
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

let stopFollowing = () => {};

/** Shows a prediction in the output panel and follows it. @param {any} p */
async function showPrediction(p) {
  const res = await fetch(`${p.urls.web}?fragment=embed`, { cache: "no-store" });
  const template = document.createElement("template");
  template.innerHTML = await res.text(); // the server's own markup
  const section = /** @type {HTMLElement | null} */ (template.content.querySelector("[data-prediction]"));
  if (!section) throw new Error(`Could not load prediction ${p.id}`);
  stopFollowing();
  result.replaceChildren(section);
  stopFollowing = followPrediction(section, {
    onStarted: (next) => {
      showPrediction(next).catch((err) => {
        formMessage.textContent = err instanceof Error ? err.message : String(err);
      });
      loadGallery();
    },
    onFinished: () => loadGallery(),
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!validate()) return;
  if (!getToken()) {
    openTokenDialog("Running the model takes an API token.");
    return;
  }
  const submit = /** @type {HTMLButtonElement} */ ($('button[type="submit"]', form));
  submit.disabled = true;
  formMessage.textContent = "Starting…";
  try {
    const fileValues = await files.values(apiBase);
    updateSnippets();
    const p = await api(`${apiBase}/predictions`, {
      method: "POST",
      body: { version, input: { ...formInput(), ...fileValues } },
    });
    formMessage.textContent = "";
    await showPrediction(p);
    // On one column the output is below the form: bring it into view.
    if (result.getBoundingClientRect().top > innerHeight) result.scrollIntoView({ block: "start" });
    loadGallery();
  } catch (err) {
    formMessage.textContent = "";
    if (err instanceof ApiError && err.status === 422 && Array.isArray(err.body?.invalid_fields)) {
      // The server's validation (the same schema): each message by its field.
      const rest = [];
      for (const f of err.body.invalid_fields) {
        const name = String(f.field ?? "").replace(/^input\./, "");
        if (!fieldError(name, f.description)) rest.push(f.description);
      }
      formMessage.textContent = rest.join(" ") || "Some inputs are not valid.";
    } else if (err instanceof ApiError && err.status === 401) {
      openTokenDialog("This server does not accept the kept API token.");
    } else if (err instanceof ApiError && err.shown) {
      formMessage.textContent = "A file could not be uploaded: see its field.";
    } else {
      formMessage.textContent = err instanceof Error ? err.message : String(err);
    }
  } finally {
    submit.disabled = false;
  }
});
form.addEventListener("input", (event) => {
  const el = /** @type {HTMLElement} */ (event.target);
  if (el.getAttribute("aria-invalid") && "name" in el) fieldError(String(el.name), "");
  updateSnippets();
});
form.addEventListener("change", updateSnippets);
// "reset" fires before the fields get their defaults back.
form.addEventListener("reset", () => {
  clearErrors();
  files.reset();
  setTimeout(updateSnippets);
});
for (const b of document.querySelectorAll('[data-action="copy"]')) {
  b.addEventListener("click", () => copy(/** @type {HTMLButtonElement} */ (b)));
}

/** A gallery card: the first image (or the status), the prompt, the status. @param {any} p */
function card(p) {
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = p.urls.web;
  a.className = "card";
  const prompt = typeof p.input?.prompt === "string" ? p.input.prompt : "";
  const first = Array.isArray(p.output) ? p.output[0] : undefined;
  if (first) {
    const img = document.createElement("img");
    img.src = first;
    img.alt = prompt || `Output of ${p.id}`;
    img.loading = "lazy";
    a.append(img);
  } else {
    const blank = document.createElement("span");
    blank.className = "thumb-blank";
    blank.textContent = p.data_removed ? "removed" : p.status;
    a.append(blank);
  }
  const caption = document.createElement("span");
  caption.className = "card-prompt";
  caption.textContent = prompt || p.id;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.status = p.status;
  badge.textContent = p.status;
  a.append(caption, badge);
  li.append(a);
  return li;
}

/** @type {string | null} */
let nextPage = null;
let loading = 0;

/** Shows the newest predictions of the token (again), or the next page of them. @param {boolean} [append] */
async function loadGallery(append = false) {
  const mine = ++loading;
  if (!getToken()) {
    gallery.replaceChildren();
    more.hidden = true;
    galleryMessage.textContent = "Set an API token to see the predictions made with it.";
    galleryMessage.hidden = false;
    return;
  }
  try {
    const page = await api(append && nextPage ? nextPage : `${apiBase}/predictions?page_size=${GALLERY_PAGE}`);
    if (mine !== loading) return;
    const cards = page.results.map(card);
    if (append) gallery.append(...cards);
    else gallery.replaceChildren(...cards);
    nextPage = page.next;
    more.hidden = !nextPage;
    galleryMessage.hidden = gallery.children.length > 0;
    galleryMessage.textContent = "No predictions yet.";
  } catch (err) {
    if (mine !== loading) return;
    galleryMessage.hidden = false;
    galleryMessage.textContent = `Could not list predictions: ${err instanceof Error ? err.message : String(err)}`;
  }
}
more.addEventListener("click", () => loadGallery(true));

function tokenChanged() {
  callout.hidden = Boolean(getToken());
  loadGallery();
}

initTokenControls();
onTokenChange(tokenChanged);
tokenChanged();
updateSnippets();
