/**
 * One download of a blob at a time: within this process through a map of promises, and
 * between processes (a server and `sdserve models pull` side by side) through a lock file
 * created exclusively and holding the owner's pid. A lock whose process is gone is taken over.
 * (huggingface_hub's flock-based locks cannot be shared from Node; two tools writing the same
 * partial file at once is caught by the hash check.)
 */
import { mkdir, open, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { removeStaleLock } from "../stale-lock.js";

const running = new Map<string, Promise<unknown>>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function acquire(lockPath: string, signal?: AbortSignal): Promise<void> {
  await mkdir(path.dirname(lockPath), { recursive: true });
  const me = `${process.pid}@${os.hostname()}`;
  for (;;) {
    if (signal?.aborted) throw signal.reason;
    try {
      const handle = await open(lockPath, "wx");
      await handle.writeFile(me);
      await handle.close();
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = await readFile(lockPath, "utf8").catch(() => "");
    const m = /^(\d+)@(.*)$/.exec(owner);
    if (m && m[2] === os.hostname() && !alive(Number(m[1]))) {
      removeStaleLock(lockPath, owner);
      continue;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs `fn` holding the lock; a second caller in this process shares the first one's run. */
export function withLock<T>(lockPath: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const pending = running.get(lockPath);
  if (pending) return pending as Promise<T>;
  const run = (async () => {
    await acquire(lockPath, signal);
    try {
      return await fn();
    } finally {
      await rm(lockPath, { force: true });
    }
  })().finally(() => running.delete(lockPath));
  running.set(lockPath, run);
  return run;
}
