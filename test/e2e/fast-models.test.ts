/**
 * Few-step models from a models file, through every API with their native defaults: a tiny
 * LCM-style model (time_cond_proj_dim, LCMScheduler) and a tiny Turbo-style one (trailing Euler)
 * get them in their input schema (the version's openapi_schema, /openapi.json, the playground
 * form), so a bare prompt through the real replicate and openai clients runs LCM's 4 steps at
 * guidance 8.5 and Turbo's single step without guidance; the PNG's parameters say what ran. An
 * SD model with an LCM-LoRA (a models-file entry with "loras" and LCM's defaults) makes the
 * picture of the same LoRA fused into the weights by hand. Their img2img models keep their own
 * steps (LCM img2img runs all 4; Turbo's 2 at strength 0.5), and the playground, in chromium,
 * runs each with the form as it starts.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { encode } from "fast-png";
import OpenAI from "openai";
import Replicate from "replicate";
import { decodeImage } from "../../src/engine/index.js";
import { ensureTinyRandomModel } from "../../src/engine/tiny-random.js";
import { SCHEDULERS } from "../../src/model-catalog.js";
import { fuseIntoUnet, lcmLoraLayers, writeUnetLora } from "../helpers/lcm-lora.js";
import { writeTinyFewStepModel } from "../helpers/tiny-few-step.js";
import { launchChromium, noChromium } from "./browser.js";
import { api, type Sdserve, startSdserve, TOKEN } from "./server.js";

type Schema = Record<string, unknown> & { properties?: Record<string, Record<string, unknown>>; enum?: unknown[] };
type Schemas = Record<string, Schema>;

const scratch = mkdtempSync(path.join(os.tmpdir(), "sdserve-fast-models-"));
let server: Sdserve;
let replicate: Replicate;
let openai: OpenAI;

before(async () => {
  // An LCM-LoRA-shaped file for tiny-random, and the same LoRA fused into a copy by hand.
  const tiny = await ensureTinyRandomModel(scratch);
  const lora = path.join(scratch, "lcm-lora.safetensors");
  const written = await writeUnetLora(tiny, lora, { layers: await lcmLoraLayers(tiny), rank: 4, alpha: 8, scale: 1 });
  const fused = path.join(scratch, "fused");
  cpSync(tiny, fused, { recursive: true });
  await fuseIntoUnet(fused, written.deltas);
  // LCM-LoRA's usage as a models-file entry: the LoRA on every prediction, LCM's 4 steps, no guidance.
  const lcmDefaults = { scheduler: "LCM", num_inference_steps: 4, guidance_scale: 1 };
  const models = {
    models: {
      "me/tiny-lcm": { weights: await writeTinyFewStepModel(path.join(scratch, "lcm"), "lcm", scratch) },
      "me/tiny-lcm-img2img": { weights: path.join(scratch, "lcm"), schema: "img2img" },
      "me/tiny-turbo-img2img": { weights: path.join(scratch, "turbo"), schema: "img2img" },
      "me/tiny-turbo": { weights: await writeTinyFewStepModel(path.join(scratch, "turbo"), "turbo", scratch) },
      "me/tiny-lcm-lora": { weights: tiny, loras: [{ path: lora, scale: 1 }], defaults: lcmDefaults },
      "me/tiny-lcm-fused": { weights: fused, defaults: lcmDefaults },
    },
  };
  const file = path.join(scratch, "models.json");
  writeFileSync(file, JSON.stringify(models));
  server = await startSdserve({ model: null, args: ["--models", file] });
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
  openai = new OpenAI({ apiKey: TOKEN, baseURL: `${server.url}/v1`, maxRetries: 0 });
});
after(async () => {
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

async function schemasOf(model: string): Promise<Schemas> {
  const res = await api(server, "GET", `/v1/models/${model}`);
  assert.equal(res.status, 200);
  const latest = res.json["latest_version"] as { openapi_schema: { components: { schemas: Schemas } } };
  return latest.openapi_schema.components.schemas;
}

/** The AUTOMATIC1111 "parameters" text chunk of a PNG. */
function parametersOf(png: Buffer): string {
  const at = png.indexOf("tEXtparameters\0");
  assert.ok(at > 0, "the PNG has a parameters chunk");
  const length = png.readUInt32BE(at - 4);
  return png.subarray(at + 15, at + 4 + length).toString("latin1");
}

async function download(url: string): Promise<Buffer> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

test("the LCM model's schema has its native defaults and offers LCM; the Turbo model's, one step without guidance", async () => {
  const lcm = await schemasOf("me/tiny-lcm");
  const lcmInput = lcm["Input"]?.properties ?? {};
  assert.equal(lcmInput["num_inference_steps"]?.["default"], 4);
  assert.equal(lcmInput["guidance_scale"]?.["default"], 8.5);
  assert.equal(lcmInput["guidance_scale"]?.["minimum"], 0);
  assert.equal(lcmInput["scheduler"]?.["default"], "LCM");
  assert.deepEqual(lcm["scheduler"]?.enum, [...SCHEDULERS, "LCM"]);

  const turbo = await schemasOf("me/tiny-turbo");
  const turboInput = turbo["Input"]?.properties ?? {};
  assert.equal(turboInput["num_inference_steps"]?.["default"], 1);
  assert.equal(turboInput["guidance_scale"]?.["default"], 1);
  assert.equal(turboInput["guidance_scale"]?.["minimum"], 0);
  assert.equal(turboInput["scheduler"]?.["default"], "K_EULER");
  assert.deepEqual(turbo["scheduler"]?.enum, [...SCHEDULERS]);

  // /openapi.json holds each model's schemas as <owner>.<name>.<Schema>.
  const doc = await api(server, "GET", "/openapi.json");
  const docSchemas = (doc.json["components"] as { schemas: Schemas }).schemas;
  assert.equal(docSchemas["me.tiny-lcm.Input"]?.properties?.["scheduler"]?.["default"], "LCM");
  assert.deepEqual(docSchemas["me.tiny-lcm.scheduler"]?.enum, [...SCHEDULERS, "LCM"]);
  assert.equal(docSchemas["me.tiny-turbo.Input"]?.properties?.["num_inference_steps"]?.["default"], 1);
  assert.deepEqual(docSchemas["me.tiny-turbo.scheduler"]?.enum, [...SCHEDULERS]);

  // The playground's form starts from the same defaults.
  const page = await (await fetch(`${server.url}/?model=me/tiny-lcm`)).text();
  assert.match(page, /name="num_inference_steps"[^>]*value="4"/);
  assert.match(page, /<option value="LCM" selected>/);
});

test("replicate.run with a bare prompt: LCM runs 4 LCM steps at guidance 8.5", { timeout: 120_000 }, async () => {
  const output = (await replicate.run("me/tiny-lcm", {
    input: { prompt: "a red bicycle", width: 128, height: 128, seed: 3 },
  })) as unknown[];
  assert.equal(output.length, 1);
  const text = parametersOf(await download(String(output[0])));
  assert.match(text, /Steps: 4, Sampler: LCM, CFG scale: 8.5, Seed: 3, Size: 128x128/);
});

test("replicate.run on the Turbo model: one step; guidance 0 and 1 both skip the unconditional batch", {
  timeout: 120_000,
}, async () => {
  const run = async (extra: Record<string, unknown>) => {
    const output = (await replicate.run("me/tiny-turbo", {
      input: { prompt: "a red bicycle", width: 128, height: 128, seed: 9, ...extra },
    })) as unknown[];
    return download(String(output[0]));
  };
  const plain = await run({});
  assert.match(parametersOf(plain), /Steps: 1, Sampler: K_EULER, CFG scale: 1, Seed: 9/);
  const zero = await run({ guidance_scale: 0 });
  assert.match(parametersOf(zero), /CFG scale: 0,/);
  // Without guidance the prompt alone is denoised, so 0 and 1 make the same picture; 3 does not.
  const guided = await run({ guidance_scale: 3 });
  const [a, b, c] = await Promise.all([plain, zero, guided].map((png) => decodeImage(png)));
  assert.deepEqual(a?.data, b?.data);
  assert.notDeepEqual(a?.data, c?.data);
  // Below the minimum is still refused.
  await assert.rejects(run({ guidance_scale: -1 }), /guidance_scale/);
});

test("OpenAI's images.generate on the LCM model uses its native steps, scheduler and guidance", {
  timeout: 120_000,
}, async () => {
  const res = await openai.images.generate({ prompt: "a red bicycle", size: "128x128", response_format: "b64_json" });
  const png = Buffer.from(res.data?.[0]?.b64_json ?? "", "base64");
  assert.match(parametersOf(png), /Steps: 4, Sampler: LCM, CFG scale: 8.5,/);
});

test("OpenAI's images.generate on the Turbo model: one K_EULER step without guidance", {
  timeout: 120_000,
}, async () => {
  const res = await openai.images.generate({
    model: "me/tiny-turbo",
    prompt: "a red bicycle",
    size: "128x128",
    response_format: "b64_json",
  });
  const png = Buffer.from(res.data?.[0]?.b64_json ?? "", "base64");
  assert.match(parametersOf(png), /Steps: 1, Sampler: K_EULER, CFG scale: 1,/);
});

test("the playground's form starts the Turbo model at one K_EULER step without guidance", async () => {
  const page = await (await fetch(`${server.url}/?model=me/tiny-turbo`)).text();
  assert.match(page, /name="num_inference_steps"[^>]*value="1"/);
  assert.match(page, /name="guidance_scale"[^>]*value="1"/);
  assert.match(page, /<option value="K_EULER" selected>/);
  assert.doesNotMatch(page, /<option value="LCM"/);
});

test("an LCM-LoRA models-file entry: LCM's defaults in its schema and form, and the fused model's picture through both clients", {
  timeout: 180_000,
}, async () => {
  const input = (await schemasOf("me/tiny-lcm-lora"))["Input"]?.properties ?? {};
  assert.equal(input["num_inference_steps"]?.["default"], 4);
  assert.equal(input["guidance_scale"]?.["default"], 1);
  assert.equal(input["scheduler"]?.["default"], "LCM");
  const page = await (await fetch(`${server.url}/?model=me/tiny-lcm-lora`)).text();
  assert.match(page, /<option value="LCM" selected>/);

  const viaReplicate = async (model: string) => {
    const output = (await replicate.run(model as `${string}/${string}`, {
      input: { prompt: "a red bicycle", width: 128, height: 128, seed: 11 },
    })) as unknown[];
    return download(String(output[0]));
  };
  const withLora = await viaReplicate("me/tiny-lcm-lora");
  assert.match(parametersOf(withLora), /Steps: 4, Sampler: LCM, CFG scale: 1, Seed: 11, Size: 128x128/);
  const res = await openai.images.generate({
    model: "me/tiny-lcm-lora",
    prompt: "a red bicycle",
    size: "128x128",
    response_format: "b64_json",
  });
  const viaOpenAi = Buffer.from(res.data?.[0]?.b64_json ?? "", "base64");
  assert.match(parametersOf(viaOpenAi), /Steps: 4, Sampler: LCM, CFG scale: 1,/);

  const [a, b] = await Promise.all([withLora, await viaReplicate("me/tiny-lcm-fused")].map((png) => decodeImage(png)));
  assert.equal(a?.data.length, b?.data.length);
  let worst = 0;
  for (let i = 0; i < (a?.data.length ?? 0); i++)
    worst = Math.max(worst, Math.abs((a?.data[i] as number) - (b?.data[i] as number)));
  // Images equal to 1e-4 before 8-bit rounding (test/engine/lora.test.ts) may differ by one level.
  assert.ok(worst <= 1, `PNG values differ by up to ${worst}`);
});

test("img2img through replicate: LCM's 4 steps at the model's guidance, Turbo's 2 at strength 0.5; too low a strength fails clearly", {
  timeout: 120_000,
}, async () => {
  const data = Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 37) % 256);
  const image = `data:image/png;base64,${Buffer.from(encode({ width: 64, height: 64, data, channels: 3 })).toString("base64")}`;
  const input = (await schemasOf("me/tiny-lcm-img2img"))["Input"]?.properties ?? {};
  assert.equal(input["num_inference_steps"]?.["default"], 4);
  assert.equal(input["scheduler"]?.["default"], "LCM");
  const output = (await replicate.run("me/tiny-lcm-img2img", {
    input: { prompt: "a red bicycle", image, prompt_strength: 0.5, seed: 5 },
  })) as unknown[];
  const text = parametersOf(await download(String(output[0])));
  assert.match(text, /Steps: 4, Sampler: LCM, CFG scale: 8.5, Seed: 5, Size: 64x64/);
  assert.match(text, /Denoising strength: 0.5/);
  // Its progress bar counts the 4 steps that run, not ⌊4 × 0.5⌋.
  const [made] = (await replicate.predictions.list()).results;
  assert.match(String(made?.logs), /100%\|█+\| 4\/4 /);
  // Turbo's img2img: its model card's 2 steps at strength 0.5, without guidance.
  const turbo = (await schemasOf("me/tiny-turbo-img2img"))["Input"]?.properties ?? {};
  assert.equal(turbo["num_inference_steps"]?.["default"], 2);
  assert.equal(turbo["prompt_strength"]?.["default"], 0.5);
  assert.equal(turbo["scheduler"]?.["default"], "K_EULER");
  const fast = (await replicate.run("me/tiny-turbo-img2img", {
    input: { prompt: "a red bicycle", image, seed: 5 },
  })) as unknown[];
  const fastText = parametersOf(await download(String(fast[0])));
  assert.match(fastText, /Steps: 2, Sampler: K_EULER, CFG scale: 1, Seed: 5, Size: 64x64/);
  assert.match(fastText, /Denoising strength: 0.5/);
  // 50 distillation timesteps × 0.06 keeps 3: not enough for 4 steps.
  await assert.rejects(
    replicate.run("me/tiny-lcm-img2img", { input: { prompt: "a red bicycle", image, prompt_strength: 0.06 } }),
    /strength 0.06 keeps 3 of the model's 50 distillation timesteps/,
  );
});

test("the playground in chromium: Run on the Turbo, LCM and LCM-LoRA models with the form as it starts", {
  skip: noChromium,
  timeout: 240_000,
}, async () => {
  const browser = await launchChromium();
  const errors: string[] = [];
  try {
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    page.on("pageerror", (err) => errors.push(err.message));
    page.setDefaultTimeout(60_000);
    await page.goto(`${server.url}/?model=me/tiny-turbo`);
    await page.getByRole("button", { name: "Set API token" }).first().click();
    await page.getByRole("textbox", { name: "Token" }).fill(TOKEN);
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("dialog").waitFor({ state: "hidden" });
    const expected: Record<string, { steps: number; guidance: number; scheduler: string }> = {
      "me/tiny-turbo": { steps: 1, guidance: 1, scheduler: "K_EULER" },
      "me/tiny-lcm": { steps: 4, guidance: 8.5, scheduler: "LCM" },
      "me/tiny-lcm-lora": { steps: 4, guidance: 1, scheduler: "LCM" },
    };
    for (const [model, want] of Object.entries(expected)) {
      await page.goto(`${server.url}/?model=${model}`);
      await page.getByLabel("Prompt", { exact: true }).fill("a red bicycle");
      await page.getByLabel("Width").selectOption("128");
      await page.getByLabel("Height").selectOption("128");
      await page.getByRole("button", { name: "Run", exact: true }).click();
      const result = page.locator('[data-role="result"] [data-prediction]');
      await result.and(page.locator('[data-status="succeeded"]')).waitFor();
      const id = ((await result.getAttribute("id")) ?? "").replace(/^prediction-/, "");
      const res = await api(server, "GET", `/v1/predictions/${id}`);
      const input = res.json["input"] as Record<string, unknown>;
      assert.equal(input["num_inference_steps"], want.steps, model);
      assert.equal(input["guidance_scale"], want.guidance, model);
      assert.equal(input["scheduler"], want.scheduler, model);
      const [url] = res.json["output"] as string[];
      assert.match(
        parametersOf(await download(url as string)),
        new RegExp(`Steps: ${want.steps}, Sampler: ${want.scheduler}, CFG scale: ${want.guidance},`),
      );
    }
  } finally {
    await browser.close();
  }
  assert.deepEqual(errors, []);
});
