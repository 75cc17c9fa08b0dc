/**
 * The predictions service and its lifecycle with no HTTP (SQLite in memory, the in-process
 * queue): attempt fencing, recovery after a crash, the deadline cancel, and cancel racing
 * succeed — what only the end-to-end tests reached before.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  InvalidInputError,
  NotFoundError,
  QueueFullError,
  TokenQueueFullError,
} from "../../src/server/predictions/errors.js";
import { formatMicros } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { ACCOUNT, BASE, createOne, type Harness, newHarness } from "../helpers/prediction-service.js";

const OUTPUT = [{ name: "out-0.png", contentType: "image/png", data: new Uint8Array([7]) }];

async function statusOf(h: Harness, id: string): Promise<PredictionRecord> {
  const p = await h.store.get(id);
  assert.ok(p);
  return p;
}

async function waitFor(h: Harness, id: string, check: (p: PredictionRecord) => boolean): Promise<PredictionRecord> {
  for (;;) {
    const p = await statusOf(h, id);
    if (check(p)) return p;
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("a run that lost its prediction to a rerun writes nothing; the rerun's outputs stand", async () => {
  const h = newHarness();
  try {
    const p = await createOne(h);
    const first = await h.lifecycle.begin(p.id);
    assert.equal(first?.attempt, 1);
    // The process "dies" with the prediction processing; the next one recovers it.
    const after = h.restart();
    assert.deepEqual(await after.lifecycle.recover(), { requeued: 1, failed: 0 });
    const second = await after.lifecycle.begin(p.id);
    assert.equal(second?.attempt, 2);
    assert.match((await statusOf(after, p.id)).logs, /restarted while this prediction was running/);

    // The first run finishes late: fenced out, it records nothing and writes no file.
    await h.lifecycle.succeed(p.id, [{ ...OUTPUT[0], data: new Uint8Array([1]) }] as typeof OUTPUT, first?.attempt);
    assert.equal((await statusOf(after, p.id)).status, "processing");
    assert.equal(await after.files.get(p.id, "out-0.png"), undefined);
    await h.lifecycle.fail(p.id, "late failure", first?.attempt);
    assert.equal((await statusOf(after, p.id)).status, "processing");

    await after.lifecycle.succeed(p.id, OUTPUT, second?.attempt);
    const done = await statusOf(after, p.id);
    assert.equal(done.status, "succeeded");
    assert.deepEqual(done.output, ["out-0.png"]);
    assert.deepEqual([...((await (await after.files.get(p.id, "out-0.png"))?.read()) ?? [])], [7]);
    // begin() on a finished prediction hands out nothing.
    assert.equal(await after.lifecycle.begin(p.id), undefined);
    await after.close();
  } finally {
    h.lifecycle.shutdown();
  }
});

test("recovery: queued predictions come back in order; one that died twice while running fails", async () => {
  const h = newHarness();
  const a = await createOne(h);
  const b = await createOne(h);
  const twice = await createOne(h);
  // `twice` was running when the process died, and had already been rerun once.
  await h.store.update(twice.id, { status: "processing", attempts: 2 });

  const after = h.restart();
  assert.deepEqual(await after.lifecycle.recover(), { requeued: 2, failed: 1 });
  const failed = await statusOf(after, twice.id);
  assert.equal(failed.status, "failed");
  assert.match(failed.error ?? "", /stopped twice/);

  const taken: string[] = [];
  const consumer = after.queue.consume(async (id) => {
    taken.push(id);
    return "done";
  }, 1);
  while (taken.length < 2) await new Promise((r) => setTimeout(r, 5));
  await consumer.stop();
  assert.deepEqual(taken, [a.id, b.id]);
  await after.close();
});

test("recovery at start takes a prediction stamped ahead of this process's clock", async () => {
  const h = newHarness();
  const p = await createOne(h);
  await h.queue.remove(p.id);
  const ahead = { ...p, id: `${p.id.slice(0, -4)}zzzz`, createdAt: formatMicros((Date.now() + 60_000) * 1000) };
  await h.store.insert({ ...ahead, filesKey: "f-ahead", streamKey: "s-ahead" });
  const after = h.restart();
  assert.deepEqual(await after.lifecycle.recover(), { requeued: 2, failed: 0 });
  await after.close();
});

test("shutdown puts a running prediction back; it runs again after the restart", async () => {
  const h = newHarness();
  const p = await createOne(h);
  const run = await h.lifecycle.begin(p.id);
  assert.ok(run);
  h.lifecycle.shutdown();
  assert.equal(run.signal.reason, "shutdown");
  await h.lifecycle.interrupted(p.id, run.signal.reason, run.attempt);
  const back = await statusOf(h, p.id);
  assert.equal(back.status, "starting");
  assert.equal(back.attempts, 0);
  const after = h.restart();
  assert.deepEqual(await after.lifecycle.recover(), { requeued: 1, failed: 0 });
  assert.equal((await after.lifecycle.begin(p.id))?.attempt, 1);
  await after.close();
});

test("the deadline cancels a running prediction, aborts its run and says why in the logs", async () => {
  const h = newHarness();
  try {
    const p = await createOne(h, { cancelAfterMs: 50 });
    assert.ok(p.deadline);
    const run = await h.lifecycle.begin(p.id);
    assert.ok(run);
    const canceled = await waitFor(h, p.id, (x) => x.status !== "processing");
    assert.equal(canceled.status, "canceled");
    assert.match(canceled.logs, /reached its deadline/);
    assert.equal(run.signal.reason, "canceled");
    // The run notices and stops: nothing it reports afterwards changes the prediction.
    await h.lifecycle.interrupted(p.id, run.signal.reason, run.attempt);
    await h.lifecycle.succeed(p.id, OUTPUT, run.attempt);
    assert.equal((await statusOf(h, p.id)).status, "canceled");
    assert.equal(await h.files.get(p.id, "out-0.png"), undefined);
  } finally {
    await h.close();
  }
});

test("a deadline reached while queued cancels it and takes it off the queue", async () => {
  const h = newHarness();
  try {
    const p = await createOne(h, { cancelAfterMs: 20 });
    await waitFor(h, p.id, (x) => x.status === "canceled");
    assert.equal(await h.queue.remove(p.id), false);
  } finally {
    await h.close();
  }
});

test("cancel while succeed is writing the files: canceled, with no output and no files left", async () => {
  const h = newHarness();
  try {
    const p = await createOne(h);
    const run = await h.lifecycle.begin(p.id);
    assert.ok(run);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let writing: () => void = () => {};
    const started = new Promise<void>((r) => {
      writing = r;
    });
    const put = h.files.put.bind(h.files);
    h.files.put = async (...args) => {
      writing();
      await gate;
      return put(...args);
    };
    const succeeding = h.lifecycle.succeed(p.id, OUTPUT, run.attempt);
    await started;
    const canceled = await h.service.cancel(ACCOUNT, p.id);
    assert.equal(canceled.status, "canceled");
    release();
    await succeeding;
    const final = await statusOf(h, p.id);
    assert.equal(final.status, "canceled");
    assert.equal(final.output, null);
    assert.equal(await h.files.get(p.id, "out-0.png"), undefined);
  } finally {
    await h.close();
  }
});

test("cancel after succeed returns the succeeded prediction unchanged", async () => {
  const h = newHarness();
  try {
    const p = await createOne(h);
    const run = await h.lifecycle.begin(p.id);
    await h.lifecycle.succeed(p.id, OUTPUT, run?.attempt);
    const after = await h.service.cancel(ACCOUNT, p.id);
    assert.equal(after.status, "succeeded");
    assert.deepEqual(after.output, ["out-0.png"]);
  } finally {
    await h.close();
  }
});

test("domain errors: unknown or foreign predictions, invalid input, a full queue", async () => {
  const h = newHarness({ queueMax: 1 });
  try {
    const p = await createOne(h);
    await assert.rejects(h.service.get("someone-else", p.id), NotFoundError);
    await assert.rejects(h.service.cancel(ACCOUNT, "nope"), NotFoundError);
    await assert.rejects(createOne(h), QueueFullError);
    await assert.rejects(
      h.service.create(ACCOUNT, { body: { version: p.version, input: { width: 3 } } }, BASE),
      (err: unknown) => err instanceof InvalidInputError && err.fields[0]?.field === "input.width",
    );
    await assert.rejects(h.service.list(ACCOUNT, { pageSize: 10, cursor: "!!" }), InvalidInputError);
  } finally {
    await h.close();
  }
});

test("one token's cap is its own: another token still creates", async () => {
  const h = newHarness({ queueMaxPerToken: 1 });
  try {
    const p = await createOne(h);
    await assert.rejects(createOne(h), TokenQueueFullError);
    const other = await h.service.create("account-b", { body: { version: p.version, input: {} } }, BASE);
    assert.equal(other.status, "starting");
  } finally {
    await h.close();
  }
});
