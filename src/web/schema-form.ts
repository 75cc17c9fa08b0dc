/**
 * The playground's form, made from the model's Input schema: the same `components.schemas` that
 * validate the API's input and are served as the version's openapi_schema. Each property becomes
 * one labelled control, in x-order: enums a select, strings a text area, integers and numbers a
 * number field with the schema's bounds, booleans a checkbox; defaults are the initial values.
 * File inputs (`format: "uri"`, such as `image` and `mask`) are a file picker with a drop zone,
 * a preview and a field for a pasted URL; static/file-input.js uploads the chosen file through
 * the Files API and sends its URL. A `mask` beside an `image` can also be painted over the image.
 */
import { flatten, type JsonSchema } from "../server/schemas/json-schema.js";
import { type Html, html } from "./html.js";

export type FieldType = "string" | "integer" | "number" | "boolean" | "file";

export interface FormField {
  name: string;
  label: string;
  description: string | undefined;
  type: FieldType;
  enum: readonly (string | number)[] | undefined;
  default: unknown;
  minimum: number | undefined;
  maximum: number | undefined;
  /** The schema's maxLength of a string (the browser then stops typing there). */
  maxLength: number | undefined;
  required: boolean;
  /** A file input whose mask can be painted over this other file input (the `image` beside a `mask`). */
  paintsOver: string | undefined;
}

/** Cog titles enum properties with the enum's own name ("width"): show "Width" instead. */
function labelOf(name: string, title: unknown): string {
  if (typeof title === "string" && title !== name) return title;
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The Input schema's properties as form fields, in x-order. */
export function inputFields(schemas: Record<string, JsonSchema>): FormField[] {
  const input = schemas["Input"];
  if (!input) return [];
  const root = { components: { schemas } };
  const flat = flatten(input, root);
  const required = new Set(flat.required ?? []);
  const properties = flat.properties ?? {};
  const isFile = (name: string) => {
    const p = properties[name];
    return p !== undefined && flatten(p, root)["format"] === "uri";
  };
  return Object.entries(properties)
    .map(([name, prop]) => ({ name, s: flatten(prop, root) }))
    .sort((a, b) => Number(a.s["x-order"] ?? 1e9) - Number(b.s["x-order"] ?? 1e9))
    .flatMap(({ name, s }): FormField[] => {
      const type = s.type;
      if (type !== "string" && type !== "integer" && type !== "number" && type !== "boolean") return [];
      const file = type === "string" && s["format"] === "uri";
      return [
        {
          name,
          label: labelOf(name, s["title"]),
          description: typeof s["description"] === "string" ? s["description"] : undefined,
          type: file ? "file" : type,
          enum: s.enum as readonly (string | number)[] | undefined,
          default: s["default"],
          minimum: s.minimum,
          maximum: s.maximum,
          maxLength: s.maxLength,
          required: required.has(name),
          paintsOver: file && name === "mask" && isFile("image") ? "image" : undefined,
        },
      ];
    });
}

function fieldId(f: FormField): string {
  return `field-${f.name}`;
}

/** The picture types the engine decodes (the `accept` of a file picker). */
export const PICTURE_TYPES = "image/png,image/jpeg,image/webp";

/**
 * A file input: the picker (the field's label names it) inside a drop zone that also takes a
 * pasted picture, a field for a URL instead, a preview, and for a mask the brush's controls.
 */
function fileControl(f: FormField): Html {
  const id = fieldId(f);
  const described = html`aria-describedby="${id}-hint ${id}-error"`;
  const paint = f.paintsOver
    ? html`<div class="mask-painter" data-role="mask-painter" data-over="${f.paintsOver}" hidden>
<p class="hint" id="${id}-paint-hint">Paint over the picture where it should change: white is repainted, the rest is kept. The painted mask is sent instead of a mask file.</p>
<div class="mask-stage" data-role="mask-stage"><img data-role="mask-image" alt=""><canvas data-role="mask-canvas" role="img" aria-label="Mask painted over the image" aria-describedby="${id}-paint-hint"></canvas></div>
<div class="mask-tools" role="group" aria-label="Mask brush">
<label class="inline" for="${id}-brush">Brush size</label>
<input type="range" id="${id}-brush" data-role="brush-size" min="2" max="256" value="32">
<button type="button" data-action="mask-erase" aria-pressed="false">Erase</button>
<button type="button" data-action="mask-clear">Clear mask</button>
<button type="button" data-action="mask-invert">Invert mask</button>
</div>
</div>`
    : "";
  return html`<div class="file-input" data-file-input="${f.name}" data-label="${f.label}">
<div class="drop-zone" data-role="drop-zone" tabindex="-1">
<input type="file" id="${id}" name="${f.name}" data-type="file" accept="${PICTURE_TYPES}" ${described}${
    f.required ? html` required` : ""
  }>
<p class="drop-hint">or drop a PNG, JPEG or WebP here, or paste one</p>
<figure class="file-preview" data-role="preview" hidden><img data-role="thumb" alt=""><figcaption data-role="file-name"></figcaption></figure>
<button type="button" data-action="remove-file" hidden>Remove ${f.label.toLowerCase()}</button>
</div>
<label class="inline" for="${id}-url">${f.label} URL</label>
<input type="url" id="${id}-url" data-role="file-url" data-for="${f.name}" inputmode="url" placeholder="https://… (instead of a file)" ${described}>
</div>
${paint}`;
}

function control(f: FormField): Html {
  const id = fieldId(f);
  if (f.type === "file") return fileControl(f);
  const common = html`id="${id}" name="${f.name}" data-type="${f.type}" aria-describedby="${id}-hint ${id}-error"${
    f.required ? html` required` : ""
  }`;
  if (f.enum) {
    const options = f.enum.map(
      (v) => html`<option value="${v}"${v === f.default ? html` selected` : ""}>${v}</option>`,
    );
    const blank = f.default === undefined ? html`<option value="">—</option>` : "";
    return html`<select ${common}>${blank}${options}</select>`;
  }
  if (f.type === "boolean") {
    return html`<input type="checkbox" ${common}${f.default === true ? html` checked` : ""}>`;
  }
  if (f.type === "string") {
    const value = typeof f.default === "string" ? f.default : "";
    const max = f.maxLength !== undefined ? html` maxlength="${f.maxLength}"` : "";
    return html`<textarea ${common} rows="2" spellcheck="true"${max}>${value}</textarea>`;
  }
  return html`<input type="number" ${common} inputmode="${f.type === "integer" ? "numeric" : "decimal"}" step="${
    f.type === "integer" ? "1" : "any"
  }"${f.minimum !== undefined ? html` min="${f.minimum}"` : ""}${
    f.maximum !== undefined ? html` max="${f.maximum}"` : ""
  }${typeof f.default === "number" ? html` value="${f.default}"` : ""}>`;
}

function hint(f: FormField): string {
  const parts = [f.description ?? ""];
  if (!f.enum && f.minimum !== undefined && f.maximum !== undefined) parts.push(`(${f.minimum}–${f.maximum})`);
  return parts.filter(Boolean).join(" ");
}

/** One labelled control per field, each with its description as a hint and a slot for its error. */
export function schemaFormFields(fields: readonly FormField[]): Html {
  return html`${fields.map((f) => {
    const id = fieldId(f);
    const cls = f.type === "boolean" ? "field field-check" : `field field-${f.type}`;
    return html`<div class="${cls}" data-field="${f.name}">
<label for="${id}">${f.label}${f.required ? html` <span aria-hidden="true">*</span>` : ""}</label>
${control(f)}
<p class="hint" id="${id}-hint">${hint(f)}</p>
<p class="field-error" id="${id}-error" hidden></p>
</div>
`;
  })}`;
}
