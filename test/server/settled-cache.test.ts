/**
 * The read path's cache (predictions/settled-cache.ts): only finished predictions are kept, for
 * their account and the base their URLs were made from, until retention may rewrite them (or
 * at once when this process rewrites them), bounded by size. Through a real HTTP server: a
 * prediction that can still change is always read afresh, and what the cache serves is byte
 * for byte what the store would give.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/server/app.js";
import { TokenAuth } from "../../src/server/auth.js";
import type { OutputFile } from "../../src/server/models/model.js";
import type { PredictionRecord, PredictionStatus } from "../../src/server/predictions/prediction.js";
import type { UrlBase } from "../../src/server/predictions/serialize.js";
import { CLOCK_MARGIN_MS, SettledPredictionCache } from "../../src/server/predictions/settled-cache.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { Worker } from "../../src/server/worker.js";
import { type HarnessOptions, newHarness } from "../helpers/prediction-service.js";

const HOUR = 3_600_000;
const BASE: UrlBase = { api: "http://a.example/v1", origin: "http://a.example" };
const OTHER_BASE: UrlBase = { api: "http://a.example/replicate/v1", origin: "http://a.example" };

function record(over: Partial<PredictionRecord> = {}): PredictionRecord {
  return {
    id: "p1",
    account: "acct",
    model: "o/m",
    version: "v",
    input: { prompt: "x" },
    logs: "",
    output: ["out-0.png"],
    error: null,
    status: "succeeded",
    dataRemoved: false,
    createdAt: "2030-01-01T00:00:00.000000Z",
    startedAt: "2030-01-01T00:00:01.000000Z",
    completedAt: "2030-01-01T00:00:02.000000Z",
    webhook: null,
    webhookEventsFilter: null,
    deadline: null,
    apiBase: BASE.api,
    origin: BASE.origin,
    filesKey: "f",
    streamKey: "s",
    attempts: 1,
    ...over,
  };
}

const COMPLETED_MS = Date.parse("2030-01-01T00:00:02Z");

test("only finished predictions are kept, for their account and the base their URLs were made from", () => {
  const cache = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: null });
  for (const status of ["starting", "processing"] as PredictionStatus[]) {
    cache.keep(record({ id: status, status, completedAt: null }), BASE, "{}");
    assert.equal(cache.get(status, "acct", BASE), undefined, status);
  }
  for (const status of ["succeeded", "failed", "canceled"] as PredictionStatus[]) {
    cache.keep(record({ id: status, status }), BASE, `{"s":"${status}"}`);
    assert.equal(cache.get(status, "acct", BASE), `{"s":"${status}"}`, status);
    assert.equal(cache.get(status, "someone else", BASE), undefined, status);
    assert.equal(cache.get(status, "acct", OTHER_BASE), undefined, status);
  }
  cache.keep(record({ id: "succeeded" }), OTHER_BASE, '{"other":1}');
  assert.equal(cache.get("succeeded", "acct", OTHER_BASE), '{"other":1}');
  assert.equal(cache.get("succeeded", "acct", BASE), '{"s":"succeeded"}');
  cache.forget("succeeded");
  assert.equal(cache.get("succeeded", "acct", BASE), undefined);
  assert.equal(cache.get("succeeded", "acct", OTHER_BASE), undefined);
});

test("an entry is served until retention may rewrite it, less the clock margin; removed data stays", () => {
  let now = COMPLETED_MS;
  const cache = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: HOUR, now: () => now });
  cache.keep(record(), BASE, "before");
  const until = COMPLETED_MS + HOUR - CLOCK_MARGIN_MS;
  now = until - 1;
  assert.equal(cache.get("p1", "acct", BASE), "before");
  now = until;
  assert.equal(cache.get("p1", "acct", BASE), undefined);
  assert.equal(cache.keptBytes, 0, "an expired entry is dropped when found");
  // Too late to keep: retention may rewrite it any moment.
  cache.keep(record(), BASE, "late");
  assert.equal(cache.get("p1", "acct", BASE), undefined);
  // Retention has rewritten it: it never changes again.
  cache.keep(record({ dataRemoved: true, input: {}, output: null }), BASE, "removed");
  now = until + 1000 * HOUR;
  assert.equal(cache.get("p1", "acct", BASE), "removed");
  // A short retention (shorter than the margin) keeps nothing that can still be rewritten.
  const short = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: 2000, now: () => COMPLETED_MS });
  short.keep(record(), BASE, "x");
  assert.equal(short.get("p1", "acct", BASE), undefined);
});

test("bounded by size: the least recently read goes first; what is too big is not kept", () => {
  const body = "x".repeat(1000);
  const one = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: null });
  one.keep(record({ id: "a" }), BASE, body);
  const entryBytes = one.keptBytes;
  assert.ok(entryBytes >= 2 * body.length, "two bytes a character at least");

  const cache = new SettledPredictionCache({ maxBytes: 3 * entryBytes, retentionMs: null });
  for (const id of ["a", "b", "c"]) cache.keep(record({ id }), BASE, body);
  assert.equal(cache.keptBytes, 3 * entryBytes);
  assert.equal(cache.get("a", "acct", BASE), body);
  cache.keep(record({ id: "d" }), BASE, body);
  assert.ok(cache.keptBytes <= 3 * entryBytes);
  assert.equal(cache.get("b", "acct", BASE), undefined, "b was read least recently");
  for (const id of ["a", "c", "d"]) assert.equal(cache.get(id, "acct", BASE), body, id);
  // Keeping the same body again counts it once.
  cache.keep(record({ id: "d" }), BASE, body);
  assert.equal(cache.keptBytes, 3 * entryBytes);

  cache.keep(record({ id: "huge" }), BASE, "y".repeat(2 * entryBytes));
  assert.equal(cache.get("huge", "acct", BASE), undefined);
  const none = new SettledPredictionCache({ maxBytes: 0, retentionMs: null });
  none.keep(record(), BASE, "{}");
  assert.equal(none.get("p1", "acct", BASE), undefined);
  assert.equal(none.keptBytes, 0);
});

/** A server on the predictions service of a harness, on a real port; the worker runs the test model. */
async function serve(options: HarnessOptions) {
  const h = newHarness({}, [], options);
  const app: FastifyInstance = buildApp({
    service: h.service,
    webhooks: new WebhookDispatcher(h.store, h.events, { allowPrivate: false, userAgent: "test" }),
    auth: new TokenAuth(["r8_alice", "r8_bob"]),
    bodyLimit: 1 << 16,
    publicBaseUrl: undefined,
    maxWaitSeconds: 60,
    corsOrigins: [],
    rateLimit: null,
    provider: "cpu",
    version: "0.0.0-test",
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const worker = new Worker(h.lifecycle, h.service.models, h.queue);
  worker.start();
  const call = async (method: string, path: string, body?: unknown, token = "r8_alice") => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get("content-type"), text, json: JSON.parse(text) };
  };
  return {
    h,
    call,
    create: async () =>
      (await call("POST", "/v1/predictions", { version: h.model.version.id, input: { prompt: "a fox" } })).json
        .id as string,
    close: async () => {
      await worker.stop();
      await app.close();
      await h.close();
    },
  };
}

/** A predict() that waits until the test lets it finish. */
function gate() {
  let open: (outputs: OutputFile[]) => void = () => {};
  const run = () => new Promise<OutputFile[]>((resolve) => (open = resolve));
  return { run, finish: () => open([{ name: "out-0.png", contentType: "image/png", data: new Uint8Array([1]) }]) };
}

async function until<T>(f: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("HTTP: a prediction that can still change is read afresh each time; once finished, served as the store has it", async () => {
  const settled = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: HOUR });
  const s = await serve({ outputRetentionMs: HOUR, settled });
  try {
    const g = gate();
    s.h.model.run = g.run;
    const id = await s.create();
    const processing = await until(async () => {
      const r = await s.call("GET", `/v1/predictions/${id}`);
      return r.json.status === "processing" ? r : undefined;
    });
    assert.equal(settled.keptBytes, 0, "nothing unfinished is kept");
    await s.h.lifecycle.appendLog(id, "step one");
    const logged = await s.call("GET", `/v1/predictions/${id}`);
    assert.ok(!processing.json.logs.includes("step one"));
    assert.match(logged.json.logs, /step one/);
    assert.equal(logged.json.status, "processing");

    g.finish();
    const done = await until(async () => {
      const r = await s.call("GET", `/v1/predictions/${id}`);
      return r.json.status === "succeeded" ? r : undefined;
    });
    assert.ok(settled.keptBytes > 0, "the finished prediction is kept");
    assert.match(done.json.output[0], /^http:\/\/127\.0\.0\.1:\d+\/files\/[a-z2-7]+\/out-0\.png$/);
    // Served from the cache: the same bytes and type as from the store and the route's serialiser.
    const again = await s.call("GET", `/v1/predictions/${id}`);
    assert.equal(again.text, done.text);
    assert.equal(again.type, "application/json; charset=utf-8");
    settled.forget(id);
    const fresh = await s.call("GET", `/v1/predictions/${id}`);
    assert.equal(fresh.text, done.text);
    assert.equal(fresh.type, again.type);

    // Another base: its own URLs; another token: as unknown as a made-up id, cached or not.
    const replicate = await s.call("GET", `/replicate/v1/predictions/${id}`);
    assert.match(replicate.json.urls.get, /\/replicate\/v1\/predictions\//);
    assert.equal((await s.call("GET", `/v1/predictions/${id}`, undefined, "r8_bob")).status, 404);
    assert.equal((await s.call("GET", `/replicate/v1/predictions/${id}`, undefined, "r8_bob")).status, 404);
  } finally {
    await s.close();
  }
});

test("HTTP: a cancel is seen at once, and the canceled prediction is then served as it is", async () => {
  const settled = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: HOUR });
  const s = await serve({ outputRetentionMs: HOUR, settled });
  try {
    const g = gate();
    s.h.model.run = g.run;
    const id = await s.create();
    const before = await s.call("GET", `/v1/predictions/${id}`);
    assert.ok(["starting", "processing"].includes(before.json.status));
    const canceled = await s.call("POST", `/v1/predictions/${id}/cancel`);
    assert.equal(canceled.json.status, "canceled");
    const read = await s.call("GET", `/v1/predictions/${id}`);
    assert.equal(read.json.status, "canceled");
    assert.equal(read.text, (await s.call("GET", `/v1/predictions/${id}`)).text);
    g.finish();
    // The late finish of the canceled run changes nothing.
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await s.call("GET", `/v1/predictions/${id}`)).text, read.text);
    settled.forget(id);
    assert.equal((await s.call("GET", `/v1/predictions/${id}`)).text, read.text);
  } finally {
    await s.close();
  }
});

test("HTTP: retention's rewrite in this process drops the kept JSON at once", async () => {
  // The cache is told a long retention, so that only the lifecycle's forget() can end the entry.
  const settled = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: HOUR });
  const s = await serve({ outputRetentionMs: 1, settled });
  try {
    const id = await s.create();
    const done = await until(async () => {
      const r = await s.call("GET", `/v1/predictions/${id}`);
      return r.json.status === "succeeded" ? r : undefined;
    });
    assert.equal((await s.call("GET", `/v1/predictions/${id}`)).text, done.text);
    assert.ok(settled.keptBytes > 0);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(await s.h.lifecycle.removeExpiredData(), 1);
    const removed = await s.call("GET", `/v1/predictions/${id}`);
    assert.equal(removed.json.data_removed, true);
    assert.equal(removed.json.output, null);
    assert.deepEqual(removed.json.input, {});
    assert.equal(removed.json.status, "succeeded");
  } finally {
    await s.close();
  }
});

test("HTTP: past its retention an entry is not served, so another node's rewrite is seen", async () => {
  let now = Date.now();
  const settled = new SettledPredictionCache({ maxBytes: 1 << 20, retentionMs: HOUR, now: () => now });
  const s = await serve({ outputRetentionMs: HOUR, settled });
  try {
    const id = await s.create();
    const done = await until(async () => {
      const r = await s.call("GET", `/v1/predictions/${id}`);
      return r.json.status === "succeeded" ? r : undefined;
    });
    assert.ok(settled.keptBytes > 0);
    const expires = Date.parse(done.json.completed_at) + HOUR - CLOCK_MARGIN_MS;
    now = expires - 10_000;
    // Before then no node rewrites it (they sweep with the same retention): the kept JSON is served.
    assert.equal((await s.call("GET", `/v1/predictions/${id}`)).text, done.text);
    // Another node's sweep, near the hour: it rewrites the row in the shared store, telling no one.
    now = expires + 1;
    await s.h.store.update(id, { dataRemoved: true, input: {}, output: null, logs: "" });
    const after = await s.call("GET", `/v1/predictions/${id}`);
    assert.equal(after.json.data_removed, true);
    assert.equal(after.json.output, null);
  } finally {
    await s.close();
  }
});
