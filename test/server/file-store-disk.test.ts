/** The file store contract against the default store: a folder on local disk. */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DiskFileStore } from "../../src/server/files/disk.js";
import { fileStoreContract } from "./file-store-contract.js";

fileStoreContract("local disk", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-files-"));
  return { files: new DiskFileStore(dir), dispose: async () => rmSync(dir, { recursive: true, force: true }) };
});
