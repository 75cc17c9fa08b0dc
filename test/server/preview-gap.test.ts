/** engine-process.ts: how often previews are made (the client's interval, or rarer when they are dear). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { previewGapMs } from "../../src/server/models/engine-process.js";

test("previews come at the client's interval while cheap, and never take more than 5 % of the time", () => {
  // The linear map (well under a millisecond): the 500 ms interval rules.
  assert.equal(previewGapMs(500, 0.4), 500);
  assert.equal(previewGapMs(500, 25), 500);
  // A 256² TAESD preview of 0.2 s: the next no sooner than 4 s later (an SD 1.5 step here is about 4.7 s).
  assert.equal(previewGapMs(500, 200), 4000);
  // On a tiny model whose steps take milliseconds, a 0.75 s preview waits 15 s for the next.
  assert.equal(previewGapMs(500, 750), 15_000);
  for (const took of [0, 1, 10, 100, 1000, 60_000]) {
    const gap = previewGapMs(500, took);
    assert.ok(took / gap <= 0.05 + 1e-12, `${took} ms every ${gap} ms`);
    assert.ok(gap >= 500);
  }
});
