/** The engine's one reader of JSON files (configs, tokenizer files): an object, or a ModelError naming the file. */
import { ModelError } from "./errors.js";

export function parseJsonObject(text: string, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    // Files saved by Windows editors may start with a byte-order mark, which JSON.parse refuses.
    value = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (err) {
    throw new ModelError(`is not valid JSON (${(err as Error).message})`, { file });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelError("must hold a JSON object", { file });
  }
  return value as Record<string, unknown>;
}
