/**
 * The scale-out as it is deployed: two API nodes (`sdserve serve --no-worker`) and two workers
 * (`sdserve worker`), each with a data directory of its own, sharing PostgreSQL, Redis and S3 on
 * loopback. Twenty predictions are created through both nodes; one worker is killed with SIGKILL
 * while it runs one; every prediction still succeeds, and finishes once (one `output` and one
 * `completed` webhook each). Streams opened on node A follow predictions created through node B,
 * live, whichever worker runs them.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { startS3, type TestS3 } from "../helpers/s3-server.js";
import { freshDatabase, redisForTest, servicesUnavailable } from "../helpers/services.js";
import {
  api,
  eventually,
  metricSample,
  readSse,
  type Sdserve,
  type SseEvent,
  smallInput,
  startSdserve,
  VERSION,
} from "./server.js";

const skip = servicesUnavailable();
const PREDICTIONS = 20;

let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
let s3: TestS3 | undefined;
let nodes: Sdserve[] = [];
let workers: Sdserve[] = [];
let receiver: http.Server;
let hookUrl: string;
const hooks: { id: string; status: string; webhookId: string }[] = [];

before(async () => {
  if (skip) return;
  db = await freshDatabase();
  s3 = await startS3();
  const redis = redisForTest();
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const p = JSON.parse(body) as { id: string; status: string };
      hooks.push({ id: p.id, status: p.status, webhookId: String(req.headers["webhook-id"]) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const env = {
    DATABASE_URL: db.url,
    REDIS_URL: redis.url,
    SDSERVE_REDIS_PREFIX: redis.prefix,
    ...s3.env,
    SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true",
    // A dead worker's job is picked up again within a few seconds.
    SDSERVE_JOB_LOCK: "3s",
  };
  nodes = await Promise.all([
    startSdserve({ env, args: ["--no-worker"] }),
    startSdserve({ env, args: ["--no-worker"] }),
  ]);
  workers = await Promise.all([startSdserve({ env, command: "worker" }), startSdserve({ env, command: "worker" })]);
});
after(async () => {
  await Promise.all([...nodes, ...workers].map((p) => p.stop()));
  receiver?.close();
  await s3?.close();
  await db?.drop();
});

async function metrics(process: Sdserve): Promise<string> {
  return (await fetch(`${process.url}/metrics`)).text();
}

test("2 API nodes, 2 workers, 20 predictions, one worker killed mid-run: all succeed, once", { skip }, async () => {
  const [nodeA, nodeB] = nodes as [Sdserve, Sdserve];
  const [victim, survivor] = workers as [Sdserve, Sdserve];
  const ids: string[] = [];
  const streamsOnA: Promise<SseEvent[]>[] = [];
  for (let i = 0; i < PREDICTIONS; i++) {
    const via = i % 2 === 0 ? nodeA : nodeB;
    const r = await api(via, "POST", "/v1/predictions", {
      version: VERSION,
      input: smallInput({ width: 256, height: 256, num_inference_steps: 4, seed: i }),
      webhook: hookUrl,
      webhook_events_filter: ["output", "completed"],
    });
    assert.equal(r.status, 201);
    ids.push(r.json["id"] as string);
    // Node A follows some of node B's predictions from the start.
    if (via === nodeB && streamsOnA.length < 3) {
      const stream = (r.json["urls"] as { stream: string }).stream;
      assert.ok(stream.startsWith(nodeB.url));
      streamsOnA.push(readSse(stream.replace(nodeB.url, nodeA.url)));
    }
  }

  // Kill the victim while it is running a prediction (it has run steps, and has not finished them all).
  await eventually(
    async () => ((metricSample(await metrics(victim), "sdserve_step_seconds_count") ?? 0) > 0 ? true : undefined),
    "the victim to run a step",
    { attempts: 600, intervalMs: 20 },
  );
  await victim.kill();

  const done = await Promise.all(
    ids.map((id) =>
      eventually(
        async () => {
          const p = (await api(nodeB, "GET", `/v1/predictions/${id}`)).json;
          return ["succeeded", "failed", "canceled"].includes(p["status"] as string) ? p : undefined;
        },
        `prediction ${id}`,
        { attempts: 1200, intervalMs: 100 },
      ),
    ),
  );
  for (const p of done) assert.equal(p["status"], "succeeded", JSON.stringify(p));
  // The prediction the victim was running ran again on the survivor, and says so.
  const reruns = done.filter((p) =>
    /The worker running this prediction stopped before it finished/.test(p["logs"] as string),
  );
  assert.ok(reruns.length >= 1, "a prediction was running on the killed worker");

  // Outputs are in S3: node A serves those that workers made for node B's predictions.
  for (const p of done.slice(0, 4)) {
    const url = (p["output"] as string[])[0] as string;
    const res = await fetch(url.replace(nodeB.url, nodeA.url));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
  }

  // Finished once: each prediction made exactly one `output` and one `completed` webhook.
  await eventually(async () => (hooks.length >= 2 * PREDICTIONS ? true : undefined), "every webhook");
  await new Promise((r) => setTimeout(r, 1000));
  for (const id of ids) {
    const mine = hooks.filter((h) => h.id === id);
    assert.equal(mine.length, 2, `webhooks of ${id}: ${JSON.stringify(mine)}`);
    assert.ok(mine.every((h) => h.status === "succeeded"));
    assert.equal(new Set(mine.map((h) => h.webhookId)).size, 2);
  }

  // The streams opened on node A saw node B's predictions run: logs as they came, the output, done.
  for (const events of await Promise.all(streamsOnA)) {
    assert.ok(events.filter((e) => e.event === "logs").length >= 2, JSON.stringify(events));
    assert.equal(events.filter((e) => e.event === "output").length, 1);
    assert.equal(events.at(-1)?.event, "done");
    assert.equal(events.at(-1)?.data, "{}");
  }

  const onSurvivor = await metrics(survivor);
  assert.ok((metricSample(onSurvivor, "sdserve_predictions_total", 'status="succeeded"') ?? 0) >= 1);
  assert.equal(metricSample(await metrics(nodeA), "sdserve_predictions_unfinished"), 0);
});
