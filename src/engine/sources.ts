/** Turns what a user names as a model (a folder, or tiny-random) into a folder to load. */
import { stat } from "node:fs/promises";
import path from "node:path";
import { ModelError } from "./errors.js";
import { ensureTinyRandomModel, TINY_RANDOM } from "./tiny-random.js";

export interface ModelSource {
  /** The folder to load. */
  path: string;
  /** How to name the model to a person. */
  label: string;
}

export async function resolveModelSource(spec: string, opts: { cacheDir?: string } = {}): Promise<ModelSource> {
  if (spec === TINY_RANDOM) return { path: await ensureTinyRandomModel(opts.cacheDir), label: TINY_RANDOM };
  const dir = path.resolve(spec);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new ModelError(
      "no such model folder: give a diffusers-format Stable Diffusion folder (with model_index.json), or tiny-random",
      { file: spec },
    );
  }
  return { path: dir, label: path.basename(dir) };
}
