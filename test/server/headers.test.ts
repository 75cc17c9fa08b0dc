/** Prefer: wait and Cancel-After parsing. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCancelAfter, parsePreferWait } from "../../src/server/http/headers.js";
import { callWithin } from "../helpers/bounded-call.js";

const HEADERS = new URL("../../src/server/http/headers.ts", import.meta.url);

test("Prefer: wait is 60 s, wait=N is clamped to the maximum, garbage is no wait", () => {
  assert.deepEqual(parsePreferWait("wait", 60), { seconds: 60, applied: "wait" });
  assert.deepEqual(parsePreferWait("wait=5", 60), { seconds: 5, applied: "wait=5" });
  assert.deepEqual(parsePreferWait("respond-async, wait=300", 60), { seconds: 60, applied: "wait=60" });
  assert.deepEqual(parsePreferWait(["handling=lenient", 'wait="7"'], 60), { seconds: 7, applied: "wait=7" });
  assert.deepEqual(parsePreferWait("wait", 30), { seconds: 30, applied: "wait=30" });
  for (const v of [undefined, "", "wait=0", "wait=-1", "wait=soon", "respond-async", "waiting=5"]) {
    assert.equal(parsePreferWait(v, 60), undefined, String(v));
  }
});

test("Cancel-After: h/m/s durations or bare seconds, at least 5 s", () => {
  assert.equal(parseCancelAfter(undefined), undefined);
  assert.equal(parseCancelAfter("90s"), 90_000);
  assert.equal(parseCancelAfter("1h30m45s"), 5_445_000);
  assert.equal(parseCancelAfter("5m"), 300_000);
  assert.equal(parseCancelAfter("10"), 10_000);
  assert.equal(parseCancelAfter(" 2h "), 7_200_000);
  assert.equal(parseCancelAfter("1h1h"), 7_200_000);
  for (const bad of ["4s", "1d", "soon", "", "5 m", "5ms", "1h30", "h", "5s5", "5.5s", "-5s", "٥s"]) {
    assert.ok(Number.isNaN(parseCancelAfter(bad)), bad);
  }
});

test("Cancel-After: out of range is invalid, not a deadline past Date's range", () => {
  assert.equal(parseCancelAfter("168h"), 604_800_000);
  assert.equal(parseCancelAfter("604800"), 604_800_000);
  for (const bad of ["99999999999999999999s", "99999999999999999999", "168h1s", "604801", `${"9".repeat(400)}h`]) {
    assert.ok(Number.isNaN(parseCancelAfter(bad)), bad);
  }
});

// Each of these held the event loop for seconds to hours with the old regexes (the first is
// exponential in the digits). A worker runs the parser; the bound only tells a hang from an answer.
test("Cancel-After: adversarial values are refused in linear time", async () => {
  for (const value of [
    `${"1".repeat(29)}x`,
    `${"1".repeat(1 << 20)}x`,
    `${"1h".repeat(1 << 19)}x`,
    " ".repeat(1 << 20),
  ]) {
    const r = await callWithin(HEADERS, "parseCancelAfter", [value]);
    assert.deepEqual(r, { finished: true, result: null }, `${value.slice(0, 32)}… (${value.length})`);
  }
});

test("Prefer: long runs of spaces and commas are parsed in linear time", async () => {
  const values = [
    `wait${" ".repeat(1 << 20)}x`,
    `wait${" ".repeat(16_384)}=${" ".repeat(16_384)}5x`,
    `${",".repeat(1 << 20)}wait=5`,
    ` ${" ".repeat(1 << 20)}`,
  ];
  for (const value of values) {
    const r = await callWithin(HEADERS, "parsePreferWait", [value, 60]);
    assert.deepEqual(r, { finished: true, result: null }, `${value.slice(0, 32)}… (${value.length})`);
  }
  // Within the length cap, a value padded with spaces still parses.
  assert.deepEqual(parsePreferWait(`wait${" ".repeat(500)}=${" ".repeat(500)}5`, 60), {
    seconds: 5,
    applied: "wait=5",
  });
});
