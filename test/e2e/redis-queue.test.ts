/**
 * API nodes and a worker sharing PostgreSQL and Redis: two `sdserve serve --no-worker` nodes and
 * `sdserve worker` processes. Prefer: wait, the stream and webhooks work on either node whichever
 * worker runs the job; a cancel made on a node reaches the worker running the prediction; a worker
 * stopped with SIGTERM hands its prediction back, and another worker runs it.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { freshDatabase, redisForTest, servicesUnavailable } from "../helpers/services.js";
import {
  api,
  authHeaders,
  eventually,
  metricSample,
  newDataDir,
  readSse,
  type Sdserve,
  slowInput,
  smallInput,
  startSdserve,
  VERSION,
} from "./server.js";

const skip = servicesUnavailable();
let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
let env: Record<string, string>;
let dataDir: string;
let nodeA: Sdserve;
let nodeB: Sdserve;
let worker: Sdserve | undefined;
let receiver: http.Server;
let hookUrl: string;
const hooks: { status: string; id: string; path: string; webhookId: string }[] = [];
/** Paths whose first N deliveries are answered 500. */
const failFirst = new Map<string, number>();

before(async () => {
  if (skip) return;
  db = await freshDatabase();
  const redis = redisForTest();
  dataDir = newDataDir();
  env = {
    DATABASE_URL: db.url,
    REDIS_URL: redis.url,
    SDSERVE_REDIS_PREFIX: redis.prefix,
    SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true",
    SDSERVE_JOB_LOCK: "3s",
  };
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const p = JSON.parse(body) as { status: string; id: string };
      const path = req.url ?? "";
      hooks.push({ status: p.status, id: p.id, path, webhookId: String(req.headers["webhook-id"]) });
      const left = failFirst.get(path) ?? 0;
      failFirst.set(path, left - 1);
      res.writeHead(left > 0 ? 500 : 200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  // One data directory: without S3 the outputs are files that every process on this machine reads.
  [nodeA, nodeB, worker] = await Promise.all([
    startSdserve({ dataDir, env, args: ["--no-worker"] }),
    startSdserve({ dataDir, env, args: ["--no-worker"] }),
    startSdserve({ dataDir, env, command: "worker" }),
  ]);
});
after(async () => {
  await Promise.all([nodeA?.stop(), nodeB?.stop(), worker?.stop()]);
  receiver?.close();
  await db?.drop();
});

async function status(node: Sdserve, id: string): Promise<Record<string, unknown>> {
  return (await api(node, "GET", `/v1/predictions/${id}`)).json;
}

test("API-only nodes say their models run on the workers", { skip }, async () => {
  const health = (await api(nodeA, "GET", "/health-check", undefined, {})).json;
  assert.equal(health["status"], "READY");
  assert.deepEqual(health["setup"], {
    "stability-ai/stable-diffusion": { status: "WORKERS" },
    "stability-ai/stable-diffusion-img2img": { status: "WORKERS" },
    "stability-ai/stable-diffusion-inpainting": { status: "WORKERS" },
  });
  assert.match(
    (await api(worker as Sdserve, "GET", "/health-check", undefined, {})).json["status"] as string,
    /READY|STARTING/,
  );
});

test("Prefer: wait on node A, the stream on node B, the webhook once: a job run by the worker", { skip }, async () => {
  const created = await api(
    nodeA,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput(), webhook: `${hookUrl}/hook`, webhook_events_filter: ["completed"] },
    { ...authHeaders(), Prefer: "wait=60" },
  );
  assert.equal(created.status, 201);
  assert.equal(created.json["status"], "succeeded", JSON.stringify(created.json));
  const id = created.json["id"] as string;
  const output = created.json["output"] as string[];
  assert.equal((await fetch(output[0] as string)).status, 200);

  // The stream URL answers on node B too (a replay: it is finished).
  const streamOnB = (created.json["urls"] as { stream: string }).stream.replace(nodeA.url, nodeB.url);
  const events = await readSse(streamOnB);
  assert.equal(events.at(-1)?.event, "done");
  assert.equal(events.filter((e) => e.event === "output").length, 1);

  const done = await eventually(async () => {
    const got = hooks.filter((h) => h.id === id);
    return got.length > 0 ? got : undefined;
  }, "the completed webhook");
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    hooks.filter((h) => h.id === id).map((h) => h.status),
    ["succeeded"],
  );
  assert.equal(done[0]?.status, "succeeded");
  assert.equal((await status(nodeB, id))["status"], "succeeded");
});

test("/metrics on an API node and on the worker: each counts what it did, both see the shared queue", {
  skip,
}, async () => {
  const onA = await (await fetch(`${nodeA.url}/metrics`)).text();
  const onWorker = await (await fetch(`${(worker as Sdserve).url}/metrics`)).text();
  assert.equal(metricSample(onA, "sdserve_predictions_total", 'status="starting"'), 1);
  assert.equal(metricSample(onA, "sdserve_step_seconds_count"), 0);
  assert.equal(metricSample(onWorker, "sdserve_predictions_total", 'status="succeeded"'), 1);
  assert.ok((metricSample(onWorker, "sdserve_step_seconds_count") ?? 0) >= 2);
  assert.equal(metricSample(onA, "sdserve_queue_depth"), 0);
  assert.equal(metricSample(onWorker, "sdserve_predictions_unfinished"), 0);
});

test("webhooks of one prediction come in order across processes: start (node A) first, completed last", {
  skip,
}, async () => {
  const r = await api(nodeA, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput(),
    webhook: `${hookUrl}/all`,
    webhook_events_filter: ["start", "output", "logs", "completed"],
  });
  const id = r.json["id"] as string;
  const got = await eventually(async () => {
    const mine = hooks.filter((h) => h.id === id);
    return mine.filter((h) => h.status === "succeeded").length >= 2 ? mine : undefined;
  }, "the output and completed webhooks");
  assert.equal(got[0]?.status, "starting", JSON.stringify(got));
  assert.equal(got.filter((h) => h.status === "starting").length, 1);
  assert.deepEqual(
    got.slice(-2).map((h) => h.status),
    ["succeeded", "succeeded"],
  );
});

test("a live stream on node B follows a prediction created on node A", { skip }, async () => {
  const created = await api(nodeA, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ num_inference_steps: 6 }),
  });
  const stream = (created.json["urls"] as { stream: string }).stream.replace(nodeA.url, nodeB.url);
  const events = await readSse(stream);
  assert.ok(events.filter((e) => e.event === "logs").length >= 1);
  assert.equal(events.filter((e) => e.event === "output").length, 1);
  assert.equal(events.at(-1)?.event, "done");
});

test("cancel on node B reaches the worker running the prediction; the worker goes on to the next", {
  skip,
}, async () => {
  const slow = await api(nodeA, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
  const id = slow.json["id"] as string;
  await eventually(async () => ((await status(nodeB, id))["status"] === "processing" ? true : undefined), "start");
  const canceled = await api(nodeB, "POST", `/v1/predictions/${id}/cancel`);
  assert.equal(canceled.json["status"], "canceled");
  // The worker is free again: the next prediction runs, which it would not if the slow one went on.
  const next = await api(
    nodeA,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput() },
    {
      ...authHeaders(),
      Prefer: "wait=60",
    },
  );
  assert.equal(next.json["status"], "succeeded");
  assert.equal((await status(nodeA, id))["output"], null);
});

test("a worker stopped with SIGTERM hands its prediction back; another worker runs it", { skip }, async () => {
  const r = await api(nodeB, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ width: 512, height: 512, num_inference_steps: 20 }),
  });
  const id = r.json["id"] as string;
  await eventually(async () => ((await status(nodeA, id))["status"] === "processing" ? true : undefined), "start");
  assert.equal(await worker?.stop(), 0);
  worker = await startSdserve({ dataDir, env, command: "worker" });
  const done = await eventually(async () => {
    const p = await status(nodeA, id);
    return p["status"] === "succeeded" ? p : undefined;
  }, "the rerun");
  assert.match(done["logs"] as string, /stopped before it finished; it runs again on another worker/);
});

test("the tries of a completed webhook are a job: they go on after kill -9 of the process that began them", {
  skip,
}, async () => {
  failFirst.set("/flaky", 2);
  const r = await api(nodeA, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput(),
    webhook: `${hookUrl}/flaky`,
    webhook_events_filter: ["completed"],
  });
  const id = r.json["id"] as string;
  // The worker finishes the prediction and makes the first try; then it dies.
  await eventually(async () => (hooks.some((h) => h.id === id) ? true : undefined), "the first try");
  await worker?.kill();
  worker = undefined;
  const deliveries = await eventually(async () => {
    const log = (await api(nodeB, "GET", `/v1/predictions/${id}/webhook_deliveries`)).json;
    const list = log["results"] as { attempt: number; delivered: boolean }[];
    return list.some((d) => d.delivered) ? list : undefined;
  }, "the delivered try");
  const got = hooks.filter((h) => h.id === id);
  assert.equal(got.length, 3);
  assert.equal(new Set(got.map((h) => h.webhookId)).size, 1, "one message id across tries");
  assert.deepEqual(
    deliveries.map((d) => [d.attempt, d.delivered]),
    [
      [1, false],
      [2, false],
      [3, true],
    ],
  );
});
