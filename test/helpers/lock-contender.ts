/**
 * One contender for a lock, run as its own process by test/engine/stale-lock.test.ts:
 * node --import tsx lock-contender.ts <cache|hub> <dir> <start at (ms since epoch)> <hold ms> <log file>
 * Waits for the start time (so that all contenders ask at once), takes the lock, appends
 * "<pid> <entered> <left>" (µs since epoch) to the log, and gives it back.
 */
import { appendFileSync } from "node:fs";
import path from "node:path";
import { withLock } from "../../src/engine/hub/lock.js";
import { OptimizedModelCache } from "../../src/engine/optimized-cache.js";

const [kind, dir, startAt, holdMs, log] = process.argv.slice(2) as [string, string, string, string, string];
const now = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const hold = async () => {
  const entered = now();
  await new Promise((r) => setTimeout(r, Number(holdMs)));
  appendFileSync(log, `${process.pid} ${entered} ${now()}\n`);
};

while (Date.now() < Number(startAt)) {
  // busy-wait: a timer would spread the start over milliseconds
}
if (kind === "cache") {
  const cache = new OptimizedModelCache(dir);
  const release = await cache.lock({
    network: "unet",
    graph: new Uint8Array([1]),
    weightFiles: [path.join(dir, "..", "weights.safetensors")],
    runtimeVersion: "test",
    settings: "{}",
  });
  await hold();
  release();
} else {
  await withLock(path.join(dir, "blob.lock"), hold);
}
