/**
 * What every PredictionStore promises, as tests: store-sqlite.test.ts and store-postgres.test.ts
 * run these same cases, so the two stores behave alike (order, cursors, isolation, conditional
 * updates, idempotency keys, logs, retention queries, webhook log, settings).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LocalPredictionEvents } from "../../src/server/predictions/events.js";
import { newPredictionId } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { LOG_TAIL, type PredictionStore } from "../../src/server/store/store.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { record, ts } from "../helpers/prediction-record.js";

export interface OpenedStore {
  store: PredictionStore;
  /** Closes the store and removes what the test made. */
  dispose(): Promise<void>;
}

export function storeContract(label: string, open: () => Promise<OpenedStore>, skip?: string): void {
  describe(`PredictionStore contract: ${label}`, { skip }, () => {
    let opened: OpenedStore;
    let store: PredictionStore;
    before(async () => {
      opened = await open();
      store = opened.store;
    });
    after(async () => {
      await opened?.dispose();
    });

    test("a record reads back field for field, by id and by each capability key", async () => {
      const p = record({
        webhook: "https://example.com/hook",
        webhookEventsFilter: ["start", "completed"],
        deadline: ts(0),
      });
      assert.deepEqual(await store.insert(p), p);
      const got = await store.get(p.id);
      assert.deepEqual(got, p);
      // The caller's key order survives (the input is echoed back as sent).
      assert.deepEqual(Object.keys(got?.input ?? {}), ["prompt", "width", "nested"]);
      assert.deepEqual(await store.findByFilesKey(p.filesKey), p);
      assert.deepEqual(await store.findByStreamKey(p.streamKey), p);
      assert.equal(await store.get("nosuchid"), undefined);
      assert.equal(await store.findByFilesKey("nosuchkey"), undefined);
      // An /sdapi call's prompt syntax and A1111 settings (hires fix, clip skip) are kept with it.
      const sdapi = record({
        promptSyntax: "a1111",
        a1111: {
          clipSkip: 2,
          strength: 0.5625,
          hires: { width: 1024, height: 768, upscaler: "Latent (bicubic)", steps: 10, denoisingStrength: 0.5 },
        },
      });
      await store.insert(sdapi);
      assert.deepEqual(await store.get(sdapi.id), sdapi);
    });

    test("update applies a patch only from the allowed statuses; exactly one of two racing transitions wins", async () => {
      const p = record();
      await store.insert(p);
      const started = ts();
      const processing = await store.update(p.id, { status: "processing", startedAt: started, attempts: 1 }, [
        "starting",
        "processing",
      ]);
      assert.equal(processing?.status, "processing");
      assert.equal(processing?.startedAt, started);
      assert.equal(processing?.attempts, 1);
      assert.equal(await store.update(p.id, { status: "processing" }, ["starting"]), undefined);

      const done = ts();
      const [succeeded, canceled] = await Promise.all([
        store.update(p.id, { status: "succeeded", output: ["out-0.png"], completedAt: done }, ["processing"]),
        store.update(p.id, { status: "canceled", completedAt: done }, ["starting", "processing"]),
      ]);
      assert.equal([succeeded, canceled].filter(Boolean).length, 1);
      const final = await store.get(p.id);
      assert.ok(final?.status === "succeeded" || final?.status === "canceled");
      if (final?.status === "succeeded") assert.deepEqual(final.output, ["out-0.png"]);

      // The attempt count fences a run out once another has begun.
      const q = record();
      await store.insert(q);
      await store.update(q.id, { status: "processing", attempts: 1 });
      const rerun = await store.update(q.id, { attempts: 2 }, ["processing"], 1);
      assert.equal(rerun?.attempts, 2);
      assert.equal(await store.update(q.id, { status: "succeeded" }, ["processing"], 1), undefined);
      assert.equal((await store.update(q.id, { status: "succeeded" }, ["processing"], 2))?.status, "succeeded");

      // Without a condition the patch always applies; null and false are stored as such.
      const cleared = await store.update(p.id, { output: null, input: {}, logs: "", dataRemoved: true });
      assert.equal(cleared?.output, null);
      assert.deepEqual(cleared?.input, {});
      assert.equal(cleared?.dataRemoved, true);
      assert.equal(await store.update("nosuchid", { logs: "x" }), undefined);
    });

    test("logs grow line by line while unfinished, and never after", async () => {
      const p = record({ logs: "Using seed: 1\n" });
      await store.insert(p);
      await store.appendLog(p.id, "one");
      await store.appendLog(p.id, "two");
      const all = "Using seed: 1\none\ntwo\n";
      assert.equal((await store.get(p.id))?.logs, all);
      // Every read has every line: by key, in a list, among the unfinished, from an update.
      assert.equal((await store.findByStreamKey(p.streamKey))?.logs, all);
      assert.equal((await store.list({ account: p.account, limit: 100 })).find((r) => r.id === p.id)?.logs, all);
      assert.equal((await store.unfinished()).find((r) => r.id === p.id)?.logs, all);
      assert.equal((await store.update(p.id, { status: "processing" }))?.logs, all);
      const failed = await store.update(p.id, { status: "failed", error: "boom", completedAt: ts() });
      assert.equal(failed?.logs, all);
      await store.appendLog(p.id, "late");
      assert.equal((await store.get(p.id))?.logs, all);
      assert.equal((await store.get(p.id))?.error, "boom");
      // New logs replace them all (a data removal's "").
      assert.equal((await store.update(p.id, { logs: "", input: {}, dataRemoved: true }))?.logs, "");
      assert.equal((await store.get(p.id))?.logs, "");
    });

    test("list: newest first per account, both cursors, every filter", async () => {
      const account = `list-${newPredictionId()}`;
      const rows: PredictionRecord[] = [];
      for (let i = 0; i < 7; i++) {
        rows.push(
          record({
            account,
            model: i % 2 === 0 ? "a/even" : "a/odd",
            version: i % 2 === 0 ? "ve" : "vo",
            status: i < 3 ? "succeeded" : "starting",
          }),
        );
      }
      // Two rows created in the same microsecond are ordered by id.
      const tieAt = ts();
      const [x, y] = [newPredictionId(), newPredictionId()].sort();
      rows.push(
        record({ account, id: x as string, createdAt: tieAt }),
        record({ account, id: y as string, createdAt: tieAt }),
      );
      for (const r of rows) await store.insert(r);
      await store.insert(record({ account: `${account}-other` }));

      const newestFirst = [...rows].reverse().map((r) => r.id);
      const all = await store.list({ account, limit: 100 });
      assert.deepEqual(
        all.map((r) => r.id),
        newestFirst,
      );
      const page1 = await store.list({ account, limit: 3 });
      assert.deepEqual(
        page1.map((r) => r.id),
        newestFirst.slice(0, 3),
      );
      const last1 = page1[2] as PredictionRecord;
      const page2 = await store.list({ account, limit: 3, after: { createdAt: last1.createdAt, id: last1.id } });
      assert.deepEqual(
        page2.map((r) => r.id),
        newestFirst.slice(3, 6),
      );
      const first2 = page2[0] as PredictionRecord;
      const back = await store.list({ account, limit: 2, before: { createdAt: first2.createdAt, id: first2.id } });
      assert.deepEqual(
        back.map((r) => r.id),
        newestFirst.slice(1, 3),
      );
      assert.deepEqual(
        (await store.list({ account, limit: 100, status: "succeeded" })).map((r) => r.id),
        rows
          .slice(0, 3)
          .reverse()
          .map((r) => r.id),
      );
      assert.equal((await store.list({ account, limit: 100, model: "a/odd" })).length, 3);
      assert.equal((await store.list({ account, limit: 100, version: "ve" })).length, 4);
      const r2 = rows[2] as PredictionRecord;
      const r5 = rows[5] as PredictionRecord;
      assert.deepEqual(
        (await store.list({ account, limit: 100, createdAfter: r2.createdAt, createdBefore: r5.createdAt })).map(
          (r) => r.id,
        ),
        [rows[4], rows[3], rows[2]].map((r) => r?.id),
      );
      assert.deepEqual(await store.list({ account: "nobody", limit: 10 }), []);
    });

    test("idempotency keys: one prediction per account and key, even when claimed at once; forgotten by age", async () => {
      const account = `idem-${newPredictionId()}`;
      const a = record({ account });
      const b = record({ account });
      const [ra, rb] = await Promise.all([store.insert(a, "key-1"), store.insert(b, "key-1")]);
      assert.equal(ra.id, rb.id);
      const winner = ra.id;
      assert.equal((await store.findByIdempotencyKey(account, "key-1"))?.id, winner);
      assert.equal((await store.list({ account, limit: 10 })).length, 1);
      // Another account's key of the same name is its own.
      const c = record({ account: `${account}-2` });
      assert.equal((await store.insert(c, "key-1")).id, c.id);
      assert.equal(await store.findByIdempotencyKey(account, "key-2"), undefined);

      await store.forgetIdempotencyKeys(ts());
      assert.equal(await store.findByIdempotencyKey(account, "key-1"), undefined);
      const d = record({ account });
      assert.equal((await store.insert(d, "key-1")).id, d.id);
    });

    test("unfinished oldest first, counts, retention candidates", async () => {
      const model = `m/${newPredictionId()}`;
      const q = record({ model });
      const r = record({ model, status: "processing", attempts: 1 });
      const done = record({ model, status: "succeeded", completedAt: ts(), output: ["out-0.png"] });
      const removed = record({ model, status: "succeeded", completedAt: ts(), dataRemoved: true });
      const cutoff = ts();
      const later = record({ model, status: "failed", completedAt: ts() });
      for (const p of [q, r, done, removed, later]) await store.insert(p);

      const unfinished = (await store.unfinished()).filter((p) => p.model === model);
      assert.deepEqual(
        unfinished.map((p) => p.id),
        [q.id, r.id],
      );
      assert.ok((await store.countUnfinished()) >= 2);
      assert.equal(await store.countByModel(model), 5);
      const expired = await store.completedBefore(cutoff);
      assert.ok(expired.includes(done.id));
      assert.ok(!expired.includes(removed.id));
      assert.ok(!expired.includes(later.id));
      assert.ok(!expired.includes(q.id));
    });

    test("A1111 glances and marks: only the account's /sdapi predictions, oldest first, narrowed, without their input", async () => {
      const account = `glance-${newPredictionId()}`;
      const call = { id: newPredictionId(), timestamp: "20250302100000", images: 3, steps: 20 };
      const big = `data:image/png;base64,${"A".repeat(200_000)}`;
      const sdapi = (extra: Partial<PredictionRecord>) =>
        record({ account, input: { image: big }, promptSyntax: "a1111", a1111: { strength: 0.5, call }, ...extra });
      const done = sdapi({ status: "succeeded", completedAt: ts(), logs: "|  20/20 [00:01]\n" });
      const running = sdapi({ status: "processing", startedAt: ts(), logs: `${"x".repeat(5000)}\n|   7/20 [00:01]\n` });
      const waiting = sdapi({});
      const replicate = record({ account });
      const otherAccount = record({ account: `${account}-other`, a1111: { call } });
      for (const p of [done, running, waiting, replicate, otherAccount]) await store.insert(p);

      const open = await store.openA1111Glances(account, 10);
      assert.deepEqual(
        open.map((g) => g.id),
        [running.id, waiting.id],
      );
      const [glance] = open;
      assert.deepEqual(Object.keys(glance ?? {}).sort(), [
        "a1111",
        "createdAt",
        "id",
        "logTail",
        "startedAt",
        "status",
      ]);
      assert.equal(glance?.status, "processing");
      assert.equal(glance?.createdAt, running.createdAt);
      assert.equal(glance?.startedAt, running.startedAt);
      assert.deepEqual(glance?.a1111, { strength: 0.5, call });
      // The end of the logs only: their last LOG_TAIL characters, the latest step line among them.
      assert.equal(glance?.logTail, running.logs.slice(-LOG_TAIL));
      assert.ok(glance?.logTail.endsWith("|   7/20 [00:01]\n"));
      // A step logged since is in the next glance; a prediction that finishes leaves the open ones.
      await store.appendLog(running.id, "|   8/20 [00:01]");
      assert.ok((await store.openA1111Glances(account, 10))[0]?.logTail.endsWith("|   8/20 [00:01]\n"));
      await store.update(waiting.id, { status: "canceled", completedAt: ts() });
      assert.deepEqual(
        (await store.openA1111Glances(account, 1)).map((g) => g.id),
        [running.id],
      );
      assert.deepEqual(
        (await store.openA1111Glances(account, 10)).map((g) => g.id),
        [running.id],
      );

      // Marks of every status since a time (inclusive), bounded by the limit; no logs, no input.
      const all = await store.a1111MarksSince(account, done.createdAt, 10);
      assert.deepEqual(
        all.map((g) => [g.id, g.status]),
        [
          [done.id, "succeeded"],
          [running.id, "processing"],
          [waiting.id, "canceled"],
        ],
      );
      assert.deepEqual(Object.keys(all[0] ?? {}).sort(), ["a1111", "createdAt", "id", "startedAt", "status"]);
      assert.deepEqual(all[0]?.a1111, { strength: 0.5, call });
      assert.deepEqual(
        (await store.a1111MarksSince(account, running.createdAt, 10)).map((g) => g.id),
        [running.id, waiting.id],
      );
      assert.deepEqual(
        (await store.a1111MarksSince(account, done.createdAt, 1)).map((g) => g.id),
        [done.id],
      );
      assert.deepEqual(await store.a1111MarksSince(`${account}-nobody`, done.createdAt, 10), []);
      assert.deepEqual(await store.openA1111Glances("a\u0000b", 10), []);
      assert.deepEqual(await store.a1111MarksSince("a\u0000b", done.createdAt, 10), []);
    });

    test("webhook deliveries in order; finished predictions with a webhook since a time", async () => {
      const since = ts();
      const p = record({ webhook: "https://example.com/h", status: "succeeded", completedAt: ts() });
      const noHook = record({ status: "succeeded", completedAt: ts() });
      const running = record({ webhook: "https://example.com/h", status: "processing" });
      for (const x of [p, noHook, running]) await store.insert(x);
      const at = ts();
      const attempts = [1, 2, 3].map((attempt) => ({
        webhookId: "msg_1",
        event: "completed" as const,
        attempt,
        at,
        statusCode: attempt < 3 ? 500 : 200,
        error: attempt < 3 ? "HTTP 500" : null,
        delivered: attempt === 3,
        final: attempt === 3,
      }));
      for (const d of attempts) await store.recordWebhookDelivery(p.id, d);
      assert.deepEqual(await store.webhookDeliveries(p.id), attempts);
      assert.deepEqual(await store.webhookDeliveries(noHook.id), []);
      const finished = (await store.finishedWithWebhookSince(since)).map((x) => x.id);
      assert.ok(finished.includes(p.id));
      assert.ok(!finished.includes(noHook.id));
      assert.ok(!finished.includes(running.id));
    });

    test("settings are a key-value table with upsert", async () => {
      const key = `k-${newPredictionId()}`;
      assert.equal(await store.getSetting(key), undefined);
      await store.setSetting(key, "one");
      await store.setSetting(key, "two");
      assert.equal(await store.getSetting(key), "two");
    });

    test("uploads: kept per account, newest first with a cursor, deleted once, expired by time", async () => {
      const account = `acct-${newPredictionId()}`;
      const made = [];
      for (const i of [0, 1, 2]) {
        const u = {
          id: newPredictionId(),
          account,
          name: `pic-${i}.png`,
          contentType: "image/png",
          size: 1000 + i,
          sha256: "ab".repeat(32),
          metadata: i === 0 ? { nested: { z: 1, a: [1, 2] } } : null,
          createdAt: ts(),
          expiresAt: ts(0),
        };
        await store.insertUpload(u);
        made.push(u);
      }
      await store.insertUpload({
        ...(made[0] as (typeof made)[0]),
        id: newPredictionId(),
        account: `${account}-other`,
      });
      assert.deepEqual(await store.getUpload(made[0]?.id as string), made[0]);
      assert.equal(await store.getUpload("nope"), undefined);
      const newest = await store.listUploads(account, 2);
      assert.deepEqual(
        newest.map((u) => u.id),
        [made[2]?.id, made[1]?.id],
      );
      const last = newest[1] as (typeof made)[0];
      assert.deepEqual(
        (await store.listUploads(account, 2, { createdAt: last.createdAt, id: last.id })).map((u) => u.id),
        [made[0]?.id],
      );
      assert.equal(await store.deleteUpload(made[1]?.id as string), true);
      assert.equal(await store.deleteUpload(made[1]?.id as string), false);
      const expired = await store.expiredUploads(made[0]?.expiresAt as string);
      assert.ok(expired.includes(made[0]?.id as string));
      assert.ok(!expired.includes(made[2]?.id as string));
    });

    test("insert-if-absent: of concurrent writers of one key, all get the first value stored", async () => {
      const key = `k-${newPredictionId()}`;
      const kept = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((i) => store.setSettingIfAbsent(key, `v${i}`)));
      const stored = await store.getSetting(key);
      assert.ok(stored?.startsWith("v"));
      assert.deepEqual(kept, new Array(8).fill(stored));
      assert.equal(await store.setSettingIfAbsent(key, "later"), stored);
    });

    test("two first uses of an account's webhook secret at once make one secret", async () => {
      // Two dispatchers: two processes sharing the store, as an API node and a worker do.
      const [a, b] = [0, 1].map(
        () => new WebhookDispatcher(store, new LocalPredictionEvents(), { allowPrivate: false }),
      );
      const account = `acct-${newPredictionId()}`;
      const secrets = await Promise.all([a?.secretFor(account), b?.secretFor(account), a?.secretFor(account)]);
      assert.equal(new Set(secrets).size, 1);
      assert.equal(await b?.secretFor(account), secrets[0]);
    });

    test("a NUL character in what is looked up finds nothing (never an error)", async () => {
      const p = await store.insert(record({ account: "nul-owner" }), "nul-key");
      for (const bad of ["\u0000", `${p.id}\u0000`, "a\u0000b"]) {
        assert.equal(await store.get(bad), undefined);
        assert.equal(await store.findByFilesKey(bad), undefined);
        assert.equal(await store.findByStreamKey(bad), undefined);
        assert.equal(await store.findByIdempotencyKey("nul-owner", bad), undefined);
        assert.equal(await store.findByIdempotencyKey(bad, "nul-key"), undefined);
        assert.deepEqual(await store.list({ account: "nul-owner", limit: 10, model: bad }), []);
        assert.deepEqual(await store.list({ account: "nul-owner", limit: 10, version: bad }), []);
        assert.deepEqual(await store.list({ account: bad, limit: 10 }), []);
      }
      assert.equal((await store.list({ account: "nul-owner", limit: 10 }))[0]?.id, p.id);
    });
  });
}
