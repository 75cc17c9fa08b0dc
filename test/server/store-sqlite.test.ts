/** The store contract against the default store: a SQLite file in a fresh directory. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";
import { record } from "../helpers/prediction-record.js";
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

test("a running prediction's log lines leave its row alone: its input is not written again per line", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-store-logs-"));
  try {
    const file = path.join(dir, "sdserve.db");
    const store = new SqlitePredictionStore(file);
    const reader = new Database(file, { readonly: true });
    try {
      // An img2img input: a picture as a data: URI, megabytes that SQLite would rewrite with the row.
      const p = record({ input: { image: `data:image/png;base64,${"A".repeat(2_000_000)}` }, logs: "Using seed: 1\n" });
      await store.insert(p);
      const rowOf = () =>
        reader.prepare("SELECT logs, length(input) AS n FROM predictions WHERE id = ?").get(p.id) as {
          logs: string;
          n: number;
        };
      for (let i = 1; i <= 20; i++) await store.appendLog(p.id, `${i * 5}%| ${i}/20`);
      assert.deepEqual(rowOf(), { logs: "Using seed: 1\n", n: JSON.stringify(p.input).length });
      const logs = (await store.get(p.id))?.logs ?? "";
      assert.ok(logs.startsWith("Using seed: 1\n5%| 1/20\n") && logs.endsWith("100%| 20/20\n"), logs);
      // The query that checks the status before a line is added reads an index, not the row.
      const plan = reader
        .prepare(
          "EXPLAIN QUERY PLAN SELECT id FROM predictions INDEXED BY predictions_id_status WHERE id = ? AND status IN ('starting', 'processing')",
        )
        .all("x") as { detail: string }[];
      assert.match(plan.map((r) => r.detail).join("; "), /COVERING INDEX predictions_id_status/);
    } finally {
      reader.close();
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
