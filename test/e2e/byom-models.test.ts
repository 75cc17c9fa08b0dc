/**
 * Bring-your-own-model files through the server's models file: a truncated checkpoint, a file of
 * no known model family, a LoRA whose shapes do not fit the model, a LoRA with keys the model
 * does not have and an embedding of the wrong width each fail that model's
 * setup with the file named, in /health-check and in its predictions' error, while the server
 * and its other models go on (SDXL's too: a truncated SDXL checkpoint, an SDXL embedding of the
 * wrong width); a model with "prompt_syntax": "a1111" and a "lora_dir" takes `<lora:NAME:SCALE>`
 * tags; an SDXL single-file checkpoint with an SDXL embedding is served as SDXL.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, modelDir } from "../helpers/fixtures.js";
import { writeSdxlCheckpoint } from "../helpers/ldm-layout.js";
import { api, authHeaders, eventually, type Sdserve, startSdserve } from "./server.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-byom-"));
const CHECKPOINT = path.join(GOLDEN_FAMILY, "single_file", "tiny-sd1.safetensors");
const KOHYA = path.join(GOLDEN_FAMILY, "lora", "tiny-sd1_lora_kohya.safetensors");
const files = {
  truncated: path.join(tmp, "truncated.safetensors"),
  badLora: path.join(tmp, "misfit-lora.safetensors"),
  unknownKeys: path.join(tmp, "unknown-keys-lora.safetensors"),
  embeddings: path.join(tmp, "embeddings"),
  loraDir: path.join(tmp, "loras"),
  xlFile: path.join(tmp, "tiny-sdxl.safetensors"),
  xlTruncated: path.join(tmp, "truncated-sdxl.safetensors"),
  xlEmbeddings: path.join(tmp, "xl-embeddings"),
  xlWideEmbeddings: path.join(tmp, "xl-wide-embeddings"),
};
const XL_FOLDER = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

let server: Sdserve;
before(async () => {
  const bytes = readFileSync(CHECKPOINT);
  writeFileSync(files.truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  // The kohya fixture with one down projection a column wider than its layer's input.
  const st = await readSafetensors(KOHYA);
  const tensors = [];
  let widened = false;
  for (const t of st.tensors.values()) {
    let data = await readTensor(t);
    let shape = t.shape;
    if (!widened && t.name.endsWith(".lora_down.weight") && t.shape.length === 2) {
      shape = [t.shape[0] as number, (t.shape[1] as number) + 3];
      data = new Float32Array((shape[0] as number) * (shape[1] as number));
      widened = true;
    }
    tensors.push({ name: t.name, dtype: "F32" as const, shape, data });
  }
  await writeSafetensors(files.badLora, tensors);
  const extra = (name: string, shape: number[]) => ({
    name,
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, d) => a * d, 1)),
  });
  const original = [];
  for (const t of st.tensors.values()) {
    original.push({ name: t.name, dtype: "F32" as const, shape: t.shape, data: await readTensor(t) });
  }
  await writeSafetensors(files.unknownKeys, [
    ...original,
    extra("lora_unet_no_such_block_proj.lora_down.weight", [4, 8]),
    extra("lora_unet_no_such_block_proj.lora_up.weight", [8, 4]),
  ]);
  mkdirSync(files.embeddings);
  await writeSafetensors(path.join(files.embeddings, "narrow.safetensors"), [
    { name: "emb_params", dtype: "F32", shape: [1, 16], data: new Float32Array(16) },
  ]);
  mkdirSync(files.loraDir);
  copyFileSync(KOHYA, path.join(files.loraDir, "kohya.safetensors"));
  await writeSdxlCheckpoint(XL_FOLDER, files.xlFile);
  const xlBytes = readFileSync(files.xlFile);
  writeFileSync(files.xlTruncated, xlBytes.subarray(0, Math.floor(xlBytes.length / 2)));
  const pair = (l: number, g: number) => [
    { name: "clip_l", dtype: "F32" as const, shape: [1, l], data: new Float32Array(l).fill(0.01) },
    { name: "clip_g", dtype: "F32" as const, shape: [1, g], data: new Float32Array(g).fill(0.01) },
  ];
  mkdirSync(files.xlEmbeddings);
  await writeSafetensors(path.join(files.xlEmbeddings, "xlstyle.safetensors"), pair(16, 32));
  mkdirSync(files.xlWideEmbeddings);
  await writeSafetensors(path.join(files.xlWideEmbeddings, "wide.safetensors"), pair(16, 1280));
  const models = path.join(tmp, "models.json");
  writeFileSync(
    models,
    JSON.stringify({
      models: {
        "me/truncated": { weights: files.truncated, config: modelDir("tiny-sd1") },
        "me/unknown-family": { weights: KOHYA },
        "me/unknown-keys-lora": { weights: modelDir("tiny-sd1"), loras: [{ path: files.unknownKeys, scale: 1 }] },
        "me/misfit-lora": { weights: modelDir("tiny-sd1"), loras: [{ path: files.badLora, scale: 1 }] },
        "me/narrow-embedding": { weights: modelDir("tiny-sd1"), embeddings_dir: files.embeddings },
        "me/a1111": { weights: modelDir("tiny-sd1"), prompt_syntax: "a1111", lora_dir: "./loras", clip_skip: 2 },
        "me/xl-file": { weights: files.xlFile, config: XL_FOLDER, embeddings_dir: files.xlEmbeddings },
        "me/xl-truncated": { weights: files.xlTruncated, config: XL_FOLDER },
        "me/xl-wide-embedding": { weights: XL_FOLDER, embeddings_dir: files.xlWideEmbeddings },
      },
    }),
  );
  server = await startSdserve({ args: ["--models", models], env: { SDSERVE_OPTIMIZED_CACHE: "off" } });
});
after(async () => {
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const predict = (model: string, input: Record<string, unknown>) =>
  api(server, "POST", `/v1/models/${model}/predictions`, { input }, { ...authHeaders(), Prefer: "wait" });

describe("bad files in a models file", () => {
  for (const [model, file, what] of [
    ["me/truncated", () => files.truncated, /truncat|shorter|bytes|end of the file/i],
    ["me/misfit-lora", () => files.badLora, /shape|does not fit|expected/i],
    ["me/unknown-family", () => KOHYA, /is a LoRA, not a model checkpoint/],
    ["me/unknown-keys-lora", () => files.unknownKeys, /no_such_block/],
    ["me/narrow-embedding", () => path.join(files.embeddings, "narrow.safetensors"), /16 wide.*takes 32/],
    ["me/xl-truncated", () => files.xlTruncated, /truncat|shorter|bytes|end of the file/i],
    [
      "me/xl-wide-embedding",
      () => path.join(files.xlWideEmbeddings, "wide.safetensors"),
      /clip_g vectors 1280 wide.*takes 32/,
    ],
  ] as const) {
    test(`${model}: SETUP_FAILED naming the file, and its predictions fail saying so`, async () => {
      const setup = await eventually(async () => {
        const r = await api(server, "GET", "/health-check", undefined, {});
        const s = (r.json["setup"] as Record<string, { status: string; error?: string }>)[model];
        return s?.status === "SETUP_FAILED" ? s : undefined;
      }, `${model} to fail its setup`);
      assert.ok(setup.error?.includes(file()), setup.error);
      assert.match(setup.error as string, what);
      const r = await predict(model, { prompt: "x", width: 128, height: 128, num_inference_steps: 1 });
      assert.equal(r.json["status"], "failed");
      assert.ok((r.json["error"] as string).includes(file()), r.json["error"] as string);
    });
  }

  test("the other models work: a1111 prompts with <lora:…> tags from lora_dir", async () => {
    const r = await predict("me/a1111", {
      prompt: "a (red:1.3) cube <lora:kohya:0.5>",
      width: 128,
      height: 128,
      num_inference_steps: 2,
      seed: 3,
    });
    assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json["error"]));
    const missing = await predict("me/a1111", { prompt: "a cube <lora:nobody:1>", width: 128, height: 128 });
    assert.equal(missing.json["status"], "failed");
    assert.match(missing.json["error"] as string, /LoRA "nobody" not found/);
    const plain = await predict("stability-ai/stable-diffusion", {
      prompt: "x",
      width: 128,
      height: 128,
      num_inference_steps: 1,
    });
    assert.equal(plain.json["status"], "succeeded");
  });

  test("an SDXL single-file checkpoint is served with stability-ai/sdxl's schema, its embedding called by name", async () => {
    const model = await api(server, "GET", "/v1/models/me/xl-file", undefined, authHeaders());
    const props = (model.json["latest_version"] as { openapi_schema: Record<string, unknown> }).openapi_schema;
    assert.match(JSON.stringify(props), /expert_ensemble_refiner/);
    const r = await predict("me/xl-file", {
      prompt: "a lion, xlstyle",
      width: 64,
      height: 64,
      num_inference_steps: 2,
      seed: 3,
    });
    assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json["error"]));
  });
});
