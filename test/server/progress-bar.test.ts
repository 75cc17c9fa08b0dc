/** tqdm-shaped progress lines, readable by both official clients' progress regex. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { progressLine } from "../../src/server/models/progress-bar.js";

const CLIENT_REGEX = /^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)/;

test("lines look like tqdm's and parse with the clients' regex", () => {
  assert.equal(progressLine(0, 50, 0), "  0%|          | 0/50 [00:00<?, ?it/s]");
  assert.equal(progressLine(1, 50, 0.2), "  2%|▏         | 1/50 [00:00<00:09,  5.00it/s]");
  assert.equal(progressLine(50, 50, 8.5), "100%|██████████| 50/50 [00:08<00:00,  5.88it/s]");
  assert.equal(progressLine(2, 5, 4), " 40%|████      | 2/5 [00:04<00:06,  2.00s/it]");
  for (const [done, total] of [
    [0, 3],
    [1, 3],
    [3, 3],
    [250, 500],
  ] as const) {
    const m = CLIENT_REGEX.exec(progressLine(done, total, 1));
    assert.deepEqual(m?.slice(1).map(Number), [Math.floor((done / total) * 100), done, total]);
  }
});
