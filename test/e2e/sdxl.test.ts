/**
 * stability-ai/sdxl through the real `replicate` client (and OpenAI's images route), served from a
 * models file with the tiny SDXL fixture as the base and a tiny refiner made on the spot: text
 * only, img2img and inpainting from data URIs, both refine modes, the watermark, Replicate's 422s.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decode, encode } from "fast-png";
import Replicate from "replicate";
import { watermarked } from "../../src/engine/watermark.js";
import { GOLDEN_FAMILY } from "../helpers/fixtures.js";
import { writeTinyRefiner } from "../helpers/tiny-refiner.js";
import { type Sdserve, startSdserve, TOKEN } from "./server.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

let tmp: string;
let server: Sdserve;
let replicate: Replicate;

/** A smooth 256² picture (a photo-like input for img2img and for the watermark). */
function picture(width = 256, height = 256): string {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255) / width;
      data[i + 1] = (y * 255) / height;
      data[i + 2] = 128 + 60 * Math.sin(x / 17) * Math.cos(y / 23);
    }
  }
  return `data:image/png;base64,${Buffer.from(encode({ width, height, data, channels: 3 })).toString("base64")}`;
}

function maskUri(width = 256, height = 256): string {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = x >= width / 2 ? 255 : 0;
  return `data:image/png;base64,${Buffer.from(encode({ width, height, data, channels: 1 })).toString("base64")}`;
}

async function png(url: string) {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const image = decode(new Uint8Array(await res.arrayBuffer()));
  return { width: image.width, height: image.height, data: new Uint8Array(image.data), text: image.text };
}

/** RGB bytes of a decoded PNG (fast-png gives RGB for our outputs; the check keeps a change of that visible). */
function rgb(data: Uint8Array): Uint8Array {
  assert.equal(data.length, 256 * 256 * 3);
  return data;
}

const small = (extra: Record<string, unknown> = {}) => ({
  prompt: "a lighthouse at dusk",
  width: 256,
  height: 256,
  num_inference_steps: 3,
  seed: 5,
  ...extra,
});

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "sdserve-e2e-sdxl-"));
  const refiner = await writeTinyRefiner(path.join(tmp, "refiner"));
  const models = path.join(tmp, "models.json");
  writeFileSync(models, JSON.stringify({ models: { "stability-ai/sdxl": { weights: BASE, refiner } } }));
  server = await startSdserve({ args: ["--models", models] });
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
});
after(async () => {
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe("stability-ai/sdxl through the replicate client", () => {
  test("the model and its Input schema as Replicate publishes it", async () => {
    const model = await replicate.models.get("stability-ai", "sdxl");
    const schema = model.latest_version?.openapi_schema as {
      components: { schemas: Record<string, { properties?: Record<string, { default?: unknown }>; enum?: unknown[] }> };
    };
    const props = schema.components.schemas["Input"]?.properties ?? {};
    for (const key of [
      "prompt",
      "negative_prompt",
      "image",
      "mask",
      "width",
      "height",
      "num_outputs",
      "scheduler",
      "num_inference_steps",
      "guidance_scale",
      "prompt_strength",
      "seed",
      "refine",
      "high_noise_frac",
      "refine_steps",
      "apply_watermark",
      "lora_scale",
      "replicate_weights",
      "disable_safety_checker",
    ]) {
      assert.ok(props[key], key);
    }
    assert.equal(props["width"]?.default, 1024);
    assert.equal(props["scheduler"]?.default, "K_EULER");
    assert.equal(props["guidance_scale"]?.default, 7.5);
    assert.equal(props["refine"]?.default, "no_refiner");
    assert.equal(props["apply_watermark"]?.default, true);
    assert.deepEqual(schema.components.schemas["scheduler"]?.enum, [
      "DDIM",
      "DPMSolverMultistep",
      "HeunDiscrete",
      "KarrasDPM",
      "K_EULER_ANCESTRAL",
      "K_EULER",
      "PNDM",
    ]);
  });

  test("text to image: PNGs of the size asked for, watermarked by default", async () => {
    const output = (await replicate.run("stability-ai/sdxl", { input: small({ num_outputs: 2 }) })) as string[];
    assert.equal(output.length, 2);
    for (const url of output) {
      const image = await png(url);
      assert.equal(image.width, 256);
      assert.equal(image.height, 256);
      assert.match(String(image.text["parameters"]), /Seed: 5, Size: 256x256/);
    }
    const [plain] = (await replicate.run("stability-ai/sdxl", {
      input: small({ apply_watermark: false }),
    })) as string[];
    const unmarked = await png(plain as string);
    // The same seed: the marked output is exactly the unmarked one with diffusers' watermark (watermark.ts).
    const marked = await png(output[0] as string);
    const expected = watermarked({ width: 256, height: 256, data: rgb(unmarked.data) });
    assert.deepEqual(rgb(marked.data), expected.data);
    assert.notDeepEqual(rgb(marked.data), rgb(unmarked.data));
  });

  test("img2img from a data URI: the image's size rules", async () => {
    const output = (await replicate.run("stability-ai/sdxl", {
      input: small({ image: picture(), prompt_strength: 0.6, width: 1024, height: 1024 }),
    })) as string[];
    const image = await png(output[0] as string);
    assert.equal(image.width, 256);
    assert.equal(image.height, 256);
  });

  test("img2img with the picture as bytes: the client uploads it through the Files API", async () => {
    const bytes = Buffer.from(picture(320, 256).split(",")[1] as string, "base64");
    const output = (await replicate.run("stability-ai/sdxl", {
      input: small({ image: bytes, prompt_strength: 0.5 }),
    })) as string[];
    const image = await png(output[0] as string);
    assert.equal(image.width, 320);
    assert.equal(image.height, 256);
    // It went through the Files API (the client falls back to a data URI only when that fails).
    const files = await replicate.files.list();
    assert.ok(files.results.length > 0);
  });

  test("inpainting: image and mask, made at width × height as cog-sdxl passes them", async () => {
    const output = (await replicate.run("stability-ai/sdxl", {
      input: small({
        image: picture(320, 256),
        mask: maskUri(320, 256),
        width: 256,
        height: 192,
        apply_watermark: false,
      }),
    })) as string[];
    const image = await png(output[0] as string);
    assert.deepEqual([image.width, image.height], [256, 192]);
  });

  test("refine: expert_ensemble_refiner and base_image_refiner", async () => {
    for (const refine of ["expert_ensemble_refiner", "base_image_refiner"]) {
      const prediction = await replicate.predictions.create({
        model: "stability-ai/sdxl",
        input: small({ refine, num_inference_steps: 5, refine_steps: 4, high_noise_frac: 0.6 }),
      } as Parameters<typeof replicate.predictions.create>[0]);
      const done = await replicate.wait(prediction, { interval: 100 });
      assert.equal(done.status, "succeeded", `${refine}: ${done.error}`);
      const image = await png((done.output as string[])[0] as string);
      assert.equal(image.width, 256);
      // cog-sdxl's log lines, then one progress bar to 100 %: the ensemble's 5 steps split between
      // base and refiner; base_image_refiner's 5, then ⌊4 × 0.3⌋ = 1 of the refiner (img2img at 0.3).
      const logs = String(done.logs);
      assert.match(logs, /^Using seed: 5\nPrompt: a lighthouse at dusk\ntxt2img mode\n/);
      const total = refine === "expert_ensemble_refiner" ? 5 : 6;
      assert.match(logs, new RegExp(`100%\\|[^\\n]*\\| ${total}/${total} \\[`), `${refine}: ${logs}`);
    }
  });

  test("invalid inputs are Replicate's 422", async () => {
    const bad: Record<string, unknown>[] = [
      { replicate_weights: "ftp://example.com/lora.tar" },
      { replicate_weights: "data:application/x-tar;base64,@@@" },
      { lora_scale: 1.5 },
      { scheduler: "KLMS" },
      { width: 1001 },
      { width: 2048, height: 2048 },
      { guidance_scale: 51 },
      { refine: "bogus" },
      { image: "ftp://example.com/a.png" },
      { image: "data:image/png;base64,@@@" },
      { mask: maskUri() },
      { num_outputs: 5 },
      { high_noise_frac: 1.5 },
    ];
    for (const extra of bad) {
      await assert.rejects(
        replicate.predictions.create({ model: "stability-ai/sdxl", input: small(extra) } as Parameters<
          typeof replicate.predictions.create
        >[0]),
        (err: unknown) => (err as { response?: Response }).response?.status === 422,
        JSON.stringify(extra).slice(0, 80),
      );
    }
  });

  test("a picture that is not one fails the prediction with a clear error", async () => {
    const prediction = await replicate.predictions.create({
      model: "stability-ai/sdxl",
      input: small({ image: `data:image/png;base64,${Buffer.from("not a picture").toString("base64")}` }),
    } as Parameters<typeof replicate.predictions.create>[0]);
    // The client's wait() throws with the prediction's error when it failed.
    await assert.rejects(replicate.wait(prediction, { interval: 100 }), /image is not a PNG, JPEG or WebP image/);
  });
});

test("/openapi.json holds stability-ai/sdxl's Input beside stability-ai/stable-diffusion's", async () => {
  const res = await fetch(`${server.url}/openapi.json`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as { components: { schemas: Record<string, { properties?: object }> } };
  const inputs = Object.entries(doc.components.schemas).filter(([name]) => name.endsWith("Input"));
  assert.ok(
    inputs.some(([, s]) => s.properties && "refine" in s.properties),
    inputs.map(([n]) => n).join(", "),
  );
  assert.ok(inputs.some(([, s]) => s.properties && !("refine" in s.properties)));
});

test("the playground shows stability-ai/sdxl's form", async () => {
  const res = await fetch(`${server.url}/?model=stability-ai/sdxl`);
  assert.equal(res.status, 200);
  const html = await res.text();
  for (const name of ["prompt", "refine", "high_noise_frac", "apply_watermark", "scheduler"]) {
    assert.match(html, new RegExp(`name="${name}"`), name);
  }
  assert.match(html, /expert_ensemble_refiner/);
});

describe("sdserve serve --model <SDXL folder>", () => {
  let sdxl: Sdserve;
  before(async () => {
    sdxl = await startSdserve({ args: ["--model", BASE] });
  });
  after(async () => {
    await sdxl?.stop();
  });

  test("is served as stability-ai/sdxl, and OpenAI's images route makes SDXL sizes", async () => {
    const client = new Replicate({ auth: TOKEN, baseUrl: `${sdxl.url}/v1` });
    const model = await client.models.get("stability-ai", "sdxl");
    assert.equal(model.name, "sdxl");
    const res = await fetch(`${sdxl.url}/v1/images/generations`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a lighthouse", size: "320x256", response_format: "b64_json" }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const body = (await res.json()) as { data: { b64_json: string }[] };
    const image = decode(Buffer.from(body.data[0]?.b64_json ?? "", "base64"));
    assert.equal(image.width, 320);
    assert.equal(image.height, 256);
    const wrong = await fetch(`${sdxl.url}/v1/images/generations`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "a lighthouse", size: "4096x4096" }),
    });
    assert.equal(wrong.status, 400);
  });

  test("refine on a model without a refiner fails the prediction, saying so", async () => {
    const client = new Replicate({ auth: TOKEN, baseUrl: `${sdxl.url}/v1` });
    const prediction = await client.predictions.create({
      model: "stability-ai/sdxl",
      input: small({ refine: "expert_ensemble_refiner" }),
    } as Parameters<typeof client.predictions.create>[0]);
    await assert.rejects(client.wait(prediction, { interval: 100 }), /this model has no refiner/);
  });
});
