// @ts-check
/**
 * Follows a prediction's section (rendered by the server, see src/web/prediction-view.ts) while
 * it runs: its event stream with previews (?preview=1) drives the status, progress bar, logs and
 * preview images; when the stream says done, the section is fetched again from the server and
 * swapped in. Also the section's buttons: cancel, and run again with the same or a new seed.
 */
import { ApiError, api, getToken, openTokenDialog, privateFileUrl } from "./api.js";

/** The clients' progress regex, as in src/server/models/progress-bar.ts. */
const PROGRESS = /^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)/;
const SEED = /^Using seed: (\d+)$/;

/**
 * @typedef {object} FollowOptions
 * @property {(prediction: any) => void} [onStarted] "run again" made this prediction (default: open its page)
 * @property {(section: HTMLElement) => void} [onFinished] it ended; `section` is the fresh one
 */

/**
 * @param {HTMLElement} section
 * @param {string} role
 * @returns {HTMLElement | null}
 */
function part(section, role) {
  return section.querySelector(`[data-role="${role}"]`);
}

/** Shows the server's UTC times in the reader's time zone. @param {HTMLElement} section */
function localizeTimes(section) {
  for (const t of section.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime") ?? "");
    if (!Number.isNaN(d.getTime())) t.textContent = d.toLocaleString();
  }
}

/** @param {HTMLElement} section @param {string} text */
function say(section, text) {
  const m = part(section, "message");
  if (m) m.textContent = text;
}

/** @param {HTMLElement} section @param {string} status */
function setStatus(section, status) {
  if (section.dataset.status === status) return;
  section.dataset.status = status;
  const badge = part(section, "status");
  if (badge) {
    badge.textContent = status;
    badge.dataset.status = status;
  }
  const detail = section.querySelector('[data-detail="status"]');
  if (detail) detail.textContent = status;
  for (const c of section.querySelectorAll('[data-role="preview-frame"] figcaption')) c.textContent = "Denoising…";
}

/** @param {HTMLElement} section @param {number} done @param {number} total */
function setProgress(section, done, total) {
  const bar = /** @type {HTMLProgressElement | null} */ (part(section, "progress-bar"));
  if (bar) {
    bar.max = total;
    bar.value = done;
  }
  const text = part(section, "progress-text");
  if (text) text.textContent = `${done} / ${total} steps`;
}

/** @param {HTMLElement} section @param {string} seed */
function setSeed(section, seed) {
  section.dataset.seed = seed;
  const detail = section.querySelector('[data-detail="seed"]');
  if (detail) detail.textContent = seed;
  const same = /** @type {HTMLButtonElement | null} */ (section.querySelector('[data-action="rerun-same"]'));
  if (same) same.disabled = false;
}

/** Draws the newest preview of each output into its frame (one frame per output). */
function previewPainter() {
  let latest = 0;
  /** @param {HTMLElement} section @param {string[]} images */
  return async (section, images) => {
    const mine = ++latest;
    const decoded = await Promise.all(
      images.map(async (src) => {
        const img = new Image();
        img.src = src;
        await img.decode();
        return img;
      }),
    ).catch(() => undefined);
    if (!decoded || mine !== latest) return; // a newer preview is on its way
    const frames = [...section.querySelectorAll('[data-role="preview-frame"]')];
    const first = frames[0];
    if (!first) return;
    while (frames.length < decoded.length) {
      const copy = /** @type {Element} */ (first.cloneNode(true));
      frames[frames.length - 1]?.after(copy);
      frames.push(copy);
    }
    decoded.forEach((img, i) => {
      const canvas = /** @type {HTMLCanvasElement | null} */ (frames[i]?.querySelector("canvas") ?? null);
      const ctx = canvas?.getContext("2d");
      if (!canvas || !ctx) return;
      // Without a known output size the canvas takes the preview's own (same aspect ratio).
      if (canvas.width <= 1) {
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
      }
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      frames[i]?.classList.add("has-preview");
      canvas.setAttribute("aria-label", `Preview of output ${i + 1}, updated while it is denoised`);
    });
  };
}

/**
 * Wires `section` and, while its prediction runs, follows it. Returns a function that stops.
 * @param {HTMLElement} section
 * @param {FollowOptions} [options]
 * @returns {() => void}
 */
export function followPrediction(section, options = {}) {
  localizeTimes(section);
  showUploadedInputs(section);
  bindActions(section, options);
  const status = section.dataset.status;
  if (status !== "starting" && status !== "processing") return () => {};

  const logs = part(section, "logs");
  // The server rendered the log lines so far; the stream replays them as events 0, 1, …
  const rendered = logs?.textContent ? logs.textContent.replace(/\n$/, "").split("\n").length : 0;
  const paint = previewPainter();
  const source = new EventSource(`${section.dataset.stream}?preview=1`);
  let stopped = false;
  const stop = () => {
    stopped = true;
    source.close();
  };

  source.addEventListener("logs", (e) => {
    const line = String(e.data);
    if (Number(e.lastEventId) >= rendered && logs) {
      const follow = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.textContent += `${line}\n`;
      if (follow) logs.scrollTop = logs.scrollHeight;
    }
    setStatus(section, "processing");
    const seed = SEED.exec(line);
    if (seed?.[1]) setSeed(section, seed[1]);
    const progress = PROGRESS.exec(line);
    if (progress) setProgress(section, Number(progress[2]), Number(progress[3]));
  });
  source.addEventListener("preview", (e) => {
    const data = JSON.parse(String(e.data));
    setStatus(section, "processing");
    setProgress(section, data.step, data.total);
    paint(section, data.images);
  });
  source.addEventListener("output", (e) => {
    // Show each image as it arrives; the section swapped in at done adds the download links.
    const outputs = part(section, "outputs");
    const img = document.createElement("img");
    img.src = String(e.data);
    img.alt = "Output";
    const figure = document.createElement("figure");
    figure.className = "output";
    figure.append(img);
    outputs?.querySelector('[data-role="preview-frame"]')?.remove();
    outputs?.append(figure);
  });
  source.addEventListener("error", (e) => {
    if (e instanceof MessageEvent) {
      // The prediction's own error event.
      const box = part(section, "error");
      if (box) {
        box.textContent = JSON.parse(String(e.data)).detail ?? String(e.data);
        box.hidden = false;
      }
    } else if (source.readyState === EventSource.CLOSED && !stopped) {
      say(section, "Lost the connection to the server; reload the page to follow this prediction.");
    }
    // Otherwise the browser reconnects by itself, resuming after the last event it saw.
  });
  source.addEventListener("done", async () => {
    stop();
    try {
      const fresh = await refresh(section);
      followPrediction(fresh, options);
      options.onFinished?.(fresh);
    } catch {
      say(section, "The prediction ended; reload the page to see it.");
    }
  });
  return stop;
}

/**
 * The input pictures uploaded through the Files API: only their token may read them, so they are
 * fetched with the token kept here; with another token (or none) the note says why none shows.
 * @param {HTMLElement} section
 */
function showUploadedInputs(section) {
  for (const el of section.querySelectorAll("[data-input-image][data-file]")) {
    const figure = /** @type {HTMLElement} */ (el);
    const note = part(figure, "file-note");
    privateFileUrl(figure.dataset.file ?? "")
      .then((src) => {
        if (!src) {
          if (note && getToken())
            note.textContent = "An uploaded file: the API token kept in this browser did not upload it.";
          return;
        }
        const img = document.createElement("img");
        img.src = src;
        img.alt = `Input ${figure.querySelector("figcaption")?.textContent?.toLowerCase() ?? "picture"}`;
        note?.replaceWith(img);
      })
      .catch(() => {
        if (note) note.textContent = "An uploaded file: it could not be loaded.";
      });
  }
}

/**
 * Replaces `section` with the server's current rendering of it.
 * @param {HTMLElement} section
 * @returns {Promise<HTMLElement>}
 */
async function refresh(section) {
  const res = await fetch(section.dataset.fragment ?? "", { cache: "no-store" });
  if (!res.ok) throw new Error(`${res.status}`);
  const template = document.createElement("template");
  template.innerHTML = await res.text(); // the server's own markup, escaped where it renders
  const fresh = /** @type {HTMLElement | null} */ (template.content.querySelector("[data-prediction]"));
  if (!fresh) throw new Error("no prediction in the fragment");
  const hadFocus = section.contains(document.activeElement);
  section.replaceWith(fresh);
  if (hadFocus) {
    fresh.tabIndex = -1;
    fresh.focus();
  }
  return fresh;
}

/**
 * @param {HTMLElement} section
 * @param {FollowOptions} options
 */
function bindActions(section, options) {
  /** @param {string} action @param {() => Promise<void>} run */
  const on = (action, run) => {
    const button = /** @type {HTMLButtonElement | null} */ (section.querySelector(`[data-action="${action}"]`));
    if (button) button.hidden = false;
    button?.addEventListener("click", async () => {
      if (!getToken()) {
        openTokenDialog("This takes the API token that made the prediction.");
        return;
      }
      button.disabled = true;
      try {
        await run();
      } catch (err) {
        say(section, describe(err));
      } finally {
        button.disabled = false;
      }
    });
  };
  on("cancel", async () => {
    say(section, "Cancelling…");
    await api(section.dataset.cancel ?? "", { method: "POST" });
  });
  /** @param {boolean} sameSeed */
  const rerun = async (sameSeed) => {
    const input = { ...JSON.parse(section.dataset.input ?? "{}") };
    if (sameSeed) input.seed = Number(section.dataset.seed);
    else delete input.seed;
    say(section, "Starting…");
    const p = await api("/v1/predictions", { method: "POST", body: { version: section.dataset.version, input } });
    say(section, "");
    if (options.onStarted) options.onStarted(p);
    else location.assign(p.urls.web);
  };
  on("rerun-same", () => rerun(true));
  on("rerun-new", () => rerun(false));
}

/** @param {unknown} err */
function describe(err) {
  if (err instanceof ApiError && err.status === 404) {
    return "The API token kept in this browser did not make this prediction, so it cannot act on it.";
  }
  if (err instanceof ApiError && err.status === 401) return "This server does not accept the kept API token.";
  return err instanceof Error ? err.message : String(err);
}
