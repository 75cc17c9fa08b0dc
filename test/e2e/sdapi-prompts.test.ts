/**
 * Prompts sent through /sdapi/v1 read AUTOMATIC1111's syntax (emphasis, <lora:…> tags from the
 * model's lora_dir), while the same model's Replicate predictions keep diffusers' plain reading;
 * /sdapi/v1/loras and /embeddings list the model's folders in A1111's shapes. Against a real
 * server, on the golden tiny-sd1 weights with the golden LoRA fixture.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, modelDir } from "../helpers/fixtures.js";
import { api, authHeaders, newDataDir, type Sdserve, startSdserve } from "./server.js";

let server: Sdserve;
let loraDir: string;
const MODEL = "stability-ai/stable-diffusion";

before(async () => {
  const dir = newDataDir();
  loraDir = path.join(dir, "loras");
  const embeddings = path.join(dir, "embeddings");
  mkdirSync(path.join(loraDir, "styles"), { recursive: true });
  mkdirSync(embeddings);
  copyFileSync(
    path.join(GOLDEN_FAMILY, "lora", "tiny-sd1_lora_kohya.safetensors"),
    path.join(loraDir, "styles", "kohya.safetensors"),
  );
  // tiny-sd1's text encoder is 32 wide: an embedding of two vectors.
  await writeSafetensors(path.join(embeddings, "shiny.safetensors"), [
    { name: "emb_params", dtype: "F32", shape: [2, 32], data: new Float32Array(64).fill(0.01) },
  ]);
  const file = path.join(dir, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      models: { [MODEL]: { weights: modelDir("tiny-sd1"), lora_dir: loraDir, embeddings_dir: embeddings } },
    }),
  );
  server = await startSdserve({ args: ["--models", file], model: null });
});
after(async () => {
  await server?.stop();
});

const SETTINGS = { width: 128, height: 128, seed: 7 };

async function sdapi(prompt: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return api(server, "POST", "/sdapi/v1/txt2img", {
    prompt,
    negative_prompt: "",
    steps: 2,
    cfg_scale: 7,
    sampler_name: "Euler a",
    ...SETTINGS,
  });
}

/** The pixels of a /sdapi txt2img's first image. */
async function sdapiPixels(prompt: string): Promise<Uint8Array> {
  const r = await sdapi(prompt);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const b64 = (r.json["images"] as string[])[0] as string;
  return decode(new Uint8Array(Buffer.from(b64, "base64"))).data as Uint8Array;
}

/** The pixels of the same request made as a Replicate prediction of the same model. */
async function replicatePixels(prompt: string): Promise<Uint8Array> {
  const r = await api(
    server,
    "POST",
    `/v1/models/${MODEL}/predictions`,
    {
      input: {
        prompt,
        negative_prompt: "",
        num_inference_steps: 2,
        guidance_scale: 7,
        scheduler: "K_EULER_ANCESTRAL",
        ...SETTINGS,
      },
    },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json));
  const res = await fetch((r.json["output"] as string[])[0] as string, { headers: authHeaders() });
  assert.equal(res.status, 200);
  return decode(new Uint8Array(await res.arrayBuffer())).data as Uint8Array;
}

test("/sdapi reads emphasis; the same model's Replicate predictions read the prompt plainly", async () => {
  const weighted = await sdapiPixels("(red:1.5) cube");
  const plain = await sdapiPixels("red cube");
  assert.notDeepEqual(weighted, plain, "emphasis changes the image");
  // Without any A1111 syntax both readings agree, so the two APIs make the same picture ...
  assert.deepEqual(await replicatePixels("red cube"), plain);
  // ... and with it they differ: Replicate keeps "(red:1.5)" as literal text.
  const literal = await replicatePixels("(red:1.5) cube");
  assert.notDeepEqual(literal, weighted);
  assert.notDeepEqual(literal, plain);
});

test("/sdapi takes <lora:NAME:SCALE> from the model's lora_dir; an unknown LoRA is a clear error", async () => {
  const base = await sdapiPixels("red cube");
  const withLora = await sdapiPixels("red cube <lora:kohya:0.8>");
  assert.notDeepEqual(withLora, base, "the LoRA changes the image");
  const missing = await sdapi("red cube <lora:nobody:0.8>");
  assert.equal(missing.status, 422, JSON.stringify(missing.json));
  assert.match(JSON.stringify(missing.json), /LoRA \\"nobody\\" not found/);
  // Replicate predictions read a tag as text: no LoRA is looked up.
  const r = await api(
    server,
    "POST",
    `/v1/models/${MODEL}/predictions`,
    { input: { prompt: "red cube <lora:nobody:0.8>", num_inference_steps: 1, ...SETTINGS } },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json["error"]));
});

test("/sdapi/v1/loras and /embeddings list the model's folders in A1111's shapes", async () => {
  const loras = await api(server, "GET", "/sdapi/v1/loras");
  assert.equal(loras.status, 200);
  assert.deepEqual(loras.json, [
    { name: "kohya", alias: "kohya", path: path.join(loraDir, "styles", "kohya.safetensors"), metadata: {} },
  ]);
  const embeddings = await api(server, "GET", "/sdapi/v1/embeddings");
  assert.equal(embeddings.status, 200);
  assert.deepEqual(embeddings.json, {
    loaded: { shiny: { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: 32, vectors: 2 } },
    skipped: {},
  });
});
