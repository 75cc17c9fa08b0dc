/** Prefer: wait and Cancel-After parsing. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCancelAfter, parsePreferWait } from "../../src/server/http/headers.js";

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
  for (const bad of ["4s", "1d", "soon", "", "5 m"]) assert.ok(Number.isNaN(parseCancelAfter(bad)), bad);
});
