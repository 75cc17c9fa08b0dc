/**
 * Each webhook attempt has one deadline for all of it: a receiver that trickles its answer a
 * byte at a time (never idle for long) is cut off at the deadline, in the headers or the body.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo, Socket } from "node:net";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { LocalPredictionEvents } from "../../src/server/predictions/events.js";
import { timestamp } from "../../src/server/predictions/ids.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { record } from "../helpers/prediction-record.js";

const DEADLINE_MS = 1000;
/** Far below the deadline: an idle timeout of DEADLINE_MS never fires on these receivers. */
const TRICKLE_MS = 200;

let dir: string;
let store: SqlitePredictionStore;
let dispatcher: WebhookDispatcher;
let receiver: net.Server;
let base: string;
const sockets = new Set<Socket>();

/** Sends `head` at once, then `trickle` one byte every TRICKLE_MS, over and over, until the client goes. */
function trickler(socket: Socket, head: string, trickle: string): void {
  let i = 0;
  socket.write(head);
  const timer = setInterval(() => {
    if (!socket.writable) return clearInterval(timer);
    socket.write(trickle[i++ % trickle.length] as string);
  }, TRICKLE_MS);
  socket.on("close", () => clearInterval(timer));
  socket.on("error", () => clearInterval(timer));
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-webhook-deadline-"));
  store = new SqlitePredictionStore(path.join(dir, "sdserve.db"));
  dispatcher = new WebhookDispatcher(store, new LocalPredictionEvents(), {
    allowPrivate: true,
    timeoutMs: DEADLINE_MS,
    retryDelaysMs: [],
  });
  // A raw TCP receiver, so the answer can be dribbled out exactly as the path says.
  receiver = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.once("data", (chunk) => {
      const target = /^POST (\S+)/.exec(chunk.toString())?.[1];
      if (target === "/headers") trickler(socket, "HTTP/1.1 200 OK\r\n", "X-Slow: yes\r\n");
      else if (target === "/body") {
        trickler(
          socket,
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
          "1\r\nx\r\n",
        );
      } else socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

after(async () => {
  dispatcher.stop();
  for (const s of sockets) s.destroy();
  receiver.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function completedWith(webhook: string): Promise<PredictionRecord> {
  const now = timestamp();
  const p = record({ status: "succeeded", createdAt: now, startedAt: now, completedAt: now, attempts: 1 });
  return store.insert({ ...p, webhook, webhookEventsFilter: ["completed"], apiBase: "http://127.0.0.1/v1" });
}

/** One attempt, bounded here too so that a delivery that never ends fails the test instead of hanging it. */
async function oneAttempt(webhook: string) {
  const p = await completedWith(webhook);
  let bound: NodeJS.Timeout | undefined;
  const finished = await Promise.race([
    dispatcher.tryCompleted(p.id, "msg_deadline", 1).then(() => true),
    new Promise<false>((resolve) => {
      bound = setTimeout(() => resolve(false), 20 * DEADLINE_MS);
    }),
  ]);
  clearTimeout(bound);
  assert.ok(finished, `the attempt to ${webhook} was still open long after its deadline`);
  const [delivery] = await store.webhookDeliveries(p.id);
  assert.ok(delivery);
  return delivery;
}

test("a receiver that answers at once is delivered", async () => {
  const d = await oneAttempt(`${base}/fast`);
  assert.deepEqual([d.delivered, d.statusCode, d.error], [true, 200, null]);
});

test("headers trickled a byte at a time: the attempt is cut at its deadline", async () => {
  const d = await oneAttempt(`${base}/headers`);
  assert.deepEqual([d.delivered, d.statusCode, d.error, d.final], [false, null, "timed out", true]);
});

test("a body trickled a byte at a time after a 200: the attempt is cut at its deadline", async () => {
  const d = await oneAttempt(`${base}/body`);
  assert.deepEqual([d.delivered, d.error], [false, "timed out"]);
});

test("the receiver is left with no open connection once the attempts are over", async () => {
  await new Promise((resolve) => setTimeout(resolve, 2 * TRICKLE_MS));
  assert.equal(sockets.size, 0);
});
