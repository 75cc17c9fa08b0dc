/**
 * The HTTP event loop stays free while a model generates: the engine runs in a process of its own.
 *
 * Measured with the server's own event-loop delay monitor (prom-client's
 * `nodejs_eventloop_lag_max_seconds` on /metrics: the longest delay since the previous scrape,
 * which each scrape resets), not with the wall clock of this test. The generation is split into
 * windows of at least two denoising steps each. With the engine on the event loop, every such
 * window holds one whole UNet call on it, so every window's longest delay is about a step; with
 * the engine in its own process, a window's longest delay is the scheduling noise of the machine.
 * The test asks that at least one window stays under half a step: a busy machine may stall the
 * loop now and then, but not in every window, while a blocked loop fails every one.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, eventually, metricSample, type Sdserve, startSdserve, VERSION } from "./server.js";

let server: Sdserve;

before(async () => {
  server = await startSdserve();
});
after(async () => {
  await server?.stop();
});

/** The last step a prediction's logs report (their tqdm lines: ` 40%|████      | 2/5 […]`). */
function stepsDone(logs: unknown): number {
  const matches = [...String(logs ?? "").matchAll(/\|\s*(\d+)\/\d+ \[/g)];
  return matches.length ? Number(matches.at(-1)?.[1]) : 0;
}

async function metrics(): Promise<string> {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

test("/health-check and the API answer at once while a generation runs", async (t) => {
  // tiny-random at 640×640 with guidance: one step is a UNet call on a batch of two, a few
  // tenths of a second on one core.
  const steps = 24;
  const created = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: { prompt: "a busy loop", width: 640, height: 640, num_inference_steps: steps, seed: 7 },
  });
  assert.equal(created.status, 201);
  const id = created.json["id"] as string;
  const progress = async () => {
    const r = await api(server, "GET", `/v1/predictions/${id}`);
    return { status: r.json["status"] as string, step: stepsDone(r.json["logs"]) };
  };
  await eventually(async () => ((await progress()).step >= 1 ? true : undefined), "the first step", {
    attempts: 3000,
    intervalMs: 20,
  });

  const windows: number[] = [];
  for (;;) {
    await metrics(); // starts a window: the scrape resets the delay histogram
    const start = (await progress()).step;
    const end = await eventually(
      async () => {
        const p = await progress();
        return p.step >= start + 2 || p.status !== "processing" ? p : undefined;
      },
      "two more steps",
      { attempts: 3000, intervalMs: 20 },
    );
    if (end.status !== "processing") break;
    const maxLag = metricSample(await metrics(), "sdserve_nodejs_eventloop_lag_max_seconds");
    assert.ok(maxLag !== undefined, "/metrics reports the event loop's delay");
    windows.push(maxLag);
  }
  const done = await eventually(async () => {
    const p = await api(server, "GET", `/v1/predictions/${id}`);
    return p.json["status"] === "processing" ? undefined : p.json;
  }, "the prediction to finish");
  assert.equal(done["status"], "succeeded", String(done["error"]));
  const text = await metrics();
  const stepSum = metricSample(text, "sdserve_step_seconds_sum") ?? 0;
  const stepCount = metricSample(text, "sdserve_step_seconds_count") ?? 0;
  assert.equal(stepCount, steps);
  const meanStep = stepSum / stepCount;
  assert.ok(windows.length >= 3, `only ${windows.length} windows of two steps were measured`);
  const best = Math.min(...windows);
  t.diagnostic(
    `longest event-loop delay per window: ${windows.map((s) => s.toFixed(3)).join(", ")} s; one step ${meanStep.toFixed(3)} s`,
  );
  assert.ok(
    best < meanStep / 2,
    `the event loop was held in every window: longest delays ${windows.map((s) => s.toFixed(3)).join(", ")} s, one step ${meanStep.toFixed(3)} s`,
  );
});
