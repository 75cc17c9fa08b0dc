/**
 * A prediction accepted is never lost: kill -9 the server with predictions queued and running,
 * start it again on the same data directory, and every one of them finishes. SIGTERM is a
 * graceful stop: the running prediction goes back to the queue and runs after the restart.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import Replicate from "replicate";
import { api, eventually, newDataDir, type Sdserve, smallInput, startSdserve, TOKEN, VERSION } from "./server.js";

async function statusOf(server: Sdserve, id: string): Promise<Record<string, unknown>> {
  return (await api(server, "GET", `/v1/predictions/${id}`)).json;
}

test("kill -9 with a queue of predictions: after a restart all of them succeed", async () => {
  const dataDir = newDataDir();
  const first = await startSdserve({ dataDir });
  const ids: string[] = [];
  // The first keeps the worker busy for a few seconds; the rest wait in the queue behind it.
  const long = await api(first, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ width: 512, height: 512, num_inference_steps: 12 }),
  });
  ids.push(long.json["id"] as string);
  for (let i = 0; i < 3; i++) {
    const r = await api(first, "POST", "/v1/predictions", { version: VERSION, input: smallInput({ seed: i }) });
    assert.equal(r.status, 201);
    ids.push(r.json["id"] as string);
  }
  await eventually(
    async () => ((await statusOf(first, ids[0] as string))["status"] === "processing" ? true : undefined),
    "the first to start",
  );
  const before = await Promise.all(ids.map(async (id) => (await statusOf(first, id))["status"]));
  assert.ok(before.includes("starting"), `some still queued at the kill: ${before.join(", ")}`);
  await first.kill();

  const second = await startSdserve({ dataDir });
  try {
    assert.match(second.output(), /Recovered \d+ unfinished prediction/);
    const replicate = new Replicate({ auth: TOKEN, baseUrl: `${second.url}/v1` });
    for (const id of ids) {
      const done = await replicate.wait(await replicate.predictions.get(id), { interval: 50 });
      assert.equal(done.status, "succeeded", id);
      assert.equal((done.output as string[]).length, 1);
      assert.ok((done.output as string[])[0]?.startsWith(second.url));
      const png = await fetch((done.output as string[])[0] as string);
      assert.equal(png.status, 200);
    }
    // The one that was running when the process died says it was run again.
    const rerun = await statusOf(second, ids[0] as string);
    assert.match(rerun["logs"] as string, /restarted while this prediction was running; running it again/);
  } finally {
    await second.stop();
  }
});

test("SIGTERM stops gracefully: exit code 0, the running prediction runs again after the restart", async () => {
  const dataDir = newDataDir();
  const first = await startSdserve({ dataDir });
  const r = await api(first, "POST", "/v1/predictions", {
    version: VERSION,
    input: smallInput({ width: 512, height: 512, num_inference_steps: 20 }),
  });
  const id = r.json["id"] as string;
  await eventually(async () => ((await statusOf(first, id))["status"] === "processing" ? true : undefined), "start");
  assert.equal(await first.stop(), 0);

  const second = await startSdserve({ dataDir });
  try {
    const done = await eventually(async () => {
      const p = await statusOf(second, id);
      return p["status"] === "succeeded" ? p : undefined;
    }, "the rerun");
    assert.match(done["logs"] as string, /sdserve stopped before this prediction finished/);
  } finally {
    await second.stop();
  }
});
