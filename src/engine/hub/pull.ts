/**
 * A Stable Diffusion pipeline from the Hugging Face Hub into the shared Hugging Face cache:
 *
 * 1. the revision (branch, tag or commit) is resolved to a commit (@huggingface/hub's
 *    modelInfo), and the commit's files are listed with their sizes and hashes (listFiles);
 * 2. only the files the pipeline reads are chosen (select.ts); sharded weights add their shards
 *    once the index is read;
 * 3. each file whose blob is not in the cache yet is downloaded (download.ts: resumable,
 *    retried, checked), then linked into snapshots/<commit>/, and refs/<revision> is written.
 *
 * A second pull of the same revision downloads nothing. With HF_HUB_OFFLINE=1, or when the hub
 * cannot be reached at all, the cached snapshot of the revision is used if it holds every file
 * needed; otherwise the error says what is missing and what to do.
 */
import { mkdir, readFile, statfs } from "node:fs/promises";
import path from "node:path";
import { type ListFileEntry, listFiles, modelInfo } from "@huggingface/hub";
import { HubError, ModelError } from "../errors.js";
import type { WeightsVariant } from "../weights/model-folder.js";
import { COMMIT_HASH, checkRepoPath, RepoCache } from "./cache.js";
import { type BlobSpec, DEFAULT_RETRY, downloadBlob, hashKindOf, type RetryPolicy } from "./download.js";
import { hubFetch, TransientHubError } from "./http.js";
import { withLock } from "./lock.js";
import { formatHubFileRef, type HubFileRef, type HubRef } from "./repo-id.js";
import { planPipelineFiles, shardsOfIndex } from "./select.js";
import type { HubSettings } from "./settings.js";

export interface PullOptions {
  settings: HubSettings;
  /** Which weights to fetch where a repository has both (default fp32, the engine's compute type). */
  variant?: WeightsVariant;
  signal?: AbortSignal;
  onProgress?: (event: PullEvent) => void;
  retry?: RetryPolicy;
}

export interface PlannedFile {
  path: string;
  size: number;
  /** Already in the cache: nothing to download. */
  cached: boolean;
}

export type PullEvent =
  /** The files are known: what will be downloaded, and what is there already. */
  | { type: "plan"; repo: string; revision: string; commit: string; files: PlannedFile[]; downloadBytes: number }
  /** Bytes of one file on disk so far (resumed bytes included). */
  | { type: "progress"; path: string; size: number; done: number }
  | { type: "file-done"; path: string; size: number }
  | { type: "retry"; path: string; attempt: number; delayMs: number; error: string; resumeAt: number }
  /** The hub could not be reached; the cached snapshot is used instead. */
  | { type: "offline-fallback"; reason: string };

export interface PulledModel {
  repo: string;
  revision: string;
  commit: string;
  /** snapshots/<commit>: the folder to load. */
  dir: string;
  /** The files the pipeline needs, all present in `dir`. */
  files: string[];
  /** Files transferred by this call (empty when everything was cached). */
  downloaded: string[];
  downloadedBytes: number;
  /** "hub": checked against the hub; "cache": from the cache alone (offline, or the hub unreachable). */
  source: "hub" | "cache";
}

interface RemoteFile {
  path: string;
  size: number;
  /** The blob's name: the LFS sha256, else the git blob id. */
  etag: string;
}

function remoteFile(entry: ListFileEntry): RemoteFile {
  const etag = entry.lfs?.oid ?? entry.oid;
  if (!etag) throw new HubError("protocol", `the hub listed ${entry.path} without a hash`);
  return { path: checkRepoPath(entry.path), size: entry.lfs?.size ?? entry.size, etag };
}

function resolveUrl(settings: HubSettings, repo: string, commit: string, repoPath: string): string {
  const encoded = repoPath.split("/").map(encodeURIComponent).join("/");
  return `${settings.endpoint}/${repo}/resolve/${commit}/${encoded}`;
}

export async function pullModel(ref: HubRef, opts: PullOptions): Promise<PulledModel> {
  return hubOrCache(ref, opts, pullFromHub, cachedModel);
}

/** Where a pull is answered from: the hub, or the cache where the hub is not to be asked or cannot be. */
async function hubOrCache<R extends { revision: string }>(
  ref: R,
  opts: PullOptions,
  fromHub: (ref: R, opts: PullOptions) => Promise<PulledModel>,
  fromCache: (ref: R, opts: PullOptions & { why?: "offline" | "unreachable" }) => Promise<PulledModel>,
): Promise<PulledModel> {
  if (opts.settings.offline) return fromCache(ref, { ...opts, why: "offline" });
  // A commit never changes: when its snapshot is complete there is nothing to ask the hub.
  if (COMMIT_HASH.test(ref.revision)) {
    const cached = await fromCache(ref, opts).catch(() => undefined);
    if (cached) return cached;
  }
  try {
    return await fromHub(ref, opts);
  } catch (err) {
    if (!(err instanceof TransientHubError) || opts.signal?.aborted) throw err;
    // No hub: a complete cached copy of the revision still serves, as in huggingface_hub.
    const cached = await fromCache(ref, { ...opts, why: "unreachable" }).catch(() => undefined);
    if (!cached) throw err;
    opts.onProgress?.({ type: "offline-fallback", reason: err.message });
    return cached;
  }
}

/** The revision's commit, asked of the hub; a gated repository needs a token. */
async function hubCommit(ref: HubRef, settings: HubSettings, fetch: typeof globalThis.fetch): Promise<string> {
  const { repo, revision } = ref;
  const info = await modelInfo({ name: repo, revision, hubUrl: settings.endpoint, fetch, additionalFields: ["sha"] });
  const commit = info.sha;
  if (typeof commit !== "string" || !COMMIT_HASH.test(commit)) {
    throw new HubError("protocol", `${settings.endpoint} gave no commit for ${repo}@${revision}`);
  }
  if (info.gated && !settings.token) {
    throw new HubError(
      "gated",
      `${repo} is gated: accept its conditions at ${settings.endpoint}/${repo}, then set HF_TOKEN to a read token of that account (https://huggingface.co/settings/tokens)`,
    );
  }
  return commit;
}

/** The commit's files with their sizes and hashes. */
async function hubListing(
  repo: string,
  commit: string,
  settings: HubSettings,
  fetch: typeof globalThis.fetch,
): Promise<Map<string, RemoteFile>> {
  const listing = new Map<string, RemoteFile>();
  for await (const entry of listFiles({ repo, revision: commit, recursive: true, hubUrl: settings.endpoint, fetch })) {
    if (entry.type === "file") listing.set(entry.path, remoteFile(entry));
  }
  return listing;
}

async function pullFromHub(ref: HubRef, opts: PullOptions): Promise<PulledModel> {
  const { settings, signal } = opts;
  const { repo, revision } = ref;
  const variant = opts.variant ?? "fp32";
  const cache = new RepoCache(settings.cacheDir, repo);
  const fetch = hubFetch({ settings, repo, revision, signal });
  const commit = await hubCommit(ref, settings, fetch);
  const listing = await hubListing(repo, commit, settings, fetch);

  const plan = planPipelineFiles(listing.keys(), variant, repo);
  const downloaded: string[] = [];
  let downloadedBytes = 0;
  const fetchFile = async (file: RemoteFile): Promise<void> => {
    const done = await ensureBlob(cache, file, { ...opts, fetch, commit });
    if (done) {
      downloaded.push(file.path);
      downloadedBytes += file.size;
    }
    await cache.link(commit, file.path, file.etag);
  };

  // Sharded weights: the index names the shards, so it comes first.
  const files = [...plan.files];
  for (const index of plan.indexes) {
    await fetchFile(listing.get(index) as RemoteFile);
    const text = await readSnapshotText(cache, commit, index);
    for (const shard of shardsOfIndex(index, text)) {
      if (!listing.has(shard))
        throw new ModelError(`${repo}@${revision}: ${index} names ${shard}, which the repository lacks`);
      files.push(shard);
    }
  }

  const wanted = files.map((p) => listing.get(p) as RemoteFile);
  const planned: PlannedFile[] = [];
  for (const f of wanted)
    planned.push({ path: f.path, size: f.size, cached: (await cache.blobSize(f.etag)) === f.size });
  const toDownload = planned.filter((f) => !f.cached).reduce((n, f) => n + f.size, 0);
  await checkFreeSpace(settings.cacheDir, toDownload, repo);
  opts.onProgress?.({ type: "plan", repo, revision, commit, files: planned, downloadBytes: toDownload });

  for (const f of wanted) if (!plan.indexes.includes(f.path)) await fetchFile(f);
  await cache.writeRef(revision, commit);
  return {
    repo,
    revision,
    commit,
    dir: cache.snapshotDir(commit),
    files,
    downloaded,
    downloadedBytes,
    source: "hub",
  };
}

/** Makes blobs/<etag> present and complete; true when it had to be downloaded. */
async function ensureBlob(
  cache: RepoCache,
  file: RemoteFile,
  opts: PullOptions & { fetch: typeof fetch; commit: string },
): Promise<boolean> {
  const present = async () => (await cache.blobSize(file.etag)) === file.size;
  if (await present()) return false;
  const blobPath = cache.blobPath(file.etag);
  const lockPath = path.join(cache.root, ".locks", path.basename(cache.dir), `${file.etag}.sdserve.lock`);
  return withLock(
    lockPath,
    async () => {
      if (await present()) return false; // another process finished it while we waited
      await mkdir(path.dirname(blobPath), { recursive: true });
      const kind = hashKindOf(file.etag);
      const spec: BlobSpec = {
        repoPath: file.path,
        url: resolveUrl(opts.settings, cache.repo, opts.commit, file.path),
        size: file.size,
        hash: kind ? { kind, hex: file.etag } : undefined,
      };
      await downloadBlob(spec, {
        fetch: opts.fetch,
        blobPath,
        retry: opts.retry ?? DEFAULT_RETRY,
        signal: opts.signal,
        cacheDir: cache.root,
        onBytes: (done) => opts.onProgress?.({ type: "progress", path: file.path, size: file.size, done }),
        onRetry: (r) => opts.onProgress?.({ type: "retry", path: file.path, ...r }),
      });
      opts.onProgress?.({ type: "file-done", path: file.path, size: file.size });
      return true;
    },
    opts.signal,
  );
}

async function readSnapshotText(cache: RepoCache, commit: string, repoPath: string): Promise<string> {
  return readFile(cache.snapshotPath(commit, repoPath), "utf8");
}

async function checkFreeSpace(dir: string, bytes: number, repo: string): Promise<void> {
  if (bytes === 0) return;
  await mkdir(dir, { recursive: true });
  const fs = await statfs(dir).catch(() => undefined);
  if (!fs) return;
  const free = fs.bavail * fs.bsize;
  if (free < bytes) {
    throw new HubError(
      "disk",
      `${repo} needs ${formatBytes(bytes)} more in the Hugging Face cache at ${dir}, but only ${formatBytes(free)} is free: free some space, or set HF_HUB_CACHE to a folder on a bigger disk`,
    );
  }
}

export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/**
 * The revision's snapshot as the cache holds it, without the network: the commit from
 * refs/<revision> (or the revision itself when it is a commit), and every file the pipeline
 * needs present in snapshots/<commit>/.
 */
export async function cachedModel(
  ref: HubRef,
  opts: { settings: HubSettings; variant?: WeightsVariant; why?: "offline" | "unreachable" },
): Promise<PulledModel> {
  const { settings } = opts;
  const { repo, revision } = ref;
  const cache = new RepoCache(settings.cacheDir, repo);
  const hint =
    opts.why === "offline"
      ? `run "sdserve models pull ${repo}${revision === "main" ? "" : `@${revision}`}" where the hub can be reached (HF_HUB_OFFLINE=1 is set, so nothing is downloaded), or use a local folder`
      : `pull it where the hub can be reached, or use a local folder`;
  const commit = await cache.commitOf(revision);
  if (!commit || !(await cache.hasSnapshot(commit))) {
    throw new HubError(
      "offline",
      `${repo}@${revision} is not in the Hugging Face cache at ${settings.cacheDir}: ${hint}`,
    );
  }
  const present = await cache.snapshotFiles(commit);
  let plan: ReturnType<typeof planPipelineFiles>;
  try {
    plan = planPipelineFiles(present, opts.variant ?? "fp32", `the cached ${repo}@${revision}`);
  } catch (err) {
    throw new HubError("offline", `${(err as Error).message}; ${hint}`);
  }
  const files = [...plan.files];
  const missing: string[] = [];
  for (const index of plan.indexes) {
    for (const shard of shardsOfIndex(index, await readSnapshotText(cache, commit, index))) {
      files.push(shard);
      if (!present.includes(shard)) missing.push(shard);
    }
  }
  if (missing.length > 0) {
    throw new HubError(
      "offline",
      `the cached ${repo}@${revision} lacks ${missing.join(", ")} (an interrupted download?): ${hint}`,
    );
  }
  return {
    repo,
    revision,
    commit,
    dir: cache.snapshotDir(commit),
    files,
    downloaded: [],
    downloadedBytes: 0,
    source: "cache",
  };
}

/**
 * One file of a repository (a single-file checkpoint) into the cache, as pullModel does for a
 * pipeline's files: the revision's commit, the file's size and hash from the listing, a
 * resumable download checked against the hash, then snapshots/<commit>/<file> and
 * refs/<revision>. Offline or with the hub unreachable, the cached copy serves.
 */
export async function pullFile(ref: HubFileRef, opts: PullOptions): Promise<PulledModel> {
  return hubOrCache(ref, opts, pullFileFromHub, cachedFile);
}

async function pullFileFromHub(ref: HubFileRef, opts: PullOptions): Promise<PulledModel> {
  const { settings, signal } = opts;
  const { repo, revision } = ref;
  const cache = new RepoCache(settings.cacheDir, repo);
  const fetch = hubFetch({ settings, repo, revision, signal });
  const commit = await hubCommit(ref, settings, fetch);
  const listing = await hubListing(repo, commit, settings, fetch);
  const file = listing.get(ref.file);
  if (!file) {
    const checkpoints = [...listing.keys()].filter((p) => /\.safetensors$/i.test(p) && !p.includes("/"));
    throw new HubError(
      "not-found",
      `${repo}@${revision} has no file ${ref.file}` +
        (checkpoints.length > 0
          ? ` (its top-level .safetensors files: ${checkpoints.slice(0, 8).join(", ")}${checkpoints.length > 8 ? ", …" : ""})`
          : ""),
    );
  }
  const cached = (await cache.blobSize(file.etag)) === file.size;
  const downloadBytes = cached ? 0 : file.size;
  await checkFreeSpace(settings.cacheDir, downloadBytes, repo);
  opts.onProgress?.({
    type: "plan",
    repo,
    revision,
    commit,
    files: [{ path: file.path, size: file.size, cached }],
    downloadBytes,
  });
  const done = await ensureBlob(cache, file, { ...opts, fetch, commit });
  await cache.link(commit, file.path, file.etag);
  await cache.writeRef(revision, commit);
  return {
    repo,
    revision,
    commit,
    dir: cache.snapshotDir(commit),
    files: [file.path],
    downloaded: done ? [file.path] : [],
    downloadedBytes: done ? file.size : 0,
    source: "hub",
  };
}

/** The file as the cache holds it for the revision, without the network. */
export async function cachedFile(
  ref: HubFileRef,
  opts: { settings: HubSettings; why?: "offline" | "unreachable" },
): Promise<PulledModel> {
  const { settings } = opts;
  const { repo, revision } = ref;
  const cache = new RepoCache(settings.cacheDir, repo);
  const commit = await cache.commitOf(revision);
  if (!commit || !(await cache.snapshotFiles(commit).catch(() => [] as string[])).includes(ref.file)) {
    const hint =
      opts.why === "offline"
        ? "HF_HUB_OFFLINE=1 is set, so nothing is downloaded: fetch it where the hub can be reached, or use a local file"
        : "fetch it where the hub can be reached, or use a local file";
    throw new HubError(
      "offline",
      `${formatHubFileRef(ref)} is not in the Hugging Face cache at ${settings.cacheDir}: ${hint}`,
    );
  }
  return {
    repo,
    revision,
    commit,
    dir: cache.snapshotDir(commit),
    files: [ref.file],
    downloaded: [],
    downloadedBytes: 0,
    source: "cache",
  };
}
