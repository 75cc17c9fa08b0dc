/**
 * Webhooks against a real local receiver, checked with the replicate client's own
 * validateWebhook and the secret from GET /v1/webhooks/default/secret: events and filter,
 * order, body = the prediction as GET returns it, retries of `completed`, the delivery log,
 * and the refusal of internal targets when the config does not allow them.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Replicate, { validateWebhook } from "replicate";
import {
  api,
  eventually,
  newDataDir,
  type Sdserve,
  slowInput,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let server: Sdserve;
let replicate: Replicate;
let receiver: http.Server;
let hookBase: string;
const received: Received[] = [];
/** Paths whose first N deliveries are answered 500. */
const failFirst = new Map<string, number>();

before(async () => {
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const path = req.url ?? "";
      received.push({ path, headers: req.headers, body });
      const left = failFirst.get(path.split("?")[0] as string) ?? 0;
      if (left > 0) failFirst.set(path.split("?")[0] as string, left - 1);
      res.writeHead(left > 0 ? 500 : 200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  hookBase = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  server = await startSdserve({ env: { SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true" } });
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
});
after(async () => {
  await server?.stop();
  receiver?.close();
});

function deliveriesTo(path: string): Received[] {
  return received.filter((r) => r.path.split("?")[0] === path);
}

/**
 * Waits for `terminal` deliveries of a finished prediction: `output` and `completed` both
 * carry the final state, so a filter with both gets two such bodies, `completed` last.
 */
async function completedAt(path: string, terminal: number): Promise<Received[]> {
  const isTerminal = (r: Received) => {
    const body = JSON.parse(r.body);
    return Boolean(body.completed_at) && ["succeeded", "failed", "canceled"].includes(body.status);
  };
  return eventually(async () => {
    const got = deliveriesTo(path);
    return got.filter(isTerminal).length >= terminal ? got : undefined;
  }, `the completed webhook at ${path}`);
}

test("the secret is whsec_ + standard base64 and stays the same", async () => {
  const { key } = await replicate.webhooks.default.secret.get();
  assert.match(key, /^whsec_[A-Za-z0-9+/]+=*$/);
  assert.equal(Buffer.from(key.slice(6), "base64").length, 32);
  assert.equal((await replicate.webhooks.default.secret.get()).key, key);
});

test("every event in the filter, in order, signed; the last body is the prediction as GET returns it", async () => {
  const { key } = await replicate.webhooks.default.secret.get();
  const path = "/hooks/all";
  const prediction = await replicate.predictions.create({
    version: VERSION,
    input: smallInput({ width: 256, height: 256, num_inference_steps: 30 }),
    webhook: `${hookBase}${path}?job=77`,
    webhook_events_filter: ["start", "output", "logs", "completed"],
  });
  assert.equal(prediction.webhook, `${hookBase}${path}?job=77`);
  assert.deepEqual(prediction.webhook_events_filter, ["start", "output", "logs", "completed"]);
  const got = await completedAt(path, 2);
  await new Promise((r) => setTimeout(r, 200)); // nothing may follow `completed`
  assert.equal(deliveriesTo(path).length, got.length);

  const bodies = got.map((r) => JSON.parse(r.body) as Record<string, unknown>);
  assert.equal(got[0]?.path, `${path}?job=77`);
  assert.equal(bodies[0]?.["status"], "starting");
  assert.ok(
    bodies.slice(1, -2).every((b) => b["status"] === "processing"),
    "logs deliveries while running",
  );
  assert.ok(bodies.length >= 4, `start, logs…, output, completed: got ${bodies.length}`);
  assert.equal(bodies[bodies.length - 2]?.["status"], "succeeded");
  assert.equal(bodies[bodies.length - 1]?.["status"], "succeeded");
  const ids = new Set<string>();
  for (const r of got) {
    assert.equal(r.headers["content-type"], "application/json");
    const id = r.headers["webhook-id"] as string;
    assert.match(id, /^msg_/);
    ids.add(id);
    // Both forms of the client's validateWebhook, and the parsed body re-serialised.
    assert.equal(
      await validateWebhook({
        id,
        timestamp: r.headers["webhook-timestamp"] as string,
        signature: r.headers["webhook-signature"] as string,
        body: r.body,
        secret: key,
      }),
      true,
    );
    const request = new Request(`${hookBase}${r.path}`, {
      method: "POST",
      headers: r.headers as Record<string, string>,
      body: r.body,
    });
    assert.equal(await validateWebhook(request, key), true);
    assert.equal(JSON.stringify(JSON.parse(r.body)), r.body);
  }
  assert.equal(ids.size, got.length, "one message id per delivery");
  const final = await replicate.predictions.get(prediction.id);
  assert.deepEqual(bodies[bodies.length - 1], final);
  assert.equal(
    await validateWebhook({
      id: "msg_forged",
      timestamp: got[0]?.headers["webhook-timestamp"] as string,
      signature: got[0]?.headers["webhook-signature"] as string,
      body: got[0]?.body as string,
      secret: key,
    }),
    false,
  );
});

test("without a filter: output and completed only", async () => {
  const path = "/hooks/default";
  await replicate.predictions.create({ version: VERSION, input: smallInput(), webhook: `${hookBase}${path}` });
  const got = await completedAt(path, 2);
  const statuses = got.map((r) => JSON.parse(r.body).status);
  assert.deepEqual(statuses, ["succeeded", "succeeded"]);
  assert.equal(JSON.parse(got[0]?.body as string).output.length, 1);
});

test("completed is retried with the same webhook-id until the receiver takes it; the log shows each try", async () => {
  const path = "/hooks/flaky";
  failFirst.set(path, 2);
  const p = await replicate.predictions.create({
    version: VERSION,
    input: smallInput(),
    webhook: `${hookBase}${path}`,
    webhook_events_filter: ["completed"],
  });
  await eventually(async () => (deliveriesTo(path).length >= 3 ? true : undefined), "three tries");
  const got = deliveriesTo(path);
  assert.equal(new Set(got.map((r) => r.headers["webhook-id"])).size, 1);
  const log = await api(server, "GET", `/v1/predictions/${p.id}/webhook_deliveries`);
  assert.equal(log.status, 200);
  const rows = log.json["results"] as { attempt: number; status_code: number; delivered: boolean; event: string }[];
  assert.deepEqual(
    rows.map((r) => [r.event, r.attempt, r.status_code, r.delivered]),
    [
      ["completed", 1, 500, false],
      ["completed", 2, 500, false],
      ["completed", 3, 200, true],
    ],
  );
});

test("a canceled prediction sends completed with status canceled; webhook_completed is the old spelling", async () => {
  const path = "/hooks/cancel";
  const r = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: slowInput(),
    webhook_completed: `${hookBase}${path}`,
  });
  assert.equal(r.status, 201);
  assert.deepEqual(r.json["webhook_events_filter"], ["completed"]);
  await api(server, "POST", `/v1/predictions/${r.json["id"]}/cancel`);
  const got = await completedAt(path, 1);
  assert.equal(got.length, 1);
  assert.equal(JSON.parse(got[0]?.body as string).status, "canceled");
});

test("internal targets are refused (422) unless SDSERVE_WEBHOOK_ALLOW_PRIVATE is set", async () => {
  const strict = await startSdserve();
  try {
    for (const webhook of [
      `${hookBase}/hooks/x`,
      "http://127.1/hook",
      "http://0x7f000001/hook",
      "http://2130706433/hook",
      "http://[::ffff:127.0.0.1]/hook",
      "http://[::ffff:0:7f00:1]/hook",
      "http://[2002:7f00:1::]/hook",
      "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",
      "http://[::1]:8080/hook",
      "http://localhost/hook",
      "http://10.0.0.8/hook",
      "http://169.254.169.254/latest/meta-data",
    ]) {
      const r = await api(strict, "POST", "/v1/predictions", { version: VERSION, input: smallInput(), webhook });
      assert.equal(r.status, 422, webhook);
      const field = (r.json["invalid_fields"] as { field: string; type: string }[])[0];
      assert.deepEqual([field?.field, field?.type], ["webhook", "webhook_target"]);
    }
    const bad = await api(strict, "POST", "/v1/predictions", {
      version: VERSION,
      input: smallInput(),
      webhook: "ftp://x/y",
    });
    assert.equal(bad.status, 422);
    const filter = await api(strict, "POST", "/v1/predictions", {
      version: VERSION,
      input: smallInput(),
      webhook: "https://example.org/hook",
      webhook_events_filter: ["finished"],
    });
    assert.equal(filter.status, 422);
  } finally {
    await strict.stop();
  }
});

test("a completed webhook still owed when the server dies is sent after the restart, same webhook-id", async () => {
  const path = "/hooks/restart";
  failFirst.set(path, 2);
  const dataDir = newDataDir();
  const env = { SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true" };
  const first = await startSdserve({ dataDir, env });
  const created = await api(first, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput(),
    webhook: `${hookBase}${path}`,
    webhook_events_filter: ["completed"],
  });
  await eventually(async () => (deliveriesTo(path).length >= 1 ? true : undefined), "the first try");
  await first.kill();
  const beforeRestart = deliveriesTo(path).length;

  const second = await startSdserve({ dataDir, env });
  try {
    const log = await eventually(async () => {
      const r = await api(second, "GET", `/v1/predictions/${created.json["id"]}/webhook_deliveries`);
      const rows = r.json["results"] as { delivered: boolean; attempt: number; webhook_id: string }[];
      return rows.some((d) => d.delivered) ? rows : undefined;
    }, "delivery after the restart");
    assert.ok(deliveriesTo(path).length > beforeRestart, "a try was made by the restarted server");
    assert.equal(new Set(deliveriesTo(path).map((r) => r.headers["webhook-id"])).size, 1);
    assert.deepEqual(
      log.map((d) => d.attempt),
      log.map((_, i) => i + 1),
    );
    const secret = (await api(second, "GET", "/v1/webhooks/default/secret")).json["key"] as string;
    const last = deliveriesTo(path).at(-1) as Received;
    assert.equal(
      await validateWebhook({
        id: last.headers["webhook-id"] as string,
        timestamp: last.headers["webhook-timestamp"] as string,
        signature: last.headers["webhook-signature"] as string,
        body: last.body,
        secret,
      }),
      true,
    );
  } finally {
    await second.stop();
  }
});
