/**
 * One file from the hub into a blob of the cache: streamed to `<blob>.incomplete`, resumed
 * from that file's size with an HTTP Range request (after a dropped connection, and in a later
 * run after a crash), retried with backoff on network and server trouble, checked against the
 * size and hash the hub lists, and only then renamed to its final name. @huggingface/hub's own
 * helpers do none of these, so this builds them on plain ranged GETs of the resolve URL.
 *
 * Hashes: an LFS file's listed oid is the sha256 of its bytes; a plain git file's oid is git's
 * blob id, sha1("blob <size>\0" + bytes). Either way the blob's name is that hash, so the cache
 * can be checked later without the network (see verify.ts).
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { HubError } from "../errors.js";
import { TransientHubError } from "./http.js";

export type HashKind = "sha256" | "git-sha1";

export interface BlobSpec {
  /** The file's path in the repository, for messages. */
  repoPath: string;
  url: string;
  size: number;
  /** Expected digest (hex), and how it is computed. */
  hash: { kind: HashKind; hex: string } | undefined;
}

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  /** Wait before the first retry; doubled each time, at most 30 s. */
  delayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, delayMs: 1000 };

export interface BlobDownloadOptions {
  fetch: typeof fetch;
  /** The finished blob's path; the download runs in `${path}.incomplete`. */
  blobPath: string;
  retry?: RetryPolicy;
  signal?: AbortSignal;
  /** Bytes of the file now on disk (resumed bytes included), after each chunk. */
  onBytes?: (done: number) => void;
  /** A retry is about to happen. */
  onRetry?: (info: { attempt: number; delayMs: number; error: string; resumeAt: number }) => void;
  /** For the disk-full message: the cache folder. */
  cacheDir: string;
}

export function hashKindOf(etag: string): HashKind | undefined {
  if (/^[0-9a-f]{64}$/.test(etag)) return "sha256";
  if (/^[0-9a-f]{40}$/.test(etag)) return "git-sha1";
  return undefined;
}

export function newHasher(kind: HashKind, size: number): Hash {
  if (kind === "sha256") return createHash("sha256");
  return createHash("sha1").update(`blob ${size}\0`);
}

async function hashFilePrefix(file: string, hasher: Hash, length: number): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(file, { start: 0, end: length - 1 })) hasher.update(chunk as Buffer);
}

function diskError(err: unknown, spec: BlobSpec, cacheDir: string): HubError | undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new HubError(
      "disk",
      `no space left on the disk of ${cacheDir} while downloading ${spec.repoPath} (${spec.size} bytes): free some space, or set HF_HUB_CACHE to a folder on a bigger disk`,
    );
  }
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new HubError(
      "disk",
      `cannot write to the Hugging Face cache at ${cacheDir} (${code}): make it writable, or set HF_HUB_CACHE to a folder that is`,
    );
  }
  return undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** Parses `bytes <start>-<end>/<total>`. */
function contentRange(header: string | null): { start: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header?.trim() ?? "");
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === "*" ? undefined : Number(m[2]) };
}

export async function downloadBlob(spec: BlobSpec, opts: BlobDownloadOptions): Promise<void> {
  const retry = opts.retry ?? DEFAULT_RETRY;
  const incomplete = `${opts.blobPath}.incomplete`;
  let failures = 0;
  // A digest mismatch after resuming may come from a stale partial file: start over once.
  let restartedAfterMismatch = false;
  for (;;) {
    try {
      const resumed = await attempt(spec, opts, incomplete);
      const digest = resumed.digest;
      if (spec.hash && digest !== spec.hash.hex) {
        await rm(incomplete, { force: true });
        if (resumed.resumedFrom > 0 && !restartedAfterMismatch) {
          restartedAfterMismatch = true;
          continue;
        }
        throw new HubError(
          "corrupt",
          `${spec.repoPath}: the downloaded bytes do not match the hub's ${spec.hash.kind} (expected ${spec.hash.hex}, got ${digest}); the file was corrupted on the way or the mirror serves a different file. It was discarded: try again, or set HF_ENDPOINT to another mirror`,
        );
      }
      await rename(incomplete, opts.blobPath);
      return;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (err instanceof HubError && err.kind === "corrupt") await rm(incomplete, { force: true });
      const disk = diskError(err, spec, opts.cacheDir);
      if (disk) throw disk;
      if (!(err instanceof TransientHubError)) throw err;
      failures++;
      if (failures >= retry.attempts) throw err;
      const delayMs = Math.min(30_000, retry.delayMs * 2 ** (failures - 1));
      const resumeAt = (await stat(incomplete).catch(() => undefined))?.size ?? 0;
      opts.onRetry?.({ attempt: failures, delayMs, error: err.message, resumeAt });
      await sleep(delayMs, opts.signal);
    }
  }
}

/** One GET: resumes from the partial file's size; returns the digest of the whole file. */
async function attempt(
  spec: BlobSpec,
  opts: BlobDownloadOptions,
  incomplete: string,
): Promise<{ digest: string | undefined; resumedFrom: number }> {
  let offset = (await stat(incomplete).catch(() => undefined))?.size ?? 0;
  if (offset > spec.size) {
    await rm(incomplete, { force: true });
    offset = 0;
  }
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  if (offset > 0) headers["range"] = `bytes=${offset}-`;
  const res = await opts.fetch(spec.url, { headers, redirect: "follow" });

  if (res.status === 416) {
    // The partial file is at least as long as what the server has: start again from nothing.
    await res.body?.cancel();
    await rm(incomplete, { force: true });
    throw new TransientHubError(`${spec.repoPath}: the server refused to resume at byte ${offset}; starting over`);
  }
  if (offset > 0 && res.status === 206) {
    const range = contentRange(res.headers.get("content-range"));
    if (!range || range.start !== offset) {
      await res.body?.cancel();
      await rm(incomplete, { force: true });
      throw new TransientHubError(`${spec.repoPath}: the server resumed at the wrong byte; starting over`);
    }
    if (range.total !== undefined && range.total !== spec.size) throw sizeMismatch(spec, range.total);
  } else if (res.status === 200) {
    offset = 0; // The server ignored the range: it sends the whole file.
    const length = res.headers.get("content-length");
    if (length !== null && Number(length) !== spec.size) {
      await res.body?.cancel();
      throw sizeMismatch(spec, Number(length));
    }
  } else {
    await res.body?.cancel();
    throw new HubError("protocol", `${spec.repoPath}: unexpected answer ${res.status} to a download`);
  }

  const hasher = spec.hash ? newHasher(spec.hash.kind, spec.size) : undefined;
  if (hasher) await hashFilePrefix(incomplete, hasher, offset);
  const file = await open(incomplete, offset > 0 ? "a" : "w");
  let done = offset;
  try {
    opts.onBytes?.(done);
    if (!res.body) throw new TransientHubError(`${spec.repoPath}: the server sent no body`);
    try {
      for await (const chunk of res.body) {
        if (done + chunk.byteLength > spec.size) throw sizeMismatch(spec, done + chunk.byteLength);
        hasher?.update(chunk);
        await file.write(chunk);
        done += chunk.byteLength;
        opts.onBytes?.(done);
      }
    } catch (err) {
      if (err instanceof HubError || (err as NodeJS.ErrnoException).code) throw err;
      // The connection dropped mid-file: what arrived is kept and the next try resumes after it.
      throw new TransientHubError(
        `${spec.repoPath}: the download broke off at byte ${done} (${(err as Error).message})`,
      );
    }
  } finally {
    await file.close();
  }
  if (done < spec.size) {
    throw new TransientHubError(`${spec.repoPath}: the download ended early at byte ${done} of ${spec.size}`);
  }
  return { digest: hasher?.digest("hex"), resumedFrom: offset };
}

function sizeMismatch(spec: BlobSpec, got: number): HubError {
  return new HubError(
    "corrupt",
    `${spec.repoPath}: the server sends ${got} bytes where the hub lists ${spec.size}; the mirror serves a different file or the listing is stale: try again, or set HF_ENDPOINT to another mirror`,
  );
}
