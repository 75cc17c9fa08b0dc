/** The default FileStore: <data dir>/files/<prediction id>/<name>, written atomically. */
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FileStore, StoredFile } from "./file-store.js";

const CONTENT_TYPES: Record<string, string> = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".webp": "image/webp",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

/** Names are ours (out-0.png), but the route passes what a client typed: allow plain names only. */
function safeName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && !name.includes("..");
}

export class DiskFileStore implements FileStore {
  constructor(private readonly root: string) {}

  private dir(predictionId: string): string {
    return path.join(this.root, predictionId);
  }

  async put(predictionId: string, name: string, data: Uint8Array): Promise<void> {
    if (!safeName(name)) throw new Error(`bad output file name ${JSON.stringify(name)}`);
    const dir = this.dir(predictionId);
    // Owner-only, like the rest of the data directory (private-files.ts).
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, `.${name}.tmp`);
    await writeFile(tmp, data, { mode: 0o600 });
    await rename(tmp, path.join(dir, name));
  }

  async get(predictionId: string, name: string): Promise<StoredFile | undefined> {
    if (!safeName(name)) return undefined;
    const file = path.join(this.dir(predictionId), name);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    return {
      size: st.size,
      contentType: CONTENT_TYPES[path.extname(name).toLowerCase()] ?? "application/octet-stream",
      read: () => readFile(file),
    };
  }

  async removeAll(predictionId: string): Promise<void> {
    await rm(this.dir(predictionId), { recursive: true, force: true });
  }
}
