/**
 * The store contract against PostgreSQL (a fresh database on the test server), plus what only a
 * networked store has: migrations run on open, once, even when two nodes open at the same time.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import { PostgresPredictionStore } from "../../src/server/store/postgres.js";
import { MIGRATIONS } from "../../src/server/store/postgres-migrations.js";
import { freshDatabase, servicesUnavailable } from "../helpers/services.js";
import { storeContract } from "./store-contract.js";

const skip = servicesUnavailable();

storeContract(
  "PostgreSQL",
  async () => {
    const db = await freshDatabase();
    const store = await PostgresPredictionStore.open(db.url);
    return {
      store,
      dispose: async () => {
        await store.close();
        await db.drop();
      },
    };
  },
  skip,
);

test("migrations run on open, once, when several nodes start together", { skip }, async () => {
  const db = await freshDatabase();
  const applied: string[] = [];
  const stores = await Promise.all(
    [1, 2, 3].map(() => PostgresPredictionStore.open(db.url, { log: (line) => applied.push(line) })),
  );
  try {
    assert.equal(applied.length, MIGRATIONS.length, applied.join("\n"));
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ version: number }>("SELECT version FROM sdserve_migrations ORDER BY version");
    await client.end();
    assert.deepEqual(
      rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    // Opening a migrated database applies nothing.
    const again = await PostgresPredictionStore.open(db.url, { log: (line) => applied.push(line) });
    await again.close();
    assert.equal(applied.length, MIGRATIONS.length);
  } finally {
    for (const s of stores) await s.close();
    await db.drop();
  }
});
