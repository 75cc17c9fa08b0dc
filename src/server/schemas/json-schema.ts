/**
 * The part of JSON Schema that Cog's generated schemas use (type, enum, minimum, maximum,
 * minLength, maxLength, properties, required, additionalProperties, items, allOf with local
 * $refs), checked the way
 * Replicate reports it: every violation at once, each with gojsonschema's type name and
 * wording, so a 422 here reads like one from api.replicate.com (spec §3.1).
 */

export interface JsonSchema {
  type?: "string" | "integer" | "number" | "boolean" | "object" | "array" | "null";
  enum?: readonly unknown[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  minLength?: number;
  properties?: Record<string, JsonSchema>;
  required?: readonly string[];
  additionalProperties?: boolean;
  items?: JsonSchema;
  allOf?: readonly JsonSchema[];
  $ref?: string;
  [key: string]: unknown;
}

export interface InvalidField {
  /** gojsonschema's error type: required, invalid_type, enum, number_gte, … */
  type: string;
  /** Dotted path of the value at fault ("input.width"); "" for the request body itself. */
  field: string;
  description: string;
}

/** JSON Schema's name for a JSON value's type, as gojsonschema reports it ("given: …"). */
function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(expected: string, value: unknown): boolean {
  const actual = jsonType(value);
  // An integer is a number; 512.0 is an integer (JSON Schema compares values, not spellings).
  return actual === expected || (expected === "number" && actual === "integer");
}

function formatEnumValue(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/**
 * Resolves `{"$ref": "#/components/schemas/x"}` and merges `allOf` into one flat schema
 * (also used to build the playground's form from the same schema).
 */
export function flatten(schema: JsonSchema, root: unknown): JsonSchema {
  let out: JsonSchema = { ...schema };
  if (schema.$ref) {
    const target = resolveRef(schema.$ref, root);
    out = { ...flatten(target, root), ...out };
    delete out.$ref;
  }
  if (schema.allOf) {
    const parts = schema.allOf.map((s) => flatten(s, root));
    delete out.allOf;
    out = Object.assign({}, ...parts, out);
  }
  return out;
}

function resolveRef(ref: string, root: unknown): JsonSchema {
  if (!ref.startsWith("#/")) throw new Error(`only local $refs are supported, got ${ref}`);
  let node: unknown = root;
  for (const part of ref.slice(2).split("/")) {
    node = (node as Record<string, unknown> | undefined)?.[part];
  }
  if (!node || typeof node !== "object") throw new Error(`unresolved $ref ${ref}`);
  return node as JsonSchema;
}

/**
 * Validates `value` against `schema`; `root` is the document local $refs point into.
 * `path` names `value` in the messages ("input"); `name` is its property name, used by enum
 * messages ("width must be one of the following: …").
 */
export function validate(
  schema: JsonSchema,
  value: unknown,
  opts: { root?: unknown; path?: string; name?: string } = {},
): InvalidField[] {
  const root = opts.root ?? schema;
  const path = opts.path ?? "";
  const s = flatten(schema, root);
  const errors: InvalidField[] = [];

  if (s.type && !typeMatches(s.type, value)) {
    errors.push({
      type: "invalid_type",
      field: path,
      description: `Invalid type. Expected: ${s.type}, given: ${jsonType(value)}`,
    });
    return errors;
  }
  if (s.enum && !s.enum.some((e) => e === value)) {
    errors.push({
      type: "enum",
      field: path,
      description: `${opts.name ?? path} must be one of the following: ${s.enum.map(formatEnumValue).join(", ")}`,
    });
  }
  if (typeof value === "number") {
    if (s.maximum !== undefined && value > s.maximum) {
      errors.push({ type: "number_lte", field: path, description: `Must be less than or equal to ${s.maximum}` });
    }
    if (s.minimum !== undefined && value < s.minimum) {
      errors.push({ type: "number_gte", field: path, description: `Must be greater than or equal to ${s.minimum}` });
    }
  }
  if (typeof value === "string" && (s.maxLength !== undefined || s.minLength !== undefined)) {
    // JSON Schema counts code points (gojsonschema: runes), not UTF-16 units.
    const length = codePointsUpTo(value, (s.maxLength ?? s.minLength ?? 0) + 1);
    if (s.maxLength !== undefined && length > s.maxLength) {
      errors.push({
        type: "string_lte",
        field: path,
        description: `String length must be less than or equal to ${s.maxLength}`,
      });
    }
    if (s.minLength !== undefined && length < s.minLength) {
      errors.push({
        type: "string_gte",
        field: path,
        description: `String length must be greater than or equal to ${s.minLength}`,
      });
    }
  }
  if (Array.isArray(value) && s.items) {
    value.forEach((item, i) => {
      errors.push(...validate(s.items as JsonSchema, item, { root, path: join(path, String(i)), name: String(i) }));
    });
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    // Own properties only, on both sides: a key named after an Object.prototype member
    // ("toString", "constructor") is neither a declared property nor a present value.
    for (const key of s.required ?? []) {
      if (!Object.hasOwn(obj, key)) errors.push({ type: "required", field: path, description: `${key} is required` });
    }
    for (const [key, v] of Object.entries(obj)) {
      const prop = s.properties && Object.hasOwn(s.properties, key) ? s.properties[key] : undefined;
      if (prop) errors.push(...validate(prop, v, { root, path: join(path, key), name: key }));
      else if (s.additionalProperties === false) {
        errors.push({
          type: "additional_property_not_allowed",
          field: path,
          description: `Additional property ${key} is not allowed`,
        });
      }
    }
  }
  return errors;
}

/** The number of code points in `text`, counting no further than `stop`. */
function codePointsUpTo(text: string, stop: number): number {
  let n = 0;
  for (let i = 0; i < text.length && n < stop; i++, n++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Replicate's `detail` for a 422: one "- field: description" line per violation. */
export function describeInvalidFields(fields: readonly InvalidField[]): string {
  return fields.map((f) => (f.field ? `- ${f.field}: ${f.description}\n` : `- ${f.description}\n`)).join("");
}
