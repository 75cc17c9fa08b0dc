/** The store contract against the default store: a SQLite file in a fresh directory. */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";
import { storeContract } from "./store-contract.js";

storeContract("SQLite", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-store-"));
  const store = new SqlitePredictionStore(path.join(dir, "sdserve.db"));
  return {
    store,
    dispose: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
