/**
 * Named schemas: a definition written once, used by value in route schemas (Fastify validates
 * and serialises with it) and turned into a `$ref` to `components.schemas.<name>` when the
 * OpenAPI document is made. Identity is the key: the same object is the same component.
 */
import type { JsonSchema } from "./json-schema.js";

const names = new Map<object, string>();

/** Registers `schema` as the component `name` and returns it unchanged. */
export function component<T extends JsonSchema>(name: string, schema: T): T {
  names.set(schema, name);
  return schema;
}

/** The component name of a registered schema. */
export function componentName(schema: unknown): string | undefined {
  return typeof schema === "object" && schema !== null ? names.get(schema) : undefined;
}
