/**
 * Turns what a user names as a model into a folder or file to load: tiny-random (built on the
 * spot), a local diffusers folder, a single-file checkpoint (`.safetensors` in the original
 * layout; a pickle, refused when loaded), or a Hugging Face model id (owner/name[@revision]), pulled into the
 * Hugging Face cache or found there, or one checkpoint file of a hub repository
 * (owner/name/file.safetensors[@revision]), downloaded alone into that cache. A folder of that name wins over a hub id, as in diffusers.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { HubError, ModelError } from "./errors.js";
import { type PullEvent, type PulledModel, pullFile, pullModel } from "./hub/pull.js";
import { formatHubFileRef, formatHubRef, parseHubFileId, parseHubId } from "./hub/repo-id.js";
import type { HubSettings } from "./hub/settings.js";
import { ensureTinyRandomModel, TINY_RANDOM } from "./tiny-random.js";
import type { WeightsVariant } from "./weights/model-folder.js";
import { isCheckpointFile, refusePickleName } from "./weights/single-file.js";

export interface ModelSource {
  /** The folder (or single checkpoint file) to load. */
  path: string;
  /** How to name the model to a person. */
  label: string;
  /** Set for a hub model: the commit and files pulled. */
  hub?: PulledModel;
}

export interface ResolveSourceOptions {
  /** Where tiny-random is built (sdserve's cache, SDSERVE_CACHE). */
  cacheDir: string;
  /** The hub and its cache (sdserve's settings read them from the HF_* variables). */
  hub: HubSettings;
  /** Which weights a hub model pulls where it has both. */
  variant?: WeightsVariant;
  onProgress?: (event: PullEvent) => void;
  signal?: AbortSignal;
}

export type SourceKind = "tiny-random" | "folder" | "file" | "hub";

/** What kind of source a spec names, without touching the disk beyond one stat. */
export async function sourceKind(spec: string): Promise<SourceKind | undefined> {
  if (spec === TINY_RANDOM) return "tiny-random";
  const st = await stat(path.resolve(spec)).catch(() => undefined);
  if (st?.isDirectory()) return "folder";
  if (st && isCheckpointFile(spec)) return "file";
  return parseHubId(spec) || parseHubFileId(spec) ? "hub" : undefined;
}

export async function resolveModelSource(spec: string, opts: ResolveSourceOptions): Promise<ModelSource> {
  const kind = await sourceKind(spec);
  if (kind === "tiny-random") return { path: await ensureTinyRandomModel(opts.cacheDir), label: TINY_RANDOM };
  if (kind === "folder" || kind === "file") {
    const resolved = path.resolve(spec);
    return { path: resolved, label: path.basename(resolved) };
  }
  const fileRef = parseHubFileId(spec);
  if (fileRef) {
    // A pickle is refused before a byte of it is downloaded.
    refusePickleName(spec);
    try {
      const pulled = await pullFile(fileRef, {
        settings: opts.hub,
        onProgress: opts.onProgress,
        signal: opts.signal,
      });
      return { path: path.join(pulled.dir, ...fileRef.file.split("/")), label: formatHubFileRef(fileRef), hub: pulled };
    } catch (err) {
      if (err instanceof HubError && err.kind === "not-found" && !spec.includes("@")) {
        throw new HubError(err.kind, `${err.message} (and there is no local file ${spec})`);
      }
      throw err;
    }
  }
  const ref = parseHubId(spec);
  if (!ref) {
    throw new ModelError(
      "no such model folder: give a diffusers-format Stable Diffusion folder (with model_index.json), a Hugging Face model id (owner/name), or tiny-random",
      { file: spec },
    );
  }
  try {
    const pulled = await pullModel(ref, {
      settings: opts.hub,
      variant: opts.variant,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    return { path: pulled.dir, label: formatHubRef(ref), hub: pulled };
  } catch (err) {
    if (err instanceof HubError && err.kind === "not-found" && !spec.includes("@")) {
      throw new HubError(err.kind, `${err.message} (and there is no local folder ${spec})`);
    }
    throw err;
  }
}
