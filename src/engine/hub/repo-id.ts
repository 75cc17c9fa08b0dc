/**
 * Hub model ids as a user writes them: `owner/name`, optionally `owner/name@revision` (a
 * branch, tag or commit; default main). A bare name, or anything that looks like a path
 * (./x, /x, ~/x, a/b/c), is not a hub id. One file of a repository (a single-file checkpoint):
 * `owner/name/path/to/file.safetensors`, optionally `@revision` after it.
 */
import { checkRepoPath } from "./cache.js";

export interface HubRef {
  /** owner/name */
  repo: string;
  /** Branch, tag or 40-hex commit. */
  revision: string;
}

const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_-])?$/;
const REVISION = /^[A-Za-z0-9._/-]{1,200}$/;

export function parseHubId(spec: string): HubRef | undefined {
  const at = spec.indexOf("@");
  const id = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? "main" : spec.slice(at + 1);
  const parts = id.split("/");
  if (parts.length !== 2) return undefined;
  // The hub forbids "--" and ".." in names: they would be ambiguous in the cache's folder names.
  if (!parts.every((p) => NAME.test(p) && !p.includes("--") && !p.includes(".."))) return undefined;
  if (!REVISION.test(revision) || revision.split("/").some((p) => p === "" || p === "." || p === "..")) {
    return undefined;
  }
  return { repo: id, revision };
}

export function formatHubRef(ref: HubRef): string {
  return ref.revision === "main" ? ref.repo : `${ref.repo}@${ref.revision}`;
}

/** One file of a hub repository. */
export interface HubFileRef extends HubRef {
  /** The file's path in the repository. */
  file: string;
}

/** What a single-file checkpoint's name ends with (pickles too, to be refused by name). */
const CHECKPOINT_FILE = /\.(safetensors|ckpt|pt|pth|bin)$/i;

/**
 * `owner/name/path/file.safetensors[@revision]`: the revision follows the last "@" (a revision
 * holds none), so a file path with "@" in it needs an explicit `@main`.
 */
export function parseHubFileId(spec: string): HubFileRef | undefined {
  const at = spec.lastIndexOf("@");
  const id = at < 0 ? spec : spec.slice(0, at);
  const parts = id.split("/");
  if (parts.length < 3) return undefined;
  const file = parts.slice(2).join("/");
  if (!CHECKPOINT_FILE.test(file)) return undefined;
  const ref = parseHubId(`${parts[0]}/${parts[1]}${at < 0 ? "" : spec.slice(at)}`);
  if (!ref) return undefined;
  try {
    checkRepoPath(file);
  } catch {
    return undefined;
  }
  return { ...ref, file };
}

export function formatHubFileRef(ref: HubFileRef): string {
  return `${ref.repo}/${ref.file}${ref.revision === "main" ? "" : `@${ref.revision}`}`;
}
