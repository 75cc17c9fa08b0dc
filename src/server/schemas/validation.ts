/**
 * Fastify's validator for every route schema: the JSON Schema checker of json-schema.ts, so a
 * route's params, query and body are refused in Replicate's words (422, invalid_fields, every
 * violation at once) by the same code that checks a model's input.
 */
import type { FastifySchema, FastifySchemaCompiler } from "fastify";
import { badJson } from "../http/problem.js";
import { InvalidInputError } from "../predictions/errors.js";
import { normalizeTimestamp } from "../predictions/ids.js";
import { type InvalidField, type JsonSchema, validate } from "./json-schema.js";

type Part = "body" | "querystring" | "params" | "headers" | string;

/** Query strings carry text: a repeated key counts once (its first value), numbers and booleans are parsed. */
function coerceQuery(schema: JsonSchema, query: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof query !== "object" || query === null) return out;
  for (const [key, raw] of Object.entries(query)) {
    const text: unknown = Array.isArray(raw) ? raw[0] : raw;
    const type = schema.properties?.[key]?.type;
    if (typeof text !== "string") out[key] = text;
    else if ((type === "integer" || type === "number") && /^-?\d+(\.\d+)?$/.test(text)) out[key] = Number(text);
    else if (type === "boolean" && (text === "true" || text === "false")) out[key] = text === "true";
    else out[key] = text;
  }
  return out;
}

/** `format: date-time` on a top-level string: an RFC 3339 timestamp. */
function formatErrors(schema: JsonSchema, value: Record<string, unknown>): InvalidField[] {
  const errors: InvalidField[] = [];
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const v = value[key];
    if (prop["format"] === "date-time" && typeof v === "string" && !normalizeTimestamp(v)) {
      errors.push({
        type: "format",
        field: key,
        description: `${key} must be an RFC 3339 timestamp such as 2025-03-02T10:15:30Z`,
      });
    }
  }
  return errors;
}

export function compileValidator(schema: JsonSchema, part: Part) {
  // Path parameters are strings, and the route matched only with all of them: nothing to check.
  const props = Object.values(schema.properties ?? {});
  if (part === "params" && props.every((p) => p.type === "string" && p.enum === undefined)) return () => true;
  return (data: unknown) => {
    let value = data;
    if (part === "querystring") value = coerceQuery(schema, data);
    if (part === "body") {
      // No body is an empty one (the JS client sends none on cancel); anything but an object is not the JSON asked for.
      if (value === null || value === undefined) value = {};
      else if (typeof value !== "object" || Array.isArray(value)) return { error: badJson() };
    }
    const errors = validate(schema, value);
    if (value !== null && typeof value === "object")
      errors.push(...formatErrors(schema, value as Record<string, unknown>));
    if (errors.length > 0) return { error: new InvalidInputError(errors) };
    return { value };
  };
}

export const validatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) =>
  compileValidator(schema as JsonSchema, httpPart ?? "body");
