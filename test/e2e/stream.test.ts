/**
 * urls.stream: Server-Sent Events read by the real replicate client's stream() and by a bare
 * fetch, as the clients do (no Authorization header): live events, failure, cancel, full replay
 * for late subscribers and Last-Event-ID resume.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Replicate from "replicate";
import {
  api,
  authHeaders,
  eventually,
  MODEL,
  readSseResponse,
  type Sdserve,
  slowInput,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

let server: Sdserve;
let replicate: Replicate;

/** Short, so the keepalive test sees pings without waiting the default 10 s. */
const KEEPALIVE = "300ms";

before(async () => {
  server = await startSdserve({ env: { SDSERVE_STREAM_KEEPALIVE: KEEPALIVE } });
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
});
after(async () => {
  await server?.stop();
});

test("replicate.stream yields the logs, then each output URL, then done", async () => {
  const events: { event: string; data: string; id: string }[] = [];
  for await (const e of replicate.stream(`${MODEL}:${VERSION}`, {
    input: smallInput({ num_outputs: 2, num_inference_steps: 3, seed: 5 }),
  })) {
    events.push({ event: e.event, data: String(e.data), id: String(e.id) });
  }
  const names = events.map((e) => e.event);
  assert.deepEqual(names, ["logs", "logs", "logs", "logs", "logs", "output", "output", "done"]);
  assert.equal(events[0]?.data, "Using seed: 5");
  assert.match(events[4]?.data as string, /^100%\|██████████\| 3\/3 /);
  assert.deepEqual(
    events.map((e) => Number(e.id)),
    events.map((_, i) => i),
  );
  assert.equal(events[7]?.data, "{}");
  const outputs = events.filter((e) => e.event === "output").map((e) => e.data);
  assert.match(outputs[0] as string, /\/out-0\.png$/);
  assert.match(outputs[1] as string, /\/out-1\.png$/);
  const png = await fetch(outputs[1] as string);
  assert.equal(png.headers.get("content-type"), "image/png");
});

test("replicate.stream throws the error event's data when the prediction fails", async () => {
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const e of replicate.stream(MODEL, { input: smallInput({ width: 1024, height: 1024 }) })) {
        seen.push(e.event);
      }
    })(),
    (err: Error) => {
      assert.deepEqual(JSON.parse(err.message), {
        detail:
          "Maximum size is 1024x768 or 768x1024 pixels, because of memory limits. Please select a lower width or height.",
      });
      return true;
    },
  );
  assert.deepEqual(seen, ["logs"]);
});

test("a late subscriber gets the whole history and done; Last-Event-ID resumes after that id", async () => {
  const created = await api(
    server,
    "POST",
    "/v1/predictions",
    { version: VERSION, input: smallInput({ seed: 8 }) },
    {
      ...authHeaders(),
      Prefer: "wait",
    },
  );
  assert.equal(created.json["status"], "succeeded");
  const url = (created.json["urls"] as Record<string, string>)["stream"] as string;

  const { res, events } = await readSseResponse(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type")?.split(";")[0], "text/event-stream");
  assert.equal(res.headers.get("cache-control"), "no-store");
  for (const e of events) {
    assert.ok(["logs", "output", "error", "done"].includes(e.event as string));
    assert.match(e.id as string, /^\d+$/);
  }
  assert.deepEqual(
    events.map((e) => e.event),
    ["logs", "logs", "logs", "logs", "output", "done"],
  );
  assert.equal(events[4]?.data, (created.json["output"] as string[])[0]);

  const resumed = await readSseResponse(url, { "Last-Event-ID": "3" });
  assert.deepEqual(
    resumed.events.map((e) => [e.id, e.event]),
    [
      ["4", "output"],
      ["5", "done"],
    ],
  );
  const unknown = await readSseResponse(url, { "Last-Event-ID": "1741000530:7" });
  assert.equal(unknown.events.length, events.length);
});

test("the stream follows a running prediction live and ends with done canceled on cancel", async () => {
  const created = await api(server, "POST", "/replicate/v1/predictions", { version: VERSION, input: slowInput() });
  const url = (created.json["urls"] as Record<string, string>)["stream"] as string;
  assert.ok(url.startsWith(`${server.url}/replicate/v1/streams/`));
  const reading = readSseResponse(url);
  await eventually(async () => {
    const p = await api(server, "GET", `/v1/predictions/${created.json["id"]}`);
    return /\| [1-9]\d*\/500/.test(p.json["logs"] as string) ? true : undefined;
  }, "a step");
  await api(server, "POST", `/v1/predictions/${created.json["id"]}/cancel`);
  const { events } = await reading;
  const last = events[events.length - 1];
  assert.equal(last?.event, "done");
  assert.deepEqual(JSON.parse(last?.data as string), { reason: "canceled" });
  assert.ok(events.filter((e) => e.event === "logs").length >= 2);
  // The stored logs and the streamed lines are the same lines.
  const stored = (await api(server, "GET", `/v1/predictions/${created.json["id"]}`)).json["logs"] as string;
  assert.deepEqual(
    events.filter((e) => e.event === "logs").map((e) => e.data),
    stored.trimEnd().split("\n"),
  );
});

test("?preview=1 adds unnumbered preview events of a running prediction; a plain stream has none", async () => {
  // 200 steps at 256×128 run for a few seconds on the tiny model: several previews at two a second.
  const created = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ width: 256, height: 128, num_inference_steps: 200, num_outputs: 2 }),
  });
  const url = (created.json["urls"] as Record<string, string>)["stream"] as string;
  const [withPreviews, plain] = await Promise.all([readSseResponse(`${url}?preview=1`), readSseResponse(url)]);
  const previews = withPreviews.events.filter((e) => e.event === "preview");
  assert.ok(previews.length >= 2, `${previews.length} previews`);
  let lastStep = 0;
  for (const e of previews) {
    assert.equal(e.id, undefined);
    const data = JSON.parse(e.data) as { step: number; total: number; images: string[] };
    assert.equal(data.total, 200);
    assert.ok(data.step > lastStep && data.step <= 200);
    lastStep = data.step;
    assert.equal(data.images.length, 2);
    for (const image of data.images) {
      assert.match(image, /^data:image\/png;base64,/);
      const png = Buffer.from(image.slice(image.indexOf(",") + 1), "base64");
      // IHDR: width and height at bytes 16 and 20, an eighth of the image's.
      assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [32, 16]);
    }
  }
  assert.deepEqual(
    withPreviews.events.filter((e) => e.event !== "preview"),
    plain.events,
  );
  assert.ok(plain.events.every((e) => e.event !== "preview"));
  assert.equal(plain.events[plain.events.length - 1]?.event, "done");
});

test("an open stream gets a `: ping` comment every SDSERVE_STREAM_KEEPALIVE while nothing else happens", {
  timeout: 60_000,
}, async () => {
  // A prediction waiting behind a long one sends no events for a while: only pings keep its stream alive.
  const busy = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
  const waiting = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() });
  const url = (waiting.json["urls"] as Record<string, string>)["stream"] as string;
  const res = await fetch(url, { headers: { Accept: "text/event-stream" } });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  const started = Date.now();
  while ((text.match(/^: ping$/gm) ?? []).length < 3) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended before three pings:\n${text}`);
    text += decoder.decode(value, { stream: true });
  }
  const elapsed = Date.now() - started;
  // Three pings at 300 ms take at least 0.9 s: they come from the timer, not from events.
  assert.ok(elapsed >= 800, `three pings after ${elapsed} ms`);
  assert.doesNotMatch(text, /^event: output$/m, "the waiting prediction has not run yet");
  await reader.cancel();
  await api(server, "POST", `/v1/predictions/${busy.json["id"]}/cancel`);
  await eventually(async () => {
    const p = await api(server, "GET", `/v1/predictions/${waiting.json["id"]}`);
    return p.json["status"] === "succeeded" ? true : undefined;
  }, "the waiting prediction to run once the slow one is canceled");
});

test("an unknown stream is a 404", async () => {
  const res = await fetch(`${server.url}/v1/streams/nothinghere`);
  assert.equal(res.status, 404);
});
