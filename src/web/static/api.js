// @ts-check
/**
 * The pages' link to the API: the token the user pasted (kept in this browser's localStorage,
 * sent only to this server), calls with it, and the dialog where it is set.
 */

const KEY = "sdserve-token";

/** @returns {string | null} */
export function getToken() {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the token lives as long as the page
  }
}

/** @param {string | null} token */
function storeToken(token) {
  try {
    if (token) localStorage.setItem(KEY, token);
    else localStorage.removeItem(KEY);
  } catch {
    // nothing to do: storage disabled
  }
}

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {any} body the problem+json body, when there is one
   */
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
    /** Already shown where it belongs (by a form field). */
    this.shown = false;
  }
}

/**
 * Calls the API with the kept token (or `opts.token`); resolves with the JSON body, rejects with
 * an ApiError carrying the problem's detail. A FormData body goes as multipart (the Files API),
 * anything else as JSON.
 * @param {string} url
 * @param {{ method?: string, body?: unknown, token?: string | null }} [opts]
 * @returns {Promise<any>}
 */
export async function api(url, opts = {}) {
  const token = opts.token === undefined ? getToken() : opts.token;
  if (!token) throw new ApiError(401, "Set an API token first.", null);
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${token}` };
  const multipart = opts.body instanceof FormData;
  if (opts.body !== undefined && !multipart) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method: opts.method ?? "GET",
    headers,
    body: opts.body === undefined ? undefined : opts.body instanceof FormData ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.text();
  /** @type {any} */
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const message = body?.detail || body?.title || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, String(message).trim(), body);
  }
  return body;
}

/**
 * A file of this server's that only its token may read (a Files API upload), as a blob: URL for
 * an <img>; undefined without a token or when the token may not read it. The token is sent only
 * to this page's own origin.
 * @param {string} url
 * @returns {Promise<string | undefined>}
 */
export async function privateFileUrl(url) {
  const token = getToken();
  let target;
  try {
    target = new URL(url, location.href);
  } catch {
    return undefined;
  }
  if (!token || target.origin !== location.origin) return undefined;
  const res = await fetch(target, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (!res.ok) return undefined;
  return URL.createObjectURL(await res.blob());
}

/** @type {Set<() => void>} */
const listeners = new Set();

/** Calls `listener` whenever the token is saved or forgotten. @param {() => void} listener */
export function onTokenChange(listener) {
  listeners.add(listener);
}

/** @param {string} id */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el;
}

function updateTokenButtons() {
  const has = Boolean(getToken());
  for (const b of document.querySelectorAll('header [data-action="open-token"]')) {
    b.textContent = has ? "API token ✓" : "Set API token";
  }
}

/**
 * Opens the token dialog; `reason` says why it is needed.
 * @param {string} [reason]
 */
export function openTokenDialog(reason) {
  const dialog = /** @type {HTMLDialogElement} */ (byId("token-dialog"));
  const error = byId("token-error");
  error.textContent = reason ?? "";
  error.hidden = !reason;
  if (!dialog.open) dialog.showModal();
  byId("token-input").focus();
}

/** Wires the header's token button and the dialog (every page has both). */
export function initTokenControls() {
  const dialog = /** @type {HTMLDialogElement} */ (byId("token-dialog"));
  const form = /** @type {HTMLFormElement} */ (byId("token-form"));
  const input = /** @type {HTMLInputElement} */ (byId("token-input"));
  const error = byId("token-error");
  for (const b of document.querySelectorAll('[data-action="open-token"]')) {
    /** @type {HTMLElement} */ (b).hidden = false;
    b.addEventListener("click", () => openTokenDialog());
  }
  updateTokenButtons();
  const notify = () => {
    updateTokenButtons();
    for (const l of listeners) l();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    try {
      // Any authenticated route tells whether the server knows the token.
      await api("/v1/account", { token });
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? "This server does not accept that token."
          : `Could not check the token: ${err instanceof Error ? err.message : String(err)}`;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    storeToken(token);
    input.value = "";
    input.removeAttribute("aria-invalid");
    error.hidden = true;
    dialog.close();
    notify();
  });
  form.querySelector('[data-action="forget-token"]')?.addEventListener("click", () => {
    storeToken(null);
    input.value = "";
    dialog.close();
    notify();
  });
  form.querySelector('[data-action="close-token"]')?.addEventListener("click", () => dialog.close());
}
