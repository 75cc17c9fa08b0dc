/**
 * A folder of LoRA files that AUTOMATIC1111 prompts call by name (`<lora:NAME:SCALE>`): NAME is
 * a file's name without `.safetensors`, in the folder or a subfolder (as A1111's Lora folder),
 * or else the file's alias, the `ss_output_name` kohya's trainer writes in the header (A1111
 * calls a LoRA by either, and inserts the alias by default).
 */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { ModelError, RequestError } from "./errors.js";
import { readSafetensors } from "./weights/safetensors.js";

/** Subfolders deeper than this are not searched. */
const MAX_DEPTH = 4;
/** A folder listing stops here, so a huge tree cannot stall a request. */
const MAX_FILES = 10_000;

export interface LoraFile {
  /** What a `<lora:NAME>` tag calls it by. */
  name: string;
  path: string;
}

/** The `.safetensors` files of a LoRA folder (sorted by path). A missing folder is a ModelError. */
export async function listLoraFiles(dir: string): Promise<LoraFile[]> {
  const out: LoraFile[] = [];
  const walk = async (folder: string, depth: number): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (out.length >= MAX_FILES) return;
      const full = path.join(folder, e.name);
      if (e.isDirectory() && depth < MAX_DEPTH) await walk(full, depth + 1);
      else if ((e.isFile() || e.isSymbolicLink()) && e.name.toLowerCase().endsWith(".safetensors")) {
        out.push({ name: e.name.slice(0, -".safetensors".length), path: full });
      }
    }
  };
  try {
    await walk(dir, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new ModelError("LoRA folder not found", { file: dir });
    throw err;
  }
  return out;
}

/** Each file's alias by path, kept while the file's size and modification time stay the same. */
const aliases = new Map<string, { identity: string; alias: string | undefined }>();

/** A LoRA file's `ss_output_name` (undefined: none, or the file cannot be read). */
async function aliasOf(file: string): Promise<string | undefined> {
  const st = await stat(file).catch(() => undefined);
  if (!st) return undefined;
  const identity = `${st.size}\0${st.mtimeMs}`;
  const known = aliases.get(file);
  if (known?.identity === identity) return known.alias;
  const alias = await readSafetensors(file).then(
    (f) => f.metadata["ss_output_name"],
    () => undefined,
  );
  aliases.set(file, { identity, alias });
  return alias;
}

/**
 * The file a `<lora:NAME>` tag names: by file name, else by alias (the headers are read only
 * then, once per file version); RequestError when there is none or more than one.
 */
export async function findLora(dir: string, name: string): Promise<string> {
  // A name is matched against the listing, never joined onto the folder: "../x" finds nothing.
  const files = await listLoraFiles(dir);
  let hits = files.filter((f) => f.name === name);
  if (hits.length === 0) {
    const aliased: LoraFile[] = [];
    for (const f of files) if ((await aliasOf(f.path)) === name) aliased.push(f);
    hits = aliased;
  }
  if (hits.length === 0) {
    throw new RequestError(
      `LoRA "${name}" not found in the LoRA folder (by file name or ss_output_name alias)`,
      "prompt",
    );
  }
  if (hits.length > 1) {
    throw new RequestError(
      `LoRA name "${name}" is ambiguous: ${hits.map((h) => path.relative(dir, h.path)).join(", ")}`,
      "prompt",
    );
  }
  return (hits[0] as LoraFile).path;
}
