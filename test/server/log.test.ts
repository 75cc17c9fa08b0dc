/** log.ts and prediction-log.ts: redaction, capability URLs, the terminal format, the progress rate. */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import Fastify from "fastify";
import { createLogger, fastifyLogging, loggableUrl, prettyLine } from "../../src/server/log.js";
import { progressLine } from "../../src/server/models/progress-bar.js";
import { PROGRESS_EVERY_MS, PredictionLog } from "../../src/server/prediction-log.js";
import { LocalPredictionEvents } from "../../src/server/predictions/events.js";

function capture(format: "json" | "pretty" = "json", level: "info" | "debug" = "info") {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ logLevel: level, logFormat: format }, out), lines };
}

test("headers and fields named after tokens, secrets and webhooks are redacted", () => {
  const { log, lines } = capture();
  log.info(
    { req: { headers: { authorization: "Bearer r8_secret_token", cookie: "c=secret-cookie" } }, token: "tok-secret" },
    "x",
  );
  log.info({ delivery: { secret: "whsec_abc", webhook: "https://h.example/?key=hook-secret" } }, "y");
  const text = lines.join("\n");
  for (const s of ["r8_secret_token", "secret-cookie", "tok-secret", "whsec_abc", "hook-secret"]) {
    assert.ok(!text.includes(s), s);
  }
  assert.equal(JSON.parse(lines[0] as string).req.headers.authorization, "[redacted]");
});

test("capability keys and queries are masked in logged URLs", () => {
  assert.equal(loggableUrl("/v1/files/abcDEF123/out-0.png"), "/v1/files/…/out-0.png");
  assert.equal(loggableUrl("/replicate/v1/streams/k3y?preview=1"), "/replicate/v1/streams/…");
  assert.equal(loggableUrl("/p/secretkey?fragment=1"), "/p/…");
  assert.equal(loggableUrl("/v1/predictions?cursor=abc"), "/v1/predictions");
  assert.equal(loggableUrl("/v1/predictions/abc/cancel"), "/v1/predictions/abc/cancel");
});

test("the terminal format: time, level, message, fields; a stack below", () => {
  const line = prettyLine(
    JSON.stringify({
      level: 50,
      time: "2026-01-01T12:00:01.234Z",
      pid: 1,
      msg: "boom",
      id: "p1",
      n: 2,
      err: { stack: "Error: x\n  at y" },
    }),
  );
  assert.equal(line, "12:00:01.234 ERROR boom id=p1 n=2\n    Error: x\n      at y\n");
  assert.equal(prettyLine("not json"), "not json\n");
  const { log, lines } = capture("pretty");
  log.warn({ a: "b c" }, "hello");
  assert.match(lines[0] as string, /^\d\d:\d\d:\d\d\.\d{3} WARN {2}hello a="b c"$/);
});

test("progress: the first step, then at most every few seconds, and the last; every step at debug", () => {
  const { log, lines } = capture("json", "debug");
  let now = 0;
  const events = new LocalPredictionEvents();
  const plog = new PredictionLog(log, () => now);
  plog.follow(events);
  for (let step = 0; step <= 20; step++) {
    events.publish({ type: "log", id: "p1", line: progressLine(step, 20, step) });
    now += PROGRESS_EVERY_MS / 4;
  }
  const records = lines.map((l) => JSON.parse(l) as { msg: string; step: number });
  assert.deepEqual(
    records.filter((r) => r.msg === "prediction progress").map((r) => r.step),
    [1, 5, 9, 13, 17, 20],
  );
  assert.equal(records.filter((r) => r.msg === "prediction step").length, 21 - 6);
  events.publish({ type: "log", id: "p1", line: "Using seed: 42" });
  assert.equal(lines.length, records.length);
  plog.close();
});

test("request.log is made when first written: bound to the request id, levels and redaction kept", async () => {
  const { log, lines } = capture("json", "info");
  const app = Fastify(fastifyLogging(log));
  app.get("/quiet", async (req) => {
    req.log.debug("not written at info");
    return { ok: req.log.isLevelEnabled("info") && !req.log.isLevelEnabled("debug") };
  });
  app.get("/loud", async (req) => {
    req.log.info({ token: "tok-secret", n: 1 }, "hello");
    req.log.child({ part: "inner" }).warn("from a child");
    return { level: req.log.level };
  });
  try {
    assert.deepEqual((await app.inject({ url: "/quiet" })).json(), { ok: true });
    assert.equal(lines.length, 0);
    assert.deepEqual((await app.inject({ url: "/loud" })).json(), { level: "info" });
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(records.length, 2);
    const [hello, inner] = records;
    assert.equal(hello?.["msg"], "hello");
    assert.match(String(hello?.["reqId"]), /\S/);
    assert.equal(hello?.["token"], "[redacted]");
    assert.equal(hello?.["n"], 1);
    assert.equal(inner?.["reqId"], hello?.["reqId"]);
    assert.equal(inner?.["part"], "inner");
  } finally {
    await app.close();
  }
});
