/**
 * The real `replicate` npm client (1.4.0) against a real sdserve: run, predictions.create / get /
 * list / cancel, wait and paginate, on both /v1 and the aggregator's /replicate/v1.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import Replicate, { type Prediction, parseProgressFromLogs } from "replicate";
import {
  eventually,
  MODEL,
  OTHER_TOKEN,
  type Sdserve,
  SERVED_VERSION,
  slowInput,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

let server: Sdserve;
let replicate: Replicate;

before(async () => {
  server = await startSdserve();
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
});
after(async () => {
  await server?.stop();
});

async function fetchPng(url: string) {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "image/png");
  const bytes = new Uint8Array(await res.arrayBuffer());
  assert.equal(Number(res.headers.get("content-length")), bytes.length);
  return decode(bytes);
}

test("run() with owner/name:version returns the output URLs of PNGs of the requested size", async () => {
  const output = (await replicate.run(`${MODEL}:${VERSION}`, {
    input: smallInput({ width: 256, height: 128, num_outputs: 2, seed: 7 }),
  })) as string[];
  assert.equal(output.length, 2);
  // http: URLs come back as plain strings from run() (the client wraps only https: and data:).
  for (const [i, url] of output.entries()) {
    assert.equal(typeof url, "string");
    assert.match(url, new RegExp(`^${server.url}/files/[a-z2-7]+/out-${i}\\.png$`));
    const png = await fetchPng(url);
    assert.equal(png.width, 256);
    assert.equal(png.height, 128);
    assert.match(String(png.text["parameters"]), /Seed: 7, Size: 256x128/);
  }
});

test("run() with owner/name goes through /models/{owner}/{name}/predictions", async () => {
  const output = (await replicate.run(MODEL, { input: smallInput({ seed: 3 }) })) as string[];
  assert.equal(output.length, 1);
  const png = await fetchPng(output[0] as string);
  assert.equal(png.width, 128);
});

test("run() in poll mode, with a progress callback that sees the final prediction", async () => {
  const seen: Prediction[] = [];
  const output = (await replicate.run(
    `${MODEL}:${VERSION}`,
    { input: smallInput({ num_inference_steps: 3 }), wait: { mode: "poll", interval: 50 } },
    (p) => seen.push(p),
  )) as string[];
  assert.equal(output.length, 1);
  const last = seen[seen.length - 1] as Prediction;
  assert.equal(last.status, "succeeded");
  assert.deepEqual(parseProgressFromLogs(last), { percentage: 1, current: 3, total: 3 });
});

test("run() throws the model's error when the prediction fails", async () => {
  await assert.rejects(replicate.run(`${MODEL}:${VERSION}`, { input: smallInput({ width: 1024, height: 1024 }) }), {
    message:
      "Prediction failed: Maximum size is 1024x768 or 768x1024 pixels, because of memory limits. Please select a lower width or height.",
  });
});

test("predictions.create, wait and get: the lifecycle, logs and metrics", async () => {
  const created = await replicate.predictions.create({ version: VERSION, input: smallInput({ seed: 1234 }) });
  assert.equal(created.status, "starting");
  assert.equal(created.model, MODEL);
  assert.equal(created.version, SERVED_VERSION);
  assert.deepEqual(created.input, smallInput({ seed: 1234 }));
  assert.equal(created.output, null);
  assert.equal(created.logs, "");
  assert.match(created.id, /^[a-z0-9]{26}$/);
  assert.equal(created.urls.get, `${server.url}/v1/predictions/${created.id}`);
  assert.equal(created.urls.cancel, `${server.url}/v1/predictions/${created.id}/cancel`);
  assert.match(created.urls.stream as string, /^http:\/\/127\.0\.0\.1:\d+\/v1\/streams\/[a-z2-7]+$/);

  const done = await replicate.wait(created, { interval: 50 });
  assert.equal(done.status, "succeeded");
  assert.equal(done.error, null);
  assert.ok(done.started_at && done.completed_at);
  assert.match(done.logs as string, /^Using seed: 1234\n {2}0%\| {10}\| 0\/2 \[00:00<\?, \?it\/s\]\n/);
  assert.deepEqual(parseProgressFromLogs(done.logs as string), { percentage: 1, current: 2, total: 2 });
  const metrics = done.metrics as Record<string, number>;
  assert.equal(typeof metrics["predict_time"], "number");
  assert.equal(typeof metrics["total_time"], "number");
  assert.equal(metrics["image_count"], 1);

  const got = await replicate.predictions.get(created.id);
  assert.deepEqual(got, done);
});

test("a seed given twice gives the same image; no seed picks one from 0–65535 and logs it", async () => {
  const a = (await replicate.run(`${MODEL}:${VERSION}`, { input: smallInput({ seed: 99 }) })) as string[];
  const b = (await replicate.run(`${MODEL}:${VERSION}`, { input: smallInput({ seed: 99 }) })) as string[];
  assert.deepEqual((await fetchPng(a[0] as string)).data, (await fetchPng(b[0] as string)).data);

  const p = await replicate.wait(await replicate.predictions.create({ version: VERSION, input: smallInput() }), {
    interval: 50,
  });
  const seed = Number(/^Using seed: (\d+)$/m.exec(p.logs as string)?.[1]);
  assert.ok(Number.isInteger(seed) && seed >= 0 && seed <= 65535);
});

test("predictions.cancel stops a running prediction between steps", async () => {
  const p = await replicate.predictions.create({ version: VERSION, input: slowInput() });
  await eventually(async () => {
    const now = await replicate.predictions.get(p.id);
    return /\| [1-9]\d*\/500/.test(now.logs ?? "") ? now : undefined;
  }, "the first denoising step");
  const canceled = await replicate.predictions.cancel(p.id);
  assert.equal(canceled.status, "canceled");
  assert.equal(canceled.output, null);
  assert.equal(canceled.error, null);
  assert.ok(canceled.completed_at);
  // Canceling again is not an error: the same object comes back.
  assert.equal((await replicate.predictions.cancel(p.id)).status, "canceled");
  // The worker is free again: the next prediction runs to the end.
  const output = (await replicate.run(`${MODEL}:${VERSION}`, { input: smallInput() })) as string[];
  assert.equal(output.length, 1);
});

test("run() with an abort signal cancels the prediction", async () => {
  const controller = new AbortController();
  let id: string | undefined;
  const running = replicate.run(
    `${MODEL}:${VERSION}`,
    { input: slowInput(), wait: { mode: "poll", interval: 50 }, signal: controller.signal },
    (p) => {
      id = p.id;
      if (p.status === "processing") controller.abort();
    },
  );
  assert.equal(await running, null);
  assert.equal((await replicate.predictions.get(id as string)).status, "canceled");
});

test("predictions.list and paginate: newest first, full objects, only this token's", async () => {
  const other = new Replicate({ auth: OTHER_TOKEN, baseUrl: `${server.url}/v1` });
  const mine = await replicate.predictions.create({ version: VERSION, input: smallInput() });
  const theirs = await other.predictions.create({ version: VERSION, input: smallInput() });
  const page = await replicate.predictions.list();
  assert.equal(page.results[0]?.id, mine.id);
  assert.ok(!page.results.some((p) => p.id === theirs.id));
  assert.equal(page.previous, null);
  for (const p of page.results) {
    assert.equal(typeof p.model, "string");
    assert.equal(typeof p.version, "string");
    assert.equal(typeof p.logs, "string");
  }
  const ids: string[] = [];
  for await (const results of replicate.paginate(() => replicate.predictions.list())) {
    ids.push(...results.map((p) => p.id));
  }
  assert.deepEqual(
    ids,
    page.results.map((p) => p.id),
  );
  assert.equal((await other.predictions.list()).results[0]?.id, theirs.id);
  await replicate.wait(mine, { interval: 50 });
  await other.wait(theirs, { interval: 50 });
});

test("the aggregator layout: baseUrl …/replicate/v1 works and its URLs keep the prefix", async () => {
  const agg = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/replicate/v1` });
  const p = await agg.predictions.create({ model: MODEL, input: smallInput() });
  assert.equal(p.urls.get, `${server.url}/replicate/v1/predictions/${p.id}`);
  const done = await agg.wait(p, { interval: 50 });
  assert.equal(done.status, "succeeded");
  // One store behind both prefixes.
  assert.equal((await replicate.predictions.get(p.id)).status, "succeeded");
  const output = (await agg.run(MODEL, { input: smallInput() })) as string[];
  assert.equal((await fetchPng(output[0] as string)).height, 128);
});

test("a wrong token is refused with Replicate's 401", async () => {
  const bad = new Replicate({ auth: "r8_not_a_token", baseUrl: `${server.url}/v1` });
  await assert.rejects(bad.predictions.list(), (err: Error & { response?: Response }) => {
    assert.equal(err.response?.status, 401);
    assert.match(err.message, /You did not pass a valid authentication token/);
    return true;
  });
});
