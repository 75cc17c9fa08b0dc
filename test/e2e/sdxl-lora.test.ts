/**
 * stability-ai/sdxl's `replicate_weights` + `lora_scale` through the real `replicate` client: a
 * random LoRA for tiny-sdxl served by a local HTTP server as Replicate's trainers publish it (a
 * .tar with lora.safetensors, embeddings.pti and special_params.json) and as a bare
 * .safetensors, as a data: URI and as a Files API upload; fetched once; the tar's trained tokens
 * (TOK → <s0><s1>) give the picture of a copy of the model with those tokens added to its tokenizers
 * and token tables as cog-sdxl adds them (pooled embedding included); lora_scale 0 is the base
 * model; the same LoRA in a models-file entry's `loras` gives the same picture; URLs that are not
 * LoRAs, broken tars and LoRAs of another model fail the prediction with an error naming
 * replicate_weights.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decode } from "fast-png";
import Replicate, { type Prediction } from "replicate";
import { encodeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY } from "../helpers/fixtures.js";
import { addedTokensSdxl } from "../helpers/sdxl-hand-placed.js";
import { randomSdxlLora, TINY_SDXL, writeLora } from "../helpers/sdxl-lora.js";
import { gnuTar } from "../helpers/tar.js";
import { type Sdserve, startSdserve, TOKEN } from "./server.js";

let tmp: string;
let server: Sdserve;
let files: http.Server;
let filesUrl: string;
let replicate: Replicate;
const served = new Map<string, Uint8Array>();
const hits = new Map<string, number>();
let loraBytes: Uint8Array;

const input = (extra: Record<string, unknown> = {}) => ({
  prompt: "a lighthouse at dusk",
  width: 128,
  height: 128,
  num_inference_steps: 3,
  seed: 11,
  apply_watermark: false,
  ...extra,
});

async function run(extra: Record<string, unknown>, model = "stability-ai/sdxl"): Promise<Prediction> {
  const prediction = await replicate.predictions.create({
    model,
    input: input(extra),
  } as Parameters<typeof replicate.predictions.create>[0]);
  return replicate.wait(prediction, { interval: 100 });
}

async function image(p: Prediction): Promise<Buffer> {
  assert.equal(p.status, "succeeded", String(p.error));
  const res = await fetch((p.output as string[])[0] as string);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "sdserve-e2e-sdxl-lora-"));
  // A LoRA as Replicate's SDXL trainer writes it: UNet attention processors, no prefix.
  const attention = (await randomSdxlLora(5, ["unet"], 4, 0.3)).filter((l) =>
    /\.attn[12]\.to_(q|k|v|out\.0)$/.test(l.module),
  );
  const loraFile = await writeLora(path.join(tmp, "lora.safetensors"), attention, "attn-procs");
  loraBytes = new Uint8Array(readFileSync(loraFile));
  const sd1Lora = readFileSync(path.join(GOLDEN_FAMILY, "lora", "tiny-sd1_lora_kohya.safetensors"));
  // Two trained tokens for tiny-sdxl's encoders (16 and 32 wide), as cog-sdxl's trainer writes them.
  const clipL = Float32Array.from({ length: 2 * 16 }, (_, i) => Math.sin(i * 0.9 + 2) * 0.05);
  const clipG = Float32Array.from({ length: 2 * 32 }, (_, i) => Math.cos(i * 0.4) * 0.05);
  const pti = (l: number, g: number, dl = clipL, dg = clipG) =>
    encodeSafetensors([
      { name: "text_encoders_0", dtype: "F32", shape: [2, l], data: dl },
      { name: "text_encoders_1", dtype: "F32", shape: [2, g], data: dg },
    ]);
  const trainedTar = (members: Record<string, Uint8Array | string>) =>
    gnuTar(tmp, { "lora.safetensors": loraBytes, ...members }, "pax");
  const trained = trainedTar({
    "embeddings.pti": pti(16, 32),
    "special_params.json": JSON.stringify({ TOK: "<s0><s1>" }),
  });
  served.set(
    "/wide.tar",
    trainedTar({
      "embeddings.pti": pti(768, 1280, new Float32Array(2 * 768), new Float32Array(2 * 1280)),
      "special_params.json": JSON.stringify({ TOK: "<s0><s1>" }),
    }),
  );
  served.set("/no-params.tar", trainedTar({ "embeddings.pti": pti(16, 32) }));
  served.set("/bad-params.tar", trainedTar({ "embeddings.pti": pti(16, 32), "special_params.json": "TOK: <s0><s1>" }));
  const { dir: handPlaced } = await addedTokensSdxl(TINY_SDXL, path.join(tmp, "hand-placed"), clipL, clipG, {
    l: 16,
    g: 32,
  });
  served.set("/trained.tar", trained);
  served.set("/lora.safetensors", loraBytes);
  served.set("/page.html", new Uint8Array(Buffer.from("<!doctype html><title>a model page</title>")));
  served.set("/cut.tar", trained.subarray(0, 512 + 100));
  served.set("/no-lora.tar", gnuTar(tmp, { "readme.md": "weights elsewhere" }));
  served.set("/sd1.safetensors", new Uint8Array(sd1Lora));
  files = http.createServer((req, res) => {
    const key = req.url ?? "";
    hits.set(key, (hits.get(key) ?? 0) + 1);
    const body = served.get(key);
    if (!body) {
      res.writeHead(404).end("not here");
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length }).end(body);
  });
  await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
  filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;

  const models = path.join(tmp, "models.json");
  writeFileSync(
    models,
    JSON.stringify({
      models: {
        "stability-ai/sdxl": { weights: TINY_SDXL },
        // The same LoRA fixed in a models-file entry of an SDXL model.
        "me/sdxl-styled": { weights: TINY_SDXL, loras: [{ path: loraFile, scale: 0.6 }] },
        // The trained tokens added to the tokenizers and token tables, as cog-sdxl adds them.
        "me/sdxl-hand-placed": { weights: handPlaced, loras: [{ path: loraFile, scale: 0.6 }] },
      },
    }),
  );
  server = await startSdserve({
    args: ["--models", models],
    model: null,
    env: { SDSERVE_ALLOW_PRIVATE_URLS: "true", SDSERVE_CACHE: path.join(tmp, "cache") },
  });
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
});
after(async () => {
  await server?.stop();
  await new Promise<void>((resolve) => (files ? files.close(() => resolve()) : resolve()));
  rmSync(tmp, { recursive: true, force: true });
});

describe("replicate_weights on stability-ai/sdxl", () => {
  let base: Buffer;
  let withLora: Buffer;

  test("a trained-LoRA .tar by URL at lora_scale 0.6 changes the image, fetched once", async () => {
    base = await image(await run({}));
    const first = await run({ replicate_weights: `${filesUrl}/trained.tar` });
    withLora = await image(first);
    assert.notDeepEqual(withLora, base, "the LoRA changes the picture");
    assert.match(
      String(first.logs),
      /Loading LoRA weights \(replicate_weights, sha256 [0-9a-f]{12}\) at lora_scale 0\.6/,
    );
    assert.doesNotMatch(String(first.logs), /not applied/);
    const again = await image(await run({ replicate_weights: `${filesUrl}/trained.tar` }));
    assert.deepEqual(again, withLora, "the same LoRA gives the same picture");
    assert.equal(hits.get("/trained.tar"), 1, "the tar is fetched once");
    const cached = readdirSync(path.join(tmp, "cache", "lora-weights"));
    assert.equal(cached.filter((f) => f.endsWith(".safetensors")).length, 1);
  });

  test("the same LoRA as a bare .safetensors URL, a data: URI and a Files API upload gives the same picture", async () => {
    assert.deepEqual(await image(await run({ replicate_weights: `${filesUrl}/lora.safetensors` })), withLora);
    const dataUri = `data:application/octet-stream;base64,${Buffer.from(loraBytes).toString("base64")}`;
    assert.deepEqual(await image(await run({ replicate_weights: dataUri })), withLora);
    // The client uploads a Buffer input with POST /v1/files and sends its URL.
    const uploaded = await run({ replicate_weights: Buffer.from(loraBytes) });
    assert.deepEqual(await image(uploaded), withLora);
    assert.match(String((uploaded.input as Record<string, unknown>)["replicate_weights"]), /\/v1\/files\//);
  });

  test("TOK in the prompt and <s1> in the negative prompt: the tar's trained tokens, as if added to the model", async () => {
    const tuned = await run({
      replicate_weights: `${filesUrl}/trained.tar`,
      prompt: "a lighthouse at dusk, TOK",
      negative_prompt: "blurry <s1>",
    });
    assert.match(String(tuned.logs), /Prompt: a lighthouse at dusk, <s0><s1>/);
    const byHand = await run(
      { prompt: "a lighthouse at dusk, <s0><s1>", negative_prompt: "blurry <s1>" },
      "me/sdxl-hand-placed",
    );
    const picture = await image(tuned);
    // The pixels: the PNGs' parameters text holds each its own prompt.
    const pixels = (png: Buffer) => Buffer.from(decode(new Uint8Array(png)).data as Uint8Array);
    assert.deepEqual(pixels(picture), pixels(await image(byHand)));
    // Without the tokens (a bare LoRA) TOK is just text: another picture.
    const bare = await run({
      replicate_weights: `${filesUrl}/lora.safetensors`,
      prompt: "a lighthouse at dusk, TOK",
      negative_prompt: "blurry <s1>",
    });
    assert.notDeepEqual(pixels(await image(bare)), pixels(picture));
  });

  test("a models-file entry's loras on an SDXL model give the picture replicate_weights gives", async () => {
    assert.deepEqual(await image(await run({}, "me/sdxl-styled")), withLora);
  });

  test("lora_scale 0 is the base model; another scale is another picture", async () => {
    assert.deepEqual(await image(await run({ replicate_weights: `${filesUrl}/trained.tar`, lora_scale: 0 })), base);
    // An empty string is no weights, as cog-sdxl reads it.
    assert.deepEqual(await image(await run({ replicate_weights: "" })), base);
    const stronger = await image(await run({ replicate_weights: `${filesUrl}/trained.tar`, lora_scale: 1 }));
    assert.notDeepEqual(stronger, withLora);
    assert.notDeepEqual(stronger, base);
  });

  test("URLs that are not LoRAs for this model fail the prediction, naming replicate_weights", async () => {
    const cases: [string, RegExp][] = [
      [
        "/page.html",
        /replicate_weights: is neither a \.safetensors LoRA nor a \.tar archive holding lora\.safetensors/,
      ],
      ["/cut.tar", /replicate_weights: is a broken tar archive: truncated/],
      ["/no-lora.tar", /replicate_weights: the tar archive holds no lora\.safetensors \(it has readme\.md\)/],
      ["/missing.tar", /replicate_weights: fetching the URL answered HTTP 404/],
      ["/sd1.safetensors", /replicate_weights \(lora\.safetensors\): .*(do not fit|does not have)/],
      [
        "/wide.tar",
        /replicate_weights \(embeddings\.pti\): text_encoders_0 holds vectors 768 wide, but this model's CLIP ViT-L text encoder takes 16/,
      ],
      ["/no-params.tar", /replicate_weights: the tar archive holds embeddings\.pti but no special_params\.json/],
      ["/bad-params.tar", /replicate_weights: special_params\.json in the tar archive is not JSON/],
    ];
    for (const [url, pattern] of cases) {
      // The client's wait() throws on a failed prediction; the prediction itself says why.
      const created = await replicate.predictions.create({
        model: "stability-ai/sdxl",
        input: input({ replicate_weights: `${filesUrl}${url}` }),
      } as Parameters<typeof replicate.predictions.create>[0]);
      await assert.rejects(replicate.wait(created, { interval: 100 }), /Prediction failed: replicate_weights/, url);
      const p = await replicate.predictions.get(created.id);
      assert.equal(p.status, "failed", url);
      assert.match(String(p.error), pattern, url);
      assert.ok(!String(p.error).includes(tmp), `the error shows no server path: ${p.error}`);
    }
    // The server is still serving.
    assert.deepEqual(await image(await run({})), base);
  });
});
