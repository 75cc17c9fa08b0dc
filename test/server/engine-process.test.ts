/**
 * The Stable Diffusion adapter's engine process (engine-host.ts): progress and previews come
 * across, cancellation stops between steps, errors keep their kind, and an engine process that
 * dies fails the prediction it ran with a clear error while the model is loaded again in a new one.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { HubError, ModelError, RequestError } from "../../src/engine/index.js";
import { type EngineHost, fromWire } from "../../src/server/models/engine-host.js";
import { toWire } from "../../src/server/models/engine-process.js";
import { PredictionError } from "../../src/server/models/model.js";
import { StableDiffusionAdapter } from "../../src/server/models/stable-diffusion.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-engine-process-"));
/** tiny-random is built in sdserve's cache; no hub is reached (offline, an empty hub cache). */
const settings = {
  cacheDir: tmp,
  hub: { endpoint: "http://127.0.0.1:9", token: undefined, cacheDir: path.join(tmp, "hub"), offline: true },
  threads: 1,
};
after(() => rmSync(tmp, { recursive: true, force: true }));

const PNG = [0x89, 0x50, 0x4e, 0x47];
const lines: string[] = [];
let adapter: StableDiffusionAdapter;

before(async () => {
  adapter = new StableDiffusionAdapter({ source: "tiny-random", ...settings, log: (l) => lines.push(l) });
  await adapter.setup();
});
after(async () => {
  await adapter?.close();
});

/** The engine process the adapter runs now (test access: killing it is the fault under test). */
function engineOf(a: StableDiffusionAdapter): EngineHost {
  const engine = (a as unknown as { engine: EngineHost | undefined }).engine;
  assert.ok(engine, "the adapter has an engine process");
  return engine;
}

/** Resolves once the prediction's logs report `n` steps done. */
function afterSteps(logs: string[], n: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (logs.some((l) => new RegExp(`\\| ${n}/\\d+ \\[`).test(l))) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
  });
}

test("a generation in the engine process reports each step and sends previews and PNGs back", async () => {
  const logs: string[] = [];
  const steps: number[] = [];
  const previews: { step: number; images: Uint8Array[] }[] = [];
  const outputs = await adapter.predict(
    { prompt: "a lighthouse", width: 128, height: 128, num_inference_steps: 3, num_outputs: 2, seed: 1 },
    {
      log: (l) => logs.push(l),
      stepTime: (s) => steps.push(s),
      preview: (p) => previews.push(p),
      signal: new AbortController().signal,
    },
  );
  assert.equal(outputs.length, 2);
  for (const o of outputs) assert.deepEqual([...o.data.subarray(0, 4)], PNG);
  assert.equal(steps.length, 3);
  assert.ok(steps.every((s) => s > 0));
  assert.match(logs.at(-1) ?? "", /\| 3\/3 \[/);
  // The first step always gets a preview; then at most two a second.
  assert.ok(previews.length >= 1);
  assert.equal(previews[0]?.step, 1);
  assert.equal(previews[0]?.images.length, 2);
  for (const image of previews[0]?.images ?? []) assert.deepEqual([...image.subarray(0, 4)], PNG);
});

test("the same seed gives the same PNG bytes, run after run", async () => {
  const run = async () =>
    (
      await adapter.predict(
        { prompt: "twice", width: 128, height: 128, num_inference_steps: 2, seed: 42 },
        { log: () => {}, signal: new AbortController().signal },
      )
    )[0]?.data;
  assert.deepEqual(await run(), await run());
});

test("canceling stops the engine between steps and rejects with the signal's reason", async () => {
  const logs: string[] = [];
  const controller = new AbortController();
  const run = adapter.predict(
    { prompt: "slow", width: 512, height: 512, num_inference_steps: 500, seed: 1 },
    { log: (l) => logs.push(l), signal: controller.signal },
  );
  await afterSteps(logs, 1);
  controller.abort("canceled");
  await assert.rejects(run, (err) => err === "canceled");
  const reached = Math.max(...logs.map((l) => Number(/\| (\d+)\/500 \[/.exec(l)?.[1] ?? 0)));
  // Seen here after step 1, so the engine was in step 2 at most: it stops after that one.
  assert.ok(reached <= 2, `the generation went on to step ${reached}`);
  // The engine is free again.
  const next = await adapter.predict(
    { prompt: "after", width: 128, height: 128, num_inference_steps: 1, seed: 1 },
    { log: () => {}, signal: new AbortController().signal },
  );
  assert.equal(next.length, 1);
});

test("an engine RequestError fails the prediction with its own message", async () => {
  // Not a size the schema allows (validation happens before predict), so the engine refuses it.
  await assert.rejects(
    adapter.predict(
      { prompt: "odd", width: 100, height: 128, num_inference_steps: 1, seed: 1 },
      { log: () => {}, signal: new AbortController().signal },
    ),
    (err) => err instanceof PredictionError && /^width must be a positive multiple of 8/.test(err.message),
  );
});

test("errors cross the boundary as the classes they were", () => {
  const request = fromWire(toWire(new RequestError("steps must be positive", "numInferenceSteps")));
  assert.ok(request instanceof RequestError);
  assert.equal(request.message, "steps must be positive");
  assert.equal((request as RequestError).field, "numInferenceSteps");

  const model = fromWire(toWire(new ModelError("is 3", { file: "unet/config.json", field: "in_channels" })));
  assert.ok(model instanceof ModelError);
  assert.equal(model.message, "unet/config.json: in_channels: is 3");
  assert.equal((model as ModelError).field, "in_channels");

  const hub = fromWire(toWire(new HubError("unreachable", "cannot reach the hub")));
  assert.ok(hub instanceof HubError);
  assert.equal((hub as HubError).kind, "unreachable");

  const internal = fromWire(toWire(new TypeError("x is undefined")));
  assert.ok(!(internal instanceof ModelError) && !(internal instanceof RequestError));
  assert.equal(internal.name, "TypeError");
  assert.equal(fromWire(toWire("a string")).message, "a string");
});

test("an engine process that dies fails its prediction clearly, and the model is loaded again", async () => {
  const logs: string[] = [];
  const run = adapter.predict(
    { prompt: "doomed", width: 512, height: 512, num_inference_steps: 500, seed: 1 },
    { log: (l) => logs.push(l), signal: new AbortController().signal },
  );
  await afterSteps(logs, 1);
  const dead = engineOf(adapter);
  await dead.kill();
  await assert.rejects(
    run,
    (err) =>
      err instanceof PredictionError &&
      /^The engine stopped unexpectedly while making this prediction/.test(err.message),
  );
  assert.equal(adapter.state, "STARTING");
  assert.ok(lines.some((l) => /the engine process ended \(signal SIGKILL\); loading the model again$/.test(l)));
  await adapter.setup();
  assert.equal(adapter.state, "READY");
  assert.notEqual(engineOf(adapter), dead);
  const outputs = await adapter.predict(
    { prompt: "again", width: 128, height: 128, num_inference_steps: 1, seed: 1 },
    { log: () => {}, signal: new AbortController().signal },
  );
  assert.equal(outputs.length, 1);
});

test("an engine process that dies while loading fails setup with a reason, and a later setup tries again", async () => {
  const a = new StableDiffusionAdapter({ source: "tiny-random", ...settings, retryUnreachableMs: 0 });
  try {
    const setup = a.setup();
    await engineOf(a).kill();
    await assert.rejects(setup, PredictionError);
    assert.equal(a.state, "SETUP_FAILED");
    assert.match(
      a.setupError ?? "",
      /^the engine process ended \(signal SIGKILL\) while loading the model \(out of memory\?\); a later prediction tries again$/,
    );
    await a.setup();
    assert.equal(a.state, "READY");
  } finally {
    await a.close();
  }
});

test("close ends the engine process", async () => {
  const a = new StableDiffusionAdapter({ source: "tiny-random", ...settings });
  await a.setup();
  const engine = engineOf(a);
  const pid = engine.pid as number;
  await a.close();
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
  await assert.rejects(
    engine.generate({ prompt: "late" }, { signal: new AbortController().signal }),
    /engine process was closed/,
  );
});
