/** The store contract against the default store: a SQLite file in a fresh directory. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
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

test("a data directory made before the A1111 columns opens: they and the indexes over them are added", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-store-old-"));
  try {
    const file = path.join(dir, "sdserve.db");
    // The predictions table as it was before prompt_syntax and a1111_settings.
    const old = new Database(file);
    old.exec(`CREATE TABLE predictions (
      id TEXT PRIMARY KEY, account TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, input TEXT NOT NULL,
      logs TEXT NOT NULL DEFAULT '', output TEXT, error TEXT, status TEXT NOT NULL,
      data_removed INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT,
      webhook TEXT, webhook_events_filter TEXT, deadline TEXT, api_base TEXT NOT NULL, origin TEXT NOT NULL,
      files_key TEXT NOT NULL UNIQUE, stream_key TEXT NOT NULL UNIQUE, attempts INTEGER NOT NULL DEFAULT 0)`);
    old.close();
    const store = new SqlitePredictionStore(file);
    try {
      assert.deepEqual(await store.openA1111Glances("alice", 10), []);
      assert.deepEqual(await store.a1111MarksSince("alice", "2025-01-01T00:00:00.000000Z", 10), []);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
