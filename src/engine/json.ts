/** The engine's one reader of JSON files (configs, tokenizer files): an object, or a ModelError naming the file. */
import { readFile } from "node:fs/promises";
import { ModelError } from "./errors.js";

/** The JSON object in `file`; a ModelError naming the file when it cannot be read or holds no object. */
export async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ModelError(`cannot be read: ${(err as Error).message}`, { file });
  }
  return parseJsonObject(text, file);
}

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
