/**
 * `sdserve serve` with weights from a (local) Hugging Face Hub: the model is pulled into the
 * Hugging Face cache at start while the API already answers, then serves predictions.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { modelDir } from "../helpers/fixtures.js";
import { filesOfFolder, LocalHub } from "../helpers/hub-server.js";
import { api, authHeaders, eventually, smallInput, startSdserve, VERSION } from "./server.js";

const REPO = "sdserve-test/tiny-sd1";
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-e2e-hub-"));
let hub: LocalHub;

before(async () => {
  hub = await LocalHub.start();
  hub.addRepo(REPO, filesOfFolder(modelDir("tiny-sd1")));
});
after(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

test("serve --model <hub id> downloads the weights into the Hugging Face cache and serves them", async () => {
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(tmp, "hf"), HF_HOME: tmp };
  const server = await startSdserve({ env, args: ["--model", REPO] });
  try {
    await eventually(async () => {
      const r = await api(server, "GET", "/health-check", undefined, {});
      return r.json["status"] === "READY" ? r.json : undefined;
    }, "READY");
    const r = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      { ...authHeaders(), Prefer: "wait" },
    );
    assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json));
    assert.match(server.output(), /Downloading sdserve-test\/tiny-sd1: [\d.]+ MB/);
    assert.match(server.output(), /Downloaded unet\/diffusion_pytorch_model\.safetensors/);
  } finally {
    await server.stop();
  }
  // Offline, the next start finds everything in the cache.
  hub.reset();
  const offline = await startSdserve({ env: { ...env, HF_HUB_OFFLINE: "1" }, args: ["--model", REPO] });
  try {
    await eventually(async () => {
      const r = await api(offline, "GET", "/health-check", undefined, {});
      return r.json["status"] === "READY" ? r.json : undefined;
    }, "READY offline");
    assert.deepEqual(hub.requests, []);
  } finally {
    await offline.stop();
  }
});
