/**
 * Re-reads a cached model's files and checks each against its hash, without the network: a
 * blob's name is its hash (sha256 for LFS files, git's blob id for the rest), so the cache
 * carries what to compare with. A file that fails is removed (blob and link), so the next pull
 * downloads it again instead of trusting it because its size looks right.
 */
import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import type { WeightsVariant } from "../weights/model-folder.js";
import { RepoCache } from "./cache.js";
import { hashKindOf, newHasher } from "./download.js";
import { cachedModel } from "./pull.js";
import type { HubRef } from "./repo-id.js";
import type { HubSettings } from "./settings.js";

export interface VerifiedFile {
  path: string;
  size: number;
  /** ok: the bytes match; corrupt: they do not (removed); unchecked: a copy, not a link to a named blob. */
  status: "ok" | "corrupt" | "unchecked";
  detail?: string;
}

export interface VerifyResult {
  repo: string;
  revision: string;
  commit: string;
  dir: string;
  files: VerifiedFile[];
  ok: boolean;
}

export async function verifyCachedModel(
  ref: HubRef,
  opts: {
    settings: HubSettings;
    variant?: WeightsVariant;
    /** Bytes hashed so far of one file. */
    onProgress?: (e: { path: string; size: number; done: number }) => void;
  },
): Promise<VerifyResult> {
  const model = await cachedModel(ref, { settings: opts.settings, variant: opts.variant, why: "offline" });
  const cache = new RepoCache(opts.settings.cacheDir, ref.repo);
  const files: VerifiedFile[] = [];
  for (const repoPath of model.files) {
    const file = cache.snapshotPath(model.commit, repoPath);
    const size = (await stat(file)).size;
    const etag = await cache.linkedEtag(model.commit, repoPath);
    const kind = etag ? hashKindOf(etag) : undefined;
    if (!etag || !kind) {
      files.push({ path: repoPath, size, status: "unchecked", detail: "not a link to a hash-named blob" });
      continue;
    }
    const hasher = newHasher(kind, size);
    let done = 0;
    for await (const chunk of createReadStream(file)) {
      hasher.update(chunk as Buffer);
      done += (chunk as Buffer).byteLength;
      opts.onProgress?.({ path: repoPath, size, done });
    }
    const digest = hasher.digest("hex");
    if (digest === etag) {
      files.push({ path: repoPath, size, status: "ok" });
      continue;
    }
    await rm(cache.blobPath(etag), { force: true });
    await rm(file, { force: true });
    files.push({ path: repoPath, size, status: "corrupt", detail: `${kind} is ${digest}, expected ${etag}` });
  }
  return {
    repo: model.repo,
    revision: model.revision,
    commit: model.commit,
    dir: model.dir,
    files,
    ok: files.every((f) => f.status !== "corrupt"),
  };
}
