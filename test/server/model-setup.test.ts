/**
 * The Stable Diffusion adapter's setup from the (local) hub: a hub that cannot be reached fails
 * setup with a reason that says what to do, and a later prediction tries again.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import type { HubSettings } from "../../src/engine/hub/settings.js";
import { modelSpec } from "../../src/model-catalog.js";
import { StableDiffusionAdapter } from "../../src/server/models/stable-diffusion.js";
import { modelDir } from "../helpers/fixtures.js";
import { filesOfFolder, LocalHub } from "../helpers/hub-server.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-setup-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("a hub that was unreachable at start is tried again by a later prediction", async () => {
  const closed = await LocalHub.start();
  await closed.close();
  const settings: HubSettings = { endpoint: closed.url, token: undefined, cacheDir: tmp, offline: false };
  const lines: string[] = [];
  const adapter = new StableDiffusionAdapter({
    spec: modelSpec("acme/tiny", "sdserve-test/tiny-sd1", { defaults: { width: 128, height: 128 } }),
    hub: settings,
    cacheDir: tmp,
    threads: 1,
    log: (line) => lines.push(line),
    retryUnreachableMs: 0,
  });
  await assert.rejects(adapter.setup(), /cannot reach/);
  assert.equal(adapter.state, "SETUP_FAILED");
  assert.match(adapter.setupError ?? "", /^cannot reach .*HF_ENDPOINT.*--model tiny-random$/);

  // The network is back.
  const hub = await LocalHub.start();
  try {
    hub.addRepo("sdserve-test/tiny-sd1", filesOfFolder(modelDir("tiny-sd1")));
    settings.endpoint = hub.url;
    const logs: string[] = [];
    const outputs = await adapter.predict(
      { prompt: "a lighthouse", num_inference_steps: 1, seed: 1 },
      { log: (l) => logs.push(l), signal: new AbortController().signal },
    );
    assert.equal(adapter.state, "READY");
    assert.equal(adapter.setupError, undefined);
    assert.equal(outputs.length, 1);
    assert.ok(lines.some((l) => /^Downloading sdserve-test\/tiny-sd1 /.test(l)));
  } finally {
    await adapter.close();
    await hub.close();
  }
});
