/**
 * An SDXL LoRA as AUTOMATIC1111 users call it, against a real server: the file in an SDXL
 * models-file entry's lora_dir, called by `<lora:xl-style:0.8>` in a prompt with emphasis through
 * /sdapi/v1/txt2img. The picture is the one a copy of tiny-sdxl with the same LoRA fused into its
 * weights by hand (UNet and both text encoders, W + scale · alpha / rank · up · down) makes for
 * the same prompt without the tag, also through /sdapi.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { decode } from "fast-png";
import type { ModelCopy } from "../helpers/model-copy.js";
import { fusedSdxlCopy, randomSdxlLora, TINY_SDXL, writeLora } from "../helpers/sdxl-lora.js";
import { api, newDataDir, type Sdserve, startSdserve } from "./server.js";

let server: Sdserve;
let fused: ModelCopy;
const BASE = "me/sdxl-with-loras";
const FUSED = "me/sdxl-fused";
const RANK = 4;
const ALPHA = 2;
const SCALE = 0.8;

before(async () => {
  const dir = newDataDir();
  const loraDir = path.join(dir, "loras");
  mkdirSync(loraDir);
  const layers = await randomSdxlLora(31, ["unet", "text_encoder", "text_encoder_2"], RANK, 0.2);
  await writeLora(path.join(loraDir, "xl-style.safetensors"), layers, "kohya-sgm", ALPHA);
  fused = await fusedSdxlCopy([{ layers, s: (SCALE * ALPHA) / RANK }]);
  const file = path.join(dir, "models.json");
  writeFileSync(
    file,
    JSON.stringify({ models: { [BASE]: { weights: TINY_SDXL, lora_dir: loraDir }, [FUSED]: { weights: fused.dir } } }),
  );
  server = await startSdserve({ args: ["--models", file], model: null });
});
after(async () => {
  await server?.stop();
  fused?.remove();
});

async function txt2img(model: string, prompt: string): Promise<{ pixels: Uint8Array; info: Record<string, unknown> }> {
  const r = await api(server, "POST", "/sdapi/v1/txt2img", {
    prompt,
    negative_prompt: "[blurry], dark",
    width: 256,
    height: 256,
    steps: 3,
    cfg_scale: 5,
    seed: 9,
    sampler_name: "Euler",
    override_settings: { sd_model_checkpoint: model },
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const b64 = (r.json["images"] as string[])[0] as string;
  return {
    pixels: decode(new Uint8Array(Buffer.from(b64, "base64"))).data as Uint8Array,
    info: JSON.parse(String(r.json["info"])) as Record<string, unknown>,
  };
}

test("<lora:xl-style:0.8> with emphasis on an SDXL checkpoint through /sdapi: the fused model's picture", {
  timeout: 300_000,
}, async (t) => {
  const tagged = await txt2img(BASE, "a (lighthouse:1.3) at dusk <lora:xl-style:0.8>");
  assert.equal(tagged.info["sd_model_name"], BASE);
  const without = await txt2img(BASE, "a (lighthouse:1.3) at dusk");
  assert.notDeepEqual(tagged.pixels, without.pixels, "the LoRA changes the picture");
  const byHand = await txt2img(FUSED, "a (lighthouse:1.3) at dusk");
  assert.equal(byHand.pixels.length, tagged.pixels.length);
  let worst = 0;
  for (let i = 0; i < byHand.pixels.length; i++)
    worst = Math.max(worst, Math.abs((byHand.pixels[i] as number) - (tagged.pixels[i] as number)));
  // Images equal to 1e-4 before 8-bit rounding (test/engine/sdxl-lora.test.ts) may differ by one level.
  assert.ok(worst <= 1, `PNG values differ by up to ${worst}`);
  t.diagnostic(`PNG values differ from the fused model's by up to ${worst}`);

  const missing = await api(server, "POST", "/sdapi/v1/txt2img", {
    prompt: "a lighthouse <lora:nope:1>",
    width: 256,
    height: 256,
    steps: 1,
    override_settings: { sd_model_checkpoint: BASE },
  });
  assert.equal(missing.status, 422, JSON.stringify(missing.json));
  assert.deepEqual((missing.json["detail"] as { loc: string[] }[])[0]?.loc, ["body", "prompt"]);
});
