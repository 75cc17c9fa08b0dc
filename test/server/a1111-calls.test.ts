/**
 * server/a1111/calls.ts: an account's A1111 calls in flight as a /progress poll finds them in
 * the store (a real SQLite store): the open images with their steps, the call's finished images
 * counted, other calls and accounts left out.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { callsInFlight } from "../../src/server/a1111/calls.js";
import { progressLine } from "../../src/server/models/progress-bar.js";
import { AccountState } from "../../src/server/predictions/accounts.js";
import { newCapabilityKey, newPredictionId, timestamp } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-calls-"));
const store = new SqlitePredictionStore(path.join(dir, "sdserve.db"));
const accounts = new AccountState(store);
after(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const nowStamp = () => new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);

function record(account: string, extra: Partial<PredictionRecord>): PredictionRecord {
  return {
    id: newPredictionId(),
    account,
    model: "m/n",
    version: "v1",
    input: { prompt: "p", image: `data:image/png;base64,${"A".repeat(100_000)}` },
    logs: "",
    output: null,
    error: null,
    status: "starting",
    dataRemoved: false,
    createdAt: timestamp(),
    startedAt: null,
    completedAt: null,
    webhook: null,
    webhookEventsFilter: null,
    deadline: null,
    apiBase: "http://127.0.0.1/v1",
    origin: "http://127.0.0.1",
    filesKey: newCapabilityKey(),
    streamKey: newCapabilityKey(),
    attempts: 0,
    ...extra,
  };
}

test("an idle account has no calls in flight; a finished call is not one", async () => {
  assert.deepEqual(await callsInFlight(accounts, "idle"), []);
  const call = { id: "done-call", timestamp: nowStamp(), images: 1, steps: 4 };
  await store.insert(record("finished", { a1111: { call }, status: "succeeded", completedAt: timestamp() }));
  await store.insert(record("finished", { status: "processing" }));
  assert.deepEqual(await callsInFlight(accounts, "finished"), []);
});

test("a call part-way: its finished images counted, the running one's step from its logs, others left out", async () => {
  const account = "alice";
  const earlier = { id: "earlier", timestamp: nowStamp(), images: 2, steps: 20 };
  for (let i = 0; i < 2; i++) {
    await store.insert(record(account, { a1111: { call: earlier }, status: "succeeded", completedAt: timestamp() }));
  }
  const call = { id: "running", timestamp: nowStamp(), images: 4, steps: 20 };
  const logs = Array.from({ length: 7 }, (_, i) => `${progressLine(i + 1, 20, i)}\n`).join("");
  const made = [
    record(account, { a1111: { call }, status: "succeeded", completedAt: timestamp(), logs: "x\n" }),
    record(account, { a1111: { call }, status: "canceled", completedAt: timestamp() }),
    record(account, { a1111: { call }, status: "processing", startedAt: timestamp(), logs }),
    record(account, { a1111: { call } }),
  ];
  // A Replicate prediction and another account's call in between change nothing.
  await store.insert(made[0] as PredictionRecord);
  await store.insert(record(account, { status: "processing" }));
  await store.insert(record("bob", { a1111: { call } }));
  for (const p of made.slice(1)) await store.insert(p);

  const calls = await callsInFlight(accounts, account);
  assert.equal(calls.length, 1);
  const [found] = calls;
  assert.equal(found?.id, "running");
  assert.equal(found?.timestamp, call.timestamp);
  assert.equal(found?.missing, 0);
  assert.deepEqual(
    found?.jobs.map((j) => [j.id, j.status, j.step, j.steps]),
    [
      [made[0]?.id, "succeeded", 0, 20],
      [made[1]?.id, "canceled", 0, 20],
      [made[2]?.id, "processing", 7, 20],
      [made[3]?.id, "starting", 0, 20],
    ],
  );
});

test("a call still being made: the images not made yet are missing, not done", async () => {
  const call = { id: "half", timestamp: nowStamp(), images: 5, steps: 10 };
  await store.insert(record("carol", { a1111: { call }, status: "succeeded", completedAt: timestamp() }));
  await store.insert(record("carol", { a1111: { call } }));
  const [found] = await callsInFlight(accounts, "carol");
  assert.equal(found?.jobs.length, 2);
  assert.equal(found?.missing, 3);
  assert.equal(found?.missingDone, false);
});
