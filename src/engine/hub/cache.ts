/**
 * The Hugging Face cache layout, as Python's huggingface_hub writes it (and diffusers,
 * transformers and @huggingface/hub read it), so that one copy of the weights serves all:
 *
 *   <cache>/models--<owner>--<name>/
 *     blobs/<etag>              file contents, named by their sha256 (LFS files) or git blob sha1
 *     blobs/<etag>.incomplete   a download in progress, resumed from its size
 *     snapshots/<commit>/<path> relative symlinks into ../../blobs/, one tree per commit
 *     refs/<revision>           the commit a branch or tag pointed at when last resolved
 *
 * A snapshot only ever holds links to complete, verified blobs: a blob is renamed into place
 * after its hash is checked, and links are made under a temporary name and renamed over.
 */
import { randomBytes } from "node:crypto";
import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { getRepoFolderName } from "@huggingface/hub";
import { HubError } from "../errors.js";

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/**
 * A path inside a repository, as the hub lists it: forward slashes, no empty, "." or ".."
 * segments, not absolute. Anything else in a listing could write outside the cache.
 */
export function checkRepoPath(repoPath: string): string {
  const parts = repoPath.split("/");
  if (
    repoPath.includes("\\") ||
    repoPath.includes("\0") ||
    parts.some((p) => p === "" || p === "." || p === "..") ||
    /^[a-zA-Z]:/.test(repoPath)
  ) {
    throw new HubError("protocol", `the hub listed a file with an unsafe path: ${JSON.stringify(repoPath)}`);
  }
  return repoPath;
}

export class RepoCache {
  /** models--owner--name */
  readonly dir: string;

  constructor(
    readonly root: string,
    readonly repo: string,
  ) {
    this.dir = path.join(root, getRepoFolderName({ name: repo, type: "model" }));
  }

  blobPath(etag: string): string {
    if (!/^[0-9a-zA-Z_-]+$/.test(etag)) throw new HubError("protocol", `unexpected blob name ${JSON.stringify(etag)}`);
    return path.join(this.dir, "blobs", etag);
  }

  snapshotDir(commit: string): string {
    return path.join(this.dir, "snapshots", commit);
  }

  snapshotPath(commit: string, repoPath: string): string {
    return path.join(this.snapshotDir(commit), ...checkRepoPath(repoPath).split("/"));
  }

  private refPath(revision: string): string {
    return path.join(this.dir, "refs", ...checkRepoPath(revision).split("/"));
  }

  /** The commit a branch or tag resolved to when it was last pulled; a commit hash is itself. */
  async commitOf(revision: string): Promise<string | undefined> {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = (await readFile(this.refPath(revision), "utf8")).trim();
      return COMMIT_HASH.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const file = this.refPath(revision);
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
    // No newline, as huggingface_hub writes it.
    await writeFile(tmp, commit);
    await rename(tmp, file);
  }

  /** Size of a complete blob, or undefined when there is none. */
  async blobSize(etag: string): Promise<number | undefined> {
    const st = await stat(this.blobPath(etag)).catch(() => undefined);
    return st?.isFile() ? st.size : undefined;
  }

  /**
   * Points snapshots/<commit>/<path> at blobs/<etag> with a relative link (a copy where the file
   * system has no links), replacing whatever was there, atomically.
   */
  async link(commit: string, repoPath: string, etag: string): Promise<void> {
    const target = this.snapshotPath(commit, repoPath);
    const blob = this.blobPath(etag);
    const relative = path.relative(path.dirname(target), blob);
    const existing = await readlink(target).catch(() => undefined);
    if (existing === relative) return;
    await mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${randomBytes(6).toString("hex")}`;
    try {
      await symlink(relative, tmp);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw err;
      await copyFile(blob, tmp);
    }
    try {
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** The blob a snapshot file links to (its etag), or undefined for a copy or a missing file. */
  async linkedEtag(commit: string, repoPath: string): Promise<string | undefined> {
    const link = await readlink(this.snapshotPath(commit, repoPath)).catch(() => undefined);
    if (link === undefined) return undefined;
    return path.basename(link);
  }

  /** Every file in a snapshot, as repository paths (links whose blob is gone are left out). */
  async snapshotFiles(commit: string): Promise<string[]> {
    const root = this.snapshotDir(commit);
    const out: string[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      const entries = await readdir(dir).catch(() => [] as string[]);
      for (const name of entries.sort()) {
        if (name.includes(".tmp-")) continue;
        const full = path.join(dir, name);
        const st = await stat(full).catch(() => undefined);
        if (st?.isDirectory()) await walk(full, `${prefix}${name}/`);
        else if (st?.isFile()) out.push(`${prefix}${name}`);
      }
    };
    await walk(root, "");
    return out;
  }

  async hasSnapshot(commit: string): Promise<boolean> {
    return (await lstat(this.snapshotDir(commit)).catch(() => undefined))?.isDirectory() ?? false;
  }
}
