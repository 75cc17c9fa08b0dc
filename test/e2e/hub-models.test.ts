/**
 * `sdserve serve` with weights from a (local) Hugging Face Hub: the model is pulled into the
 * Hugging Face cache at start while the API already answers, then serves predictions.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { modelDir } from "../helpers/fixtures.js";
import { filesOfFolder, LocalHub } from "../helpers/hub-server.js";
import { api, authHeaders, eventually, SERVED_VERSION, smallInput, startSdserve, VERSION } from "./server.js";

type Schemas = Record<string, { properties: Record<string, Record<string, unknown>> }>;

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
    assert.match(
      server.output(),
      /Downloading sdserve-test\/tiny-sd1 \([0-9a-f]{12}\) into the Hugging Face cache: [\d.]+ MB/,
    );
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

test("a models file: several models with their own defaults and stable versions, set up while the API answers", async () => {
  const file = path.join(tmp, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      models: {
        "stability-ai/stable-diffusion": { weights: "tiny-random" },
        "sdserve-test/tiny": {
          weights: REPO,
          description: "the fixture model",
          defaults: { width: 128, height: 128, num_inference_steps: 2, scheduler: "K_EULER" },
        },
      },
    }),
  );
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(tmp, "hf-models-file"), HF_HOME: tmp };
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const unet = "unet/diffusion_pytorch_model.safetensors";
  hub.reset();
  hub.faults.hold = { file: unet, afterBytes: 1_000_000, released };
  const args = ["--models", file];
  const server = await startSdserve({ env, args });
  let versions: string[] = [];
  try {
    // While the UNet is on its way: the fixture model downloads, the other is ready, the API answers.
    const health = await eventually(async () => {
      const r = await api(server, "GET", "/health-check", undefined, {});
      const tiny = (r.json["setup"] as Record<string, Record<string, unknown>>)["sdserve-test/tiny"];
      const d = tiny?.["download"] as Record<string, unknown> | undefined;
      return d?.["file"] === unet && (d["downloaded_bytes"] as number) >= 1_000_000 ? r.json : undefined;
    }, "the download in /health-check");
    assert.equal(health["status"], "STARTING");
    const setup = health["setup"] as Record<string, Record<string, unknown>>;
    assert.deepEqual(setup["stability-ai/stable-diffusion"], { status: "READY" });
    assert.equal(setup["sdserve-test/tiny"]?.["phase"], "downloading");
    const download = setup["sdserve-test/tiny"]?.["download"] as Record<string, unknown>;
    assert.equal(download["source"], REPO);
    assert.equal(
      download["total_bytes"],
      [...hub.repos.get(REPO)!.files.values()].reduce((n, f) => n + f.data.length, 0),
    );
    assert.ok((download["percent"] as number) > 0 && (download["percent"] as number) < 100);

    const list = await api(server, "GET", "/v1/models");
    const results = list.json["results"] as Record<string, unknown>[];
    assert.deepEqual(
      results.map((m) => `${m["owner"]}/${m["name"]}`),
      [
        "stability-ai/stable-diffusion",
        "sdserve-test/tiny",
        // Added beside stability-ai/stable-diffusion, on its weights (see "Image inputs").
        "stability-ai/stable-diffusion-img2img",
        "stability-ai/stable-diffusion-inpainting",
      ],
    );
    versions = results.map((m) => (m["latest_version"] as { id: string }).id);
    assert.equal(versions[0], SERVED_VERSION);
    assert.match(versions[1] as string, /^[0-9a-f]{64}$/);
    assert.equal(results[1]?.["description"], "the fixture model");
    const latest = results[1]?.["latest_version"] as { openapi_schema: { components: { schemas: Schemas } } };
    const schema = latest.openapi_schema.components.schemas;
    assert.equal(schema["Input"]?.properties["width"]?.["default"], 128);
    assert.equal(schema["Input"]?.properties["num_inference_steps"]?.["default"], 2);

    // A prediction for the model still downloading waits for it, then runs with the model's defaults.
    const created = await api(server, "POST", "/v1/models/sdserve-test/tiny/predictions", {
      input: { prompt: "a lighthouse", seed: 5 },
    });
    assert.equal(created.status, 201);
    assert.equal(created.json["version"], versions[1]);
    release();
    const done = await eventually(async () => {
      const r = await api(server, "GET", `/v1/predictions/${created.json["id"]}`);
      return r.json["status"] === "succeeded" ? r.json : undefined;
    }, "the prediction");
    assert.match(done["logs"] as string, / 2\/2 \[/);
    const png = Buffer.from(await (await fetch((done["output"] as string[])[0] as string)).arrayBuffer());
    assert.equal(png.readUInt32BE(16), 128, "width, from the model's defaults");
    assert.match(
      server.output(),
      /Downloading sdserve-test\/tiny-sd1 \([0-9a-f]{12}\) into the Hugging Face cache: [\d.]+ MB in 12 file\(s\)/,
    );
    assert.match(server.output(), /Downloaded unet\/diffusion_pytorch_model\.safetensors \([\d.]+ MB\)/);
    assert.match(server.output(), /Model ready: sdserve-test\/tiny/);
  } finally {
    release();
    await server.stop();
  }
  // The same definitions, the same version ids, after a restart.
  const again = await startSdserve({ env, args });
  try {
    const list = await api(again, "GET", "/v1/models");
    assert.deepEqual(
      (list.json["results"] as Record<string, { id: string }>[]).map((m) => m["latest_version"]?.id),
      versions,
    );
  } finally {
    await again.stop();
  }
});

test("weights that cannot be had: the server starts, and health and predictions say why and what to do", async () => {
  hub.addRepo("sdserve-test/gated", filesOfFolder(modelDir("tiny-sd1")), { gatedToken: "hf_secret" });
  const closed = await LocalHub.start();
  await closed.close();
  const cases: [Record<string, string>, string, RegExp][] = [
    [
      { HF_ENDPOINT: hub.url },
      "sdserve-test/gated",
      /^sdserve-test\/gated is gated: accept its conditions at http:\/\/127\.0\.0\.1:\d+\/sdserve-test\/gated, then set HF_TOKEN to a read token of that account .*; to try everything offline meanwhile, start sdserve with --model tiny-random$/,
    ],
    [
      { HF_ENDPOINT: closed.url },
      REPO,
      /^cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): check the network connection, set HF_ENDPOINT to a reachable mirror, or use weights already on this machine .*--model tiny-random$/,
    ],
    [
      { HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: "1" },
      "sdserve-test/not-pulled",
      /^sdserve-test\/not-pulled@main is not in the Hugging Face cache at .*HF_HUB_OFFLINE=1 is set.*--model tiny-random$/,
    ],
  ];
  for (const [hubEnv, model, why] of cases) {
    const env = { HF_HUB_CACHE: path.join(tmp, "hf-failures"), HF_HOME: tmp, ...hubEnv };
    const server = await startSdserve({ env, args: ["--model", model] });
    try {
      const health = await eventually(async () => {
        const r = await api(server, "GET", "/health-check", undefined, {});
        return r.json["status"] === "SETUP_FAILED" ? r.json : undefined;
      }, "SETUP_FAILED");
      const setup = (health["setup"] as Record<string, Record<string, unknown>>)["stability-ai/stable-diffusion"];
      assert.equal(setup?.["status"], "SETUP_FAILED");
      assert.match(setup?.["error"] as string, why);
      assert.equal((await api(server, "GET", "/v1/models")).status, 200);
      const r = await api(
        server,
        "POST",
        "/v1/predictions",
        { version: VERSION, input: smallInput() },
        { ...authHeaders(), Prefer: "wait" },
      );
      assert.equal(r.json["status"], "failed");
      assert.equal(r.json["error"], `The model could not be loaded: ${setup?.["error"]}`);
      assert.match(server.output(), /stability-ai\/stable-diffusion could not be loaded: /);
    } finally {
      await server.stop();
    }
  }
});
