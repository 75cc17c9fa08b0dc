// @ts-check
/**
 * The playground's file inputs (made by src/web/schema-form.ts for inputs of `format: "uri"`):
 * a picture chosen, dropped or pasted is checked here (a picture the browser can read, within the
 * server's size limit), previewed, and at run time uploaded through the Files API (POST /files,
 * as Replicate's clients do); its `urls.get` becomes the input's value. A URL typed or pasted
 * instead is sent as it is. A `mask` beside an `image` can be painted over the image with a
 * brush; the painted mask (white = repaint, black = keep, at the image's size) is sent as a PNG.
 */
import { ApiError, api } from "./api.js";

/** The types the engine decodes. */
const PICTURE_TYPES = ["image/png", "image/jpeg", "image/webp"];
/** How the painted area shows over the picture (the mask sent is white on black). */
const PAINT = "rgb(255 40 140)";

/** @param {number} bytes */
function fileSize(bytes) {
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} kB`;
  return `${(bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, "")} MB`;
}

/**
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} selector
 * @returns {T}
 */
function $(root, selector) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`${selector} is missing`);
  return /** @type {T} */ (el);
}

/** A picture's pixel size, or undefined when the browser cannot read it as a picture. @param {string} src */
async function pictureSize(src) {
  const img = new Image();
  img.src = src;
  try {
    await img.decode();
  } catch {
    return undefined;
  }
  return img.naturalWidth > 0 ? { width: img.naturalWidth, height: img.naturalHeight } : undefined;
}

/**
 * @typedef {object} FileFieldOptions
 * @property {number} maxBytes the server's limit on a file input
 * @property {(name: string, text: string) => void} setError shows (or with "" clears) the field's error
 * @property {() => void} onChange the field's value changed (for the snippets)
 */

/** One file input: its chosen file or URL, preview and upload. */
export class FileField {
  /**
   * @param {HTMLElement} root the `[data-file-input]` element
   * @param {FileFieldOptions} options
   */
  constructor(root, options) {
    this.root = root;
    this.options = options;
    this.name = root.dataset.fileInput ?? "";
    this.label = root.dataset.label ?? this.name;
    /** @type {HTMLInputElement} */
    this.picker = $(root, 'input[type="file"]');
    /** @type {HTMLInputElement} */
    this.url = $(root, '[data-role="file-url"]');
    /** @type {HTMLElement} */
    this.zone = $(root, '[data-role="drop-zone"]');
    /** @type {HTMLElement} */
    this.preview = $(root, '[data-role="preview"]');
    /** @type {HTMLImageElement} */
    this.thumb = $(root, '[data-role="thumb"]');
    /** @type {HTMLElement} */
    this.fileName = $(root, '[data-role="file-name"]');
    /** @type {HTMLButtonElement} */
    this.remove = $(root, '[data-action="remove-file"]');
    /** @type {File | null} the accepted file */
    this.file = null;
    /** @type {string | null} its object URL (preview, mask painter) */
    this.objectUrl = null;
    /** @type {{ width: number, height: number } | null} */
    this.size = null;
    /** @type {{ file: File, url: string } | null} the last upload, reused while the file stays */
    this.uploaded = null;
    /** @type {Set<() => void>} */
    this.listeners = new Set();

    this.picker.addEventListener("change", () => {
      const f = this.picker.files?.[0];
      if (f) this.accept(f);
    });
    this.url.addEventListener("input", () => {
      if (this.url.value.trim() !== "" && this.file) this.clear(false);
      this.options.setError(this.name, "");
      this.options.onChange();
    });
    this.remove.addEventListener("click", () => {
      this.clear(true);
      this.picker.focus();
    });
    for (const type of ["dragenter", "dragover"]) {
      this.zone.addEventListener(type, (e) => {
        e.preventDefault();
        this.zone.classList.add("dragging");
      });
    }
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("dragging"));
    this.zone.addEventListener("drop", (e) => {
      e.preventDefault();
      this.zone.classList.remove("dragging");
      const f = e.dataTransfer?.files[0];
      if (f) this.accept(f);
      else this.takeText(e.dataTransfer?.getData("text/uri-list") || e.dataTransfer?.getData("text/plain") || "");
    });
    // A picture (or its URL) pasted while the picker or the zone has the focus.
    this.zone.addEventListener("paste", (e) => {
      const f = e.clipboardData?.files[0];
      if (f) {
        e.preventDefault();
        this.accept(f);
      } else if (e.clipboardData) {
        e.preventDefault();
        this.takeText(e.clipboardData.getData("text/plain"));
      }
    });
  }

  /** Called whenever the accepted file changes (the mask painter follows the image). @param {() => void} listener */
  onFileChange(listener) {
    this.listeners.add(listener);
  }

  /** @param {string} text a dropped or pasted URL */
  takeText(text) {
    const t = text.trim().split("\n")[0]?.trim() ?? "";
    if (!t) return;
    this.clear(false);
    this.url.value = t;
    this.url.focus();
    this.options.onChange();
  }

  /** Checks a chosen, dropped or pasted file and shows it, or says why it cannot be used. @param {File} f */
  async accept(f) {
    const problem = await this.problemWith(f);
    if (problem) {
      this.clear(false);
      this.options.setError(this.name, problem);
      this.picker.focus();
      return;
    }
    this.options.setError(this.name, "");
    this.release();
    this.file = f;
    this.objectUrl = URL.createObjectURL(f);
    this.size = (await pictureSize(this.objectUrl)) ?? null;
    this.thumb.src = this.objectUrl;
    this.thumb.alt = `${this.label}: ${f.name}`;
    this.fileName.textContent = `${f.name} · ${this.size?.width}×${this.size?.height} · ${fileSize(f.size)}`;
    this.preview.hidden = false;
    this.remove.hidden = false;
    this.url.value = "";
    // The picker shows the dropped or pasted file too (where the browser allows setting it).
    if (this.picker.files?.[0] !== f) {
      try {
        const dt = new DataTransfer();
        dt.items.add(f);
        this.picker.files = dt.files;
      } catch {
        // not settable here: the preview says which file it is
      }
    }
    for (const l of this.listeners) l();
    this.options.onChange();
  }

  /** Why `f` cannot be this input, or "" when it can. @param {File} f */
  async problemWith(f) {
    if (f.size > this.options.maxBytes) {
      return `${f.name} is ${fileSize(f.size)}: over this server's limit of ${fileSize(this.options.maxBytes)} for a file input.`;
    }
    const url = URL.createObjectURL(f);
    try {
      const size = await pictureSize(url);
      if (!size) return `${f.name} is not a picture (a PNG, JPEG or WebP image is needed).`;
      if (f.type && !PICTURE_TYPES.includes(f.type)) {
        return `${f.name} is ${f.type}; this server reads PNG, JPEG and WebP images.`;
      }
      return "";
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  release() {
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }

  /** Forgets the file (and with `all`, the URL too). @param {boolean} all */
  clear(all) {
    const had = this.file !== null;
    this.release();
    this.file = null;
    this.size = null;
    this.picker.value = "";
    this.thumb.removeAttribute("src");
    this.thumb.alt = "";
    this.fileName.textContent = "";
    this.preview.hidden = true;
    this.remove.hidden = true;
    if (all) this.url.value = "";
    if (had) for (const l of this.listeners) l();
    this.options.onChange();
  }

  /** Whether the input has a value (a file or a URL). */
  filled() {
    return this.file !== null || this.url.value.trim() !== "";
  }

  /** What the snippets show for it: the uploaded file's URL, a URL given, or a placeholder. */
  snippetValue() {
    if (this.file)
      return this.uploaded?.file === this.file ? this.uploaded.url : `<${this.name}: upload ${this.file.name}>`;
    const u = this.url.value.trim();
    return u || undefined;
  }

  /** The browser's check of a typed URL. */
  urlProblem() {
    return !this.file && this.url.value.trim() !== "" && !this.url.checkValidity() ? this.url.validationMessage : "";
  }

  /**
   * The value to send: the chosen file uploaded (once) through the Files API, or the URL given.
   * @param {string} apiBase
   * @returns {Promise<string | undefined>}
   */
  async value(apiBase) {
    if (this.file) {
      if (this.uploaded?.file !== this.file) {
        const url = await uploadFile(apiBase, this.file, this.name);
        this.uploaded = { file: this.file, url };
      }
      return this.uploaded?.url;
    }
    const u = this.url.value.trim();
    return u === "" ? undefined : u;
  }
}

/**
 * Uploads `blob` as a Files API file and returns its `urls.get`; a refusal is an ApiError whose
 * message says why, for the field it belongs to.
 * @param {string} apiBase
 * @param {Blob} blob
 * @param {string} name
 * @returns {Promise<string>}
 */
export async function uploadFile(apiBase, blob, name) {
  const body = new FormData();
  body.append("content", blob, blob instanceof File ? blob.name : `${name}.png`);
  body.append("metadata", JSON.stringify({ source: "playground", input: name }));
  try {
    const file = await api(`${apiBase}/files`, { method: "POST", body });
    return String(file.urls.get);
  } catch (err) {
    if (err instanceof ApiError && err.status === 413) {
      throw new ApiError(413, `The file is over this server's size limit: ${err.message}`, err.body);
    }
    throw err;
  }
}

/**
 * The brush that paints a mask over the image input. What is painted is kept in a canvas at the
 * image's own size (its alpha is the mask); exported, each pixel painted at least half is white
 * and the rest black.
 */
export class MaskPainter {
  /**
   * @param {HTMLElement} root the `[data-role="mask-painter"]` element
   * @param {FileField} image the image input it paints over
   * @param {() => void} onChange
   */
  constructor(root, image, onChange) {
    this.root = root;
    this.image = image;
    this.onChange = onChange;
    /** @type {HTMLCanvasElement} */
    this.canvas = $(root, '[data-role="mask-canvas"]');
    /** @type {HTMLImageElement} */
    this.img = $(root, '[data-role="mask-image"]');
    /** @type {HTMLInputElement} */
    this.brush = $(root, '[data-role="brush-size"]');
    /** @type {HTMLButtonElement} */
    this.eraseButton = $(root, '[data-action="mask-erase"]');
    const ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("no 2D canvas");
    this.ctx = ctx;
    this.erasing = false;
    /** Bumped on every change, so that an upload of the painted mask is reused until then. */
    this.version = 0;
    /** @type {{ version: number, url: string } | null} */
    this.uploaded = null;
    /** @type {{ x: number, y: number } | null} */
    this.last = null;

    image.onFileChange(() => this.follow());
    this.eraseButton.addEventListener("click", () => {
      this.erasing = !this.erasing;
      this.eraseButton.setAttribute("aria-pressed", String(this.erasing));
    });
    $(root, '[data-action="mask-clear"]').addEventListener("click", () => this.clear());
    $(root, '[data-action="mask-invert"]').addEventListener("click", () => this.invert());
    this.canvas.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      this.canvas.setPointerCapture(e.pointerId);
      this.last = this.point(e);
      this.stroke(this.last, this.last);
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!this.last) return;
      const p = this.point(e);
      this.stroke(this.last, p);
      this.last = p;
    });
    const end = () => {
      if (this.last) this.changed();
      this.last = null;
    };
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
  }

  /** Shows the painter over the image input's file (a new picture starts with an empty mask). */
  follow() {
    const { objectUrl, size } = this.image;
    this.root.hidden = !objectUrl || !size;
    if (!objectUrl || !size) return;
    this.img.src = objectUrl;
    this.img.alt = "";
    this.canvas.width = size.width;
    this.canvas.height = size.height;
    this.brush.max = String(Math.max(8, Math.round(Math.max(size.width, size.height) / 2)));
    this.brush.value = String(Math.max(2, Math.round(Math.min(size.width, size.height) / 16)));
    this.clear();
  }

  /** A pointer's position in the image's pixels. @param {PointerEvent} e */
  point(e) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((e.clientX - box.left) / box.width) * this.canvas.width,
      y: ((e.clientY - box.top) / box.height) * this.canvas.height,
    };
  }

  /** @param {{ x: number, y: number }} from @param {{ x: number, y: number }} to */
  stroke(from, to) {
    const c = this.ctx;
    c.save();
    c.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    c.strokeStyle = PAINT;
    c.fillStyle = PAINT;
    c.lineWidth = Number(this.brush.value);
    c.lineCap = "round";
    c.lineJoin = "round";
    c.beginPath();
    if (from.x === to.x && from.y === to.y) {
      c.arc(to.x, to.y, c.lineWidth / 2, 0, Math.PI * 2);
      c.fill();
    } else {
      c.moveTo(from.x, from.y);
      c.lineTo(to.x, to.y);
      c.stroke();
    }
    c.restore();
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.changed();
  }

  /** Painted becomes kept and kept painted. */
  invert() {
    const { width, height } = this.canvas;
    if (width === 0 || height === 0) return;
    const data = this.ctx.getImageData(0, 0, width, height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const a = 255 - (px[i + 3] ?? 0);
      px[i] = 255;
      px[i + 1] = 40;
      px[i + 2] = 140;
      px[i + 3] = a;
    }
    this.ctx.putImageData(data, 0, 0);
    this.changed();
  }

  changed() {
    this.version++;
    this.onChange();
  }

  /** Whether anything is painted (then the painted mask is the input's value). */
  painted() {
    if (this.root.hidden || this.canvas.width === 0) return false;
    const px = this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height).data;
    for (let i = 3; i < px.length; i += 4) if ((px[i] ?? 0) >= 128) return true;
    return false;
  }

  /** The mask as a PNG: white where painted (alpha at least half), black elsewhere, at the image's size. */
  toPng() {
    const { width, height } = this.canvas;
    const painted = this.ctx.getImageData(0, 0, width, height).data;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const octx = out.getContext("2d");
    if (!octx) throw new Error("no 2D canvas");
    const mask = octx.createImageData(width, height);
    for (let i = 0; i < painted.length; i += 4) {
      const v = (painted[i + 3] ?? 0) >= 128 ? 255 : 0;
      mask.data[i] = v;
      mask.data[i + 1] = v;
      mask.data[i + 2] = v;
      mask.data[i + 3] = 255;
    }
    octx.putImageData(mask, 0, 0);
    return /** @type {Promise<Blob>} */ (
      new Promise((resolve, reject) =>
        out.toBlob((b) => (b ? resolve(b) : reject(new Error("Could not encode the mask"))), "image/png"),
      )
    );
  }

  /**
   * The painted mask uploaded (once per change) through the Files API.
   * @param {string} apiBase
   * @param {string} name the mask input's name
   */
  async value(apiBase, name) {
    if (this.uploaded?.version !== this.version) {
      const version = this.version;
      const url = await uploadFile(apiBase, await this.toPng(), name);
      this.uploaded = { version, url };
    }
    return this.uploaded.url;
  }
}

/**
 * Wires every file input of `form`; returns what the playground asks of them.
 * @param {HTMLFormElement} form
 * @param {FileFieldOptions} options
 */
export function initFileInputs(form, options) {
  /** @type {Map<string, FileField>} */
  const fields = new Map();
  for (const el of form.querySelectorAll("[data-file-input]")) {
    const f = new FileField(/** @type {HTMLElement} */ (el), options);
    fields.set(f.name, f);
  }
  /** @type {Map<string, MaskPainter>} painters by the mask input's name */
  const painters = new Map();
  for (const el of form.querySelectorAll('[data-role="mask-painter"]')) {
    const root = /** @type {HTMLElement} */ (el);
    const over = fields.get(root.dataset.over ?? "");
    const name = root.closest("[data-field]")?.getAttribute("data-field") ?? "";
    if (over && fields.has(name)) painters.set(name, new MaskPainter(root, over, options.onChange));
  }

  return {
    /** The file inputs' values for the snippets (no upload). */
    snippetValues() {
      /** @type {Record<string, string>} */
      const out = {};
      for (const [name, f] of fields) {
        const painter = painters.get(name);
        const v =
          painter?.painted() === true
            ? painter.uploaded?.version === painter.version
              ? painter.uploaded.url
              : `<${name}: the painted mask>`
            : f.snippetValue();
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
    /** Shows each file input's problem (required and empty, a malformed URL); false if any. */
    validate() {
      /** @type {HTMLElement | null} */
      let first = null;
      for (const [name, f] of fields) {
        const painted = painters.get(name)?.painted() === true;
        const problem =
          f.urlProblem() ||
          (f.picker.required && !f.filled() && !painted
            ? `Choose, drop or paste ${f.label.toLowerCase()} file, or give its URL.`
            : "");
        if (problem) {
          options.setError(name, problem);
          first ??= f.picker;
        }
      }
      first?.focus();
      return first === null;
    },
    /**
     * The file inputs' values for a run: files uploaded through the Files API. A refused upload
     * is shown by its field and rethrown.
     * @param {string} apiBase
     */
    async values(apiBase) {
      /** @type {Record<string, string>} */
      const out = {};
      for (const [name, f] of fields) {
        const painter = painters.get(name);
        try {
          const v = painter?.painted() === true ? await painter.value(apiBase, name) : await f.value(apiBase);
          if (v !== undefined) out[name] = v;
        } catch (err) {
          if (err instanceof ApiError && err.status !== 401) {
            options.setError(name, `Could not upload ${f.label.toLowerCase()}: ${err.message}`);
            err.shown = true;
          }
          throw err;
        }
      }
      return out;
    },
    /** Back to no files (the form's reset). */
    reset() {
      for (const f of fields.values()) f.clear(true);
    },
  };
}
