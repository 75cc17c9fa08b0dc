/**
 * The data directory holds webhook secrets, capability keys, the API token and every prompt:
 * what sdserve makes there is for its own user only (directories 0700, files 0600), and a
 * directory or file it finds there with looser modes (made by an older version, or by hand) is
 * tightened at start. Something sdserve may not change (another user's) is left as it is.
 */
import { chmod, mkdir, open } from "node:fs/promises";

async function tighten(target: string, mode: number): Promise<void> {
  await chmod(target, mode).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT" && err.code !== "EPERM") throw err;
  });
}

/** Makes `dir` (and any missing parents) owner-only, and tightens it if it exists. */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await tighten(dir, 0o700);
}

/** Creates `file` empty if missing, owner-only either way. */
export async function privateFile(file: string): Promise<void> {
  await (await open(file, "a", 0o600)).close();
  await tighten(file, 0o600);
}

/** Tightens files that exist (SQLite's -wal and -shm, which it makes with the database's own mode). */
export async function tightenIfPresent(...files: string[]): Promise<void> {
  for (const f of files) await tighten(f, 0o600);
}
