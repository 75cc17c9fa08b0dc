/**
 * Event streams and slow readers: clients that never read lose previews and, after three
 * keepalive ticks without taking anything, their stream, while the server's buffered bytes stay
 * bounded (sdserve_stream_buffered_bytes); a reading client alongside keeps getting previews;
 * streams are capped per prediction and per client address (429).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { api, eventually, metricSample, type Sdserve, slowInput, startSdserve, VERSION } from "./server.js";

const PER_PREDICTION = 8;
const PER_CLIENT = 12;
/** What may wait in the server's memory per stream: the socket's high-water mark and about one preview event. */
const BOUND_PER_STREAM = 96 * 1024;

let server: Sdserve;
const clients: ChildProcess[] = [];
const predictions: string[] = [];

before(async () => {
  server = await startSdserve({
    env: {
      SDSERVE_STREAM_KEEPALIVE: "1s",
      SDSERVE_STREAMS_PER_PREDICTION: String(PER_PREDICTION),
      SDSERVE_STREAMS_PER_CLIENT: String(PER_CLIENT),
    },
  });
});
after(async () => {
  for (const c of clients) c.kill();
  for (const id of predictions) await api(server, "POST", `/v1/predictions/${id}/cancel`).catch(() => undefined);
  await server?.stop();
});

async function slowPrediction(extra: Record<string, unknown> = {}): Promise<{ id: string; stream: string }> {
  const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput(extra) });
  assert.equal(r.status, 201);
  predictions.push(r.json["id"] as string);
  return { id: r.json["id"] as string, stream: (r.json["urls"] as Record<string, string>)["stream"] as string };
}

/**
 * A client that asks for `url` and then never reads. Node cannot shrink a TCP socket's receive
 * buffer, and the operating system's own buffers on loopback take megabytes before the server
 * feels any backpressure; so the client is a few lines of Python with a 4 kB receive buffer
 * (python3 is there wherever node-gyp builds better-sqlite3). It prints the status line, then
 * sleeps until killed.
 */
const NEVER_READING_CLIENT = `
import socket, sys, time
host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, port))
s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s:%d\\r\\nAccept: text/event-stream\\r\\n\\r\\n" % (target, host, port)).encode())
print(s.recv(12).decode(), flush=True)
while True:
    time.sleep(60)
`;

/** Opens `url` from a client that reads the status line and then never reads again; its status code. */
async function neverReading(url: string): Promise<number> {
  const u = new URL(url);
  const child = spawn("python3", ["-c", NEVER_READING_CLIENT, u.hostname, u.port, `${u.pathname}${u.search}`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  clients.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.once("data", (c: Buffer) => resolve(c.toString()));
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the client exited (${code})`)));
  });
  return Number(/^HTTP\/1\.1 (\d+)/.exec(line)?.[1]);
}

async function metrics(): Promise<{ buffered: number; open: number }> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return {
    buffered: metricSample(text, "sdserve_stream_buffered_bytes") ?? Number.NaN,
    open: metricSample(text, "sdserve_streams_open") ?? Number.NaN,
  };
}

test("never-reading clients: bounded buffers, previews still reach a reader, stalled streams closed", async () => {
  // Four images a preview (about 85 kB an event, two a second): past the megabytes the operating
  // system's socket buffers take on loopback within half a minute.
  const p = await slowPrediction({ num_outputs: 4 });
  const slow = PER_PREDICTION - 1;
  for (let i = 0; i < slow; i++) assert.equal(await neverReading(`${p.stream}?preview=1`), 200);
  // A client that reads, alongside, for a few seconds of previews (at most two a second).
  const reader = new AbortController();
  const reading = fetch(`${p.stream}?preview=1`, { signal: reader.signal }).then(async (res) => {
    let previews = 0;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        previews += decoder.decode(chunk, { stream: true }).split("event: preview\n").length - 1;
      }
    } catch {
      // aborted below
    }
    return previews;
  });

  let maxBuffered = 0;
  let closed = false;
  // Sample until the stalled streams have been closed (three 1 s ticks without progress).
  for (let i = 0; i < 180 && !closed && maxBuffered <= slow * BOUND_PER_STREAM; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const m = await metrics();
    maxBuffered = Math.max(maxBuffered, m.buffered);
    closed = m.open === 1;
  }
  reader.abort();
  const previews = await reading;
  console.log(
    `most bytes buffered for ${slow} never-reading streams: ${maxBuffered}; previews read alongside: ${previews}`,
  );
  assert.ok(closed, "the never-reading streams are closed");
  assert.ok(maxBuffered <= slow * BOUND_PER_STREAM, `${maxBuffered} bytes buffered`);
  assert.ok(previews >= 2, `${previews} previews reached the reading client`);
});

test("streams per prediction and per client address are capped with a 429", async () => {
  const a = await slowPrediction({ seed: 1 });
  for (let i = 0; i < PER_PREDICTION; i++) assert.equal(await neverReading(a.stream), 200);
  const overPrediction = await fetch(a.stream);
  assert.equal(overPrediction.status, 429);
  assert.match(String(((await overPrediction.json()) as { detail: string }).detail), /SDSERVE_STREAMS_PER_PREDICTION/);

  const b = await slowPrediction({ seed: 2 });
  for (let i = PER_PREDICTION; i < PER_CLIENT; i++) assert.equal(await neverReading(b.stream), 200);
  const overClient = await fetch(b.stream);
  assert.equal(overClient.status, 429);
  assert.match(String(((await overClient.json()) as { detail: string }).detail), /SDSERVE_STREAMS_PER_CLIENT/);

  // Streams that close free their places.
  for (const c of clients.splice(0)) c.kill();
  await eventually(async () => ((await metrics()).open === 0 ? true : undefined), "the streams to close");
  const again = new AbortController();
  const res = await fetch(b.stream, { signal: again.signal });
  assert.equal(res.status, 200);
  again.abort();
});
