/**
 * `sdserve models list | pull | verify`, and hub ids in `sdserve generate`, as real processes
 * against a local hub reached through HF_ENDPOINT.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { decode } from "fast-png";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { modelCatalog } from "../../src/model-catalog.js";
import { GOLDEN_FAMILY, modelDir, REPO_ROOT, SHARED } from "../helpers/fixtures.js";
import { filesOfFolder, LocalHub } from "../helpers/hub-server.js";

const run = promisify(execFile);
const REPO = "sdserve-test/tiny-sd1";
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-cli-models-"));
const cacheDir = path.join(tmp, "hf");
let hub: LocalHub;

before(async () => {
  hub = await LocalHub.start();
  hub.addRepo(REPO, filesOfFolder(modelDir("tiny-sd1")));
});
after(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

function sdserve(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_HOME: tmp, ...env },
  });
}

async function fails(args: string[], env: Record<string, string> = {}) {
  try {
    await sdserve(args, env);
  } catch (err) {
    return err as { code: number; stdout: string; stderr: string };
  }
  assert.fail(`sdserve ${args.join(" ")} succeeded`);
}

test("pull prints progress and the snapshot folder; a second pull downloads nothing", async () => {
  const first = await sdserve(["models", "pull", REPO]);
  const commit = hub.repos.get(REPO)!.commit;
  assert.equal(first.stdout.trim(), path.join(cacheDir, "models--sdserve-test--tiny-sd1", "snapshots", commit));
  assert.match(
    first.stderr,
    new RegExp(`${REPO} at main \\(${commit.slice(0, 12)}\\): [\\d.]+ MB to download in 12 file\\(s\\)`),
  );
  // Not a terminal: one plain line per finished file, with its size and rate.
  assert.match(
    first.stderr,
    /unet\/diffusion_pytorch_model\.safetensors {2}█{20} {2}[\d.]+ MB \/ [\d.]+ MB( {2}[\d.]+ [kMG]?B\/s)? {2}in [\d.]+s\n/,
  );
  assert.match(first.stderr, /downloaded 12 file\(s\)/);

  hub.reset();
  const second = await sdserve(["models", "pull", REPO]);
  assert.match(second.stderr, /nothing to download, all 12 files are in the cache/);
  assert.deepEqual(hub.downloads(), []);
});

test("list shows the cached pipelines; verify checks them and removes a corrupted file", async () => {
  await sdserve(["models", "pull", REPO]);
  const commit = hub.repos.get(REPO)!.commit;
  const list = await sdserve(["models", "list"]);
  assert.match(list.stdout, new RegExp(`${REPO} +main ${commit.slice(0, 12)} +[\\d.]+ MB {2}ready`));

  const ok = await sdserve(["models", "verify", REPO], { HF_HUB_OFFLINE: "1" });
  assert.match(ok.stderr, /all 12 files match their hashes/);

  const etag = hub.repos.get(REPO)!.files.get("vae/diffusion_pytorch_model.safetensors")!.etag;
  const blob = path.join(cacheDir, "models--sdserve-test--tiny-sd1", "blobs", etag);
  const bytes = readFileSync(blob);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0x10;
  writeFileSync(blob, bytes);
  const bad = await fails(["models", "verify", REPO], { HF_HUB_OFFLINE: "1" });
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /CORRUPT, removed +vae\/diffusion_pytorch_model\.safetensors/);
  assert.match(bad.stderr, /run "sdserve models pull sdserve-test\/tiny-sd1" to download them again/);
  const incomplete = await sdserve(["models", "list"]);
  assert.match(incomplete.stdout, /incomplete/);
  await sdserve(["models", "pull", REPO]);
});

test("generate takes a hub id, and offline it makes the same image as the fixture folder", async () => {
  await sdserve(["models", "pull", REPO]);
  const common = ["--steps", "2", "--width", "64", "--height", "64", "--seed", "3", "--threads", "1"];
  const fromHub = path.join(tmp, "hub.png");
  const fromFolder = path.join(tmp, "folder.png");
  hub.reset();
  await sdserve(["generate", "a red fox", "--model", REPO, "--out", fromHub, ...common], { HF_HUB_OFFLINE: "1" });
  assert.deepEqual(hub.requests, []);
  await sdserve(["generate", "a red fox", "--model", modelDir("tiny-sd1"), "--out", fromFolder, ...common]);
  const a = decode(readFileSync(fromHub));
  const b = decode(readFileSync(fromFolder));
  assert.deepEqual(a.data, b.data);
  assert.match(String(a.text["parameters"]), /Model: sdserve-test\/tiny-sd1$/);
});

test("errors are one line that says what to do", async () => {
  const offline = await fails(["models", "pull", "sdserve-test/absent"], { HF_HUB_OFFLINE: "1" });
  assert.equal(offline.code, 2);
  assert.match(
    offline.stderr,
    /^sdserve: sdserve-test\/absent@main is not in the Hugging Face cache at .*HF_HUB_OFFLINE=1 is set.*\n$/,
  );
  const missing = await fails(["generate", "x", "--model", "sdserve-test/absent"]);
  assert.match(
    missing.stderr,
    /sdserve-test\/absent was not found on http:.*\(and there is no local folder sdserve-test\/absent\)/,
  );
  const usage = await fails(["models", "pull", "./not-an-id"]);
  assert.match(usage.stderr, /is not a Hugging Face model id/);
});

test("served models: list shows them with their versions and weights; pull takes a served model's name", async () => {
  const file = path.join(tmp, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      models: {
        "stability-ai/stable-diffusion": { weights: "tiny-random" },
        "acme/tiny": { weights: REPO, variant: "fp16" },
      },
    }),
  );
  const env = { SDSERVE_MODELS: file, HF_HUB_CACHE: path.join(tmp, "hf-served") };
  const before = await sdserve(["models", "list"], env);
  const tinyVersion = modelCatalog({ modelsFile: file })[1]!.version;
  assert.match(before.stdout, /stability-ai\/stable-diffusion +[0-9a-f]{12} {2}tiny-random {2}made on the spot/);
  assert.match(
    before.stdout,
    new RegExp(`acme/tiny +${tinyVersion.slice(0, 12)} {2}${REPO} \\(fp16\\) {2}not downloaded yet`),
  );
  hub.reset();
  const pulled = await sdserve(["models", "pull", "acme/tiny"], env);
  assert.match(pulled.stdout, /models--sdserve-test--tiny-sd1\/snapshots\/[0-9a-f]{40}\n$/);
  assert.equal(hub.downloads().length, 12);
  const after = await sdserve(["models", "list"], env);
  assert.match(after.stdout, /acme\/tiny .* in the cache/);
  // Without an id: every served model whose weights are on the hub (here all in the cache already).
  const all = await sdserve(["models", "pull"], env);
  assert.match(all.stderr, /acme\/tiny: sdserve-test\/tiny-sd1\n.*nothing to download/s);
  const local = await fails(["models", "pull", "stability-ai/stable-diffusion"], env);
  assert.match(local.stderr, /is served from tiny-random, not from the Hugging Face Hub/);
});

test("pull without an id also fetches an SDXL model's refiner from the hub", async () => {
  const file = path.join(tmp, "models-sdxl.json");
  const base = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
  writeFileSync(file, JSON.stringify({ models: { "stability-ai/sdxl": { weights: base, refiner: REPO } } }));
  const env = { SDSERVE_MODELS: file, HF_HUB_CACHE: path.join(tmp, "hf-refiner") };
  // The base is a local folder: only the refiner is on the hub, and it is fetched.
  hub.reset();
  const all = await sdserve(["models", "pull"], env);
  assert.match(all.stderr, /stability-ai\/sdxl \(refiner\): sdserve-test\/tiny-sd1\n/);
  assert.equal(hub.downloads().length, 12);
});

test("models list: single-file checkpoints with their family, each model's engine fields, LoRAs and embeddings found", async () => {
  const dir = path.join(tmp, "byom");
  mkdirSync(path.join(dir, "loras", "styles"), { recursive: true });
  mkdirSync(path.join(dir, "emb"));
  const fixtures = path.join(SHARED, "fixtures/golden-family");
  copyFileSync(
    path.join(fixtures, "lora/tiny-sd1_lora_kohya.safetensors"),
    path.join(dir, "loras/styles/grain.safetensors"),
  );
  await writeSafetensors(path.join(dir, "emb", "bad-hands.safetensors"), [
    { name: "emb_params", dtype: "F32", shape: [2, 32], data: new Float32Array(64) },
  ]);
  writeFileSync(path.join(dir, "emb", "broken.safetensors"), "not safetensors");
  await writeSafetensors(path.join(dir, "emb", "xl-style.safetensors"), [
    { name: "clip_g", dtype: "F32", shape: [3, 1280], data: new Float32Array(3 * 1280) },
    { name: "clip_l", dtype: "F32", shape: [3, 768], data: new Float32Array(3 * 768) },
  ]);
  // An SDXL checkpoint's header (models list reads nothing else).
  const bias = (name: string) => ({ name, dtype: "F16" as const, shape: [4], data: new Uint16Array(4) });
  await writeSafetensors(path.join(dir, "xl.safetensors"), [
    bias("model.diffusion_model.out.2.bias"),
    bias("conditioner.embedders.0.transformer.text_model.final_layer_norm.bias"),
    bias("conditioner.embedders.1.model.ln_final.bias"),
  ]);
  await writeSafetensors(path.join(dir, "xl-refiner.safetensors"), [
    bias("model.diffusion_model.out.2.bias"),
    bias("conditioner.embedders.0.model.ln_final.bias"),
  ]);
  const models = path.join(dir, "models.json");
  writeFileSync(
    models,
    JSON.stringify({
      models: {
        "me/single": {
          weights: path.join(fixtures, "single_file/tiny-sd2v.safetensors"),
          prompt_syntax: "a1111",
          clip_skip: 2,
          lora_dir: "./loras",
          embeddings_dir: "./emb",
          loras: [{ path: "./loras/styles/grain.safetensors", scale: 0.5 }],
        },
        "me/xl": { weights: "./xl.safetensors", refiner: "./xl-refiner.safetensors" },
      },
    }),
  );
  const { stdout } = await sdserve([
    "models",
    "list",
    "--models",
    models,
    "--lora-dir",
    path.join(dir, "loras"),
    "--embeddings-dir",
    path.join(dir, "emb"),
  ]);
  assert.match(stdout, /me\/single .*tiny-sd2v\.safetensors {2}single-file checkpoint, SD 2\.x/);
  assert.match(stdout, /me\/xl .*xl\.safetensors {2}single-file checkpoint, SDXL, /);
  assert.match(stdout, /refiner: .*xl-refiner\.safetensors {2}single-file checkpoint, SDXL refiner, /);
  assert.match(stdout, /LoRA: .*grain\.safetensors at 0\.5/);
  assert.match(stdout, /embeddings: .*emb: bad-hands, xl-style \(1 unusable file\(s\)\)/);
  assert.match(stdout, /xl-style {2}3 vector\(s\) of width 768 \(clip_l\) \+ 1280 \(clip_g\), SDXL/);
  assert.match(stdout, /prompt syntax: a1111, clip skip 2/);
  assert.match(stdout, /LoRA folder: .*loras \(grain\)/);
  assert.match(stdout, /LoRAs in .*\n {2}grain +styles\/grain\.safetensors\n/);
  assert.match(stdout, /bad-hands {2}2 vector\(s\) of width 32/);
  assert.match(stdout, /broken {2}unusable: /);
});

test("models list shows an SDXL model's fixed LoRAs and replicate_weights turned off", async () => {
  const dir = mkdtempSync(path.join(tmp, "xl-"));
  const models = path.join(dir, "models.json");
  writeFileSync(
    models,
    JSON.stringify({
      models: {
        "stability-ai/sdxl": {
          weights: path.join(GOLDEN_FAMILY, "sdxl/tiny-sdxl"),
          loras: [{ path: "./style.safetensors", scale: 0.7 }],
          replicate_weights: false,
        },
      },
    }),
  );
  const { stdout } = await sdserve(["models", "list", "--models", models]);
  assert.match(stdout, /LoRA: .*style\.safetensors at 0\.7/);
  assert.match(stdout, /replicate_weights: off \(no LoRAs per request\)/);
});
