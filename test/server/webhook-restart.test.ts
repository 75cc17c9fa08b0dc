/**
 * A process that dies after sending a try of `completed` but before recording it: the process
 * that takes over has no record of that try, and must still send the same webhook-id, so the
 * receiver can tell the message is one it has seen (Standard Webhooks' idempotency key).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { LocalPredictionEvents } from "../../src/server/predictions/events.js";
import { timestamp } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";
import type { PredictionStore } from "../../src/server/store/store.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { completedWebhookId } from "../../src/server/webhooks/signing.js";
import { record } from "../helpers/prediction-record.js";

let dir: string;
let store: SqlitePredictionStore;
let receiver: http.Server;
let base: string;
/** webhook-id of each POST, in order; the first answer is a 503, the rest 200. */
const received: string[] = [];

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-webhook-restart-"));
  store = new SqlitePredictionStore(path.join(dir, "sdserve.db"));
  receiver = http.createServer((req, res) => {
    received.push(String(req.headers["webhook-id"]));
    req.resume();
    res.writeHead(received.length === 1 ? 503 : 200).end();
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

after(async () => {
  receiver.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function finished(webhook: string): Promise<PredictionRecord> {
  const now = timestamp();
  const p = record({ status: "succeeded", createdAt: now, startedAt: now, completedAt: now, attempts: 1 });
  return store.insert({ ...p, webhook, webhookEventsFilter: ["completed"], apiBase: "http://127.0.0.1/v1" });
}

test("a try sent but never recorded (the process died): the next process sends the same webhook-id", async () => {
  const p = await finished(`${base}/hook`);
  // The first process: its record of the try never lands, as if it were killed right after the POST.
  let sent!: () => void;
  const trySent = new Promise<void>((resolve) => {
    sent = resolve;
  });
  const dying: PredictionStore = Object.create(store, {
    recordWebhookDelivery: {
      value: () => {
        sent();
        return new Promise<void>(() => undefined);
      },
    },
  });
  const events = new LocalPredictionEvents();
  const first = new WebhookDispatcher(dying, events, { allowPrivate: true, retryDelaysMs: [10] });
  first.start();
  events.publish({ type: "status", prediction: p });
  await trySent;
  first.stop();
  assert.deepEqual(await store.webhookDeliveries(p.id), [], "the first try left no record");

  const second = new WebhookDispatcher(store, new LocalPredictionEvents(), { allowPrivate: true, retryDelaysMs: [10] });
  try {
    assert.equal(await second.resume(), 1);
    for (let i = 0; i < 200 && !(await store.webhookDeliveries(p.id)).some((d) => d.delivered); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const log = await store.webhookDeliveries(p.id);
    assert.ok(
      log.some((d) => d.delivered),
      "delivered after the restart",
    );
    assert.equal(received.length, 2);
    assert.equal(new Set(received).size, 1, `one webhook-id for both tries: ${received.join(", ")}`);
    assert.equal(received[0], completedWebhookId(p.id));
  } finally {
    second.stop();
  }
});
