/**
 * LCM-LoRA as AUTOMATIC1111 users run it, against a real server: the file dropped in the model's
 * lora_dir, called by `<lora:lcm-lora-sdv1-5:1>` with sampler LCM, 4 steps, CFG scale 1, through
 * /sdapi/v1/txt2img. The server's engine process finds the convolution LoRA in the folder when
 * it loads the model and builds the UNet for it; the picture is the one a model with the same
 * LoRA fused into its weights by hand makes through the Replicate API.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import { modelDir } from "../helpers/fixtures.js";
import { fuseIntoUnet, lcmLoraLayers, writeUnetLora } from "../helpers/lcm-lora.js";
import { copyModel, type ModelCopy } from "../helpers/model-copy.js";
import { api, authHeaders, newDataDir, type Sdserve, startSdserve } from "./server.js";

let server: Sdserve;
let fused: ModelCopy;
const MODEL = "stability-ai/stable-diffusion";
const FUSED = "me/tiny-sd1-lcm-fused";
const LCM = { scheduler: "LCM", num_inference_steps: 4, guidance_scale: 1 };

before(async () => {
  const dir = newDataDir();
  const loraDir = path.join(dir, "loras");
  mkdirSync(loraDir);
  const model = modelDir("tiny-sd1");
  const written = await writeUnetLora(model, path.join(loraDir, "lcm-lora-sdv1-5.safetensors"), {
    layers: await lcmLoraLayers(model),
    rank: 4,
    alpha: 8,
    scale: 1,
  });
  fused = copyModel("tiny-sd1");
  await fuseIntoUnet(fused.dir, written.deltas);
  const file = path.join(dir, "models.json");
  writeFileSync(
    file,
    JSON.stringify({
      models: {
        [MODEL]: { weights: model, lora_dir: loraDir, defaults: LCM },
        [FUSED]: { weights: fused.dir, defaults: LCM },
      },
    }),
  );
  server = await startSdserve({ args: ["--models", file], model: null });
});
after(async () => {
  await server?.stop();
  fused?.remove();
});

const SETTINGS = { width: 128, height: 128, seed: 7 };

async function sdapiPixels(prompt: string): Promise<{ pixels: Uint8Array; info: string }> {
  const r = await api(server, "POST", "/sdapi/v1/txt2img", {
    prompt,
    negative_prompt: "",
    steps: 4,
    cfg_scale: 1,
    sampler_name: "LCM",
    ...SETTINGS,
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const b64 = (r.json["images"] as string[])[0] as string;
  return {
    pixels: decode(new Uint8Array(Buffer.from(b64, "base64"))).data as Uint8Array,
    info: String(r.json["info"]),
  };
}

test("<lora:lcm-lora-sdv1-5:1> with sampler LCM, 4 steps, CFG 1 through /sdapi: the fused model's picture", {
  timeout: 180_000,
}, async () => {
  const withLora = await sdapiPixels("red cube <lora:lcm-lora-sdv1-5:1>");
  assert.match(withLora.info, /Steps: 4, Sampler: LCM, [^"]*CFG scale: 1\.0,/);
  const without = await sdapiPixels("red cube");
  assert.notDeepEqual(withLora.pixels, without.pixels, "the LoRA changes the picture");

  const r = await api(
    server,
    "POST",
    `/v1/models/${FUSED}/predictions`,
    { input: { prompt: "red cube", negative_prompt: "", ...LCM, ...SETTINGS } },
    { ...authHeaders(), Prefer: "wait" },
  );
  assert.equal(r.json["status"], "succeeded", JSON.stringify(r.json));
  const res = await fetch((r.json["output"] as string[])[0] as string, { headers: authHeaders() });
  const fused = decode(new Uint8Array(await res.arrayBuffer())).data as Uint8Array;
  assert.equal(fused.length, withLora.pixels.length);
  let worst = 0;
  for (let i = 0; i < fused.length; i++)
    worst = Math.max(worst, Math.abs((fused[i] as number) - (withLora.pixels[i] as number)));
  // Images equal to 1e-4 before 8-bit rounding (test/engine/lora.test.ts) may differ by one level.
  assert.ok(worst <= 1, `PNG values differ by up to ${worst}`);
});
