/**
 * File inputs end to end on the real server (tiny-random): stability-ai/stable-diffusion-img2img
 * and -inpainting with data: URIs and URLs of a local HTTP server, and hostile inputs — each a
 * 422 at create where it can be known then, else a failed prediction naming the input.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { deflateSync } from "node:zlib";
import { decode, encode } from "fast-png";
import { api, type Sdserve, startSdserve } from "./server.js";

const IMG2IMG = "stability-ai/stable-diffusion-img2img";
const INPAINT = "stability-ai/stable-diffusion-inpainting";

function png(width: number, height: number, channels: 3 | 4 = 3, fill = 128): Uint8Array {
  const data = new Uint8Array(width * height * channels).fill(fill);
  return encode({ width, height, data, channels, depth: 8 });
}

function dataUri(bytes: Uint8Array, type = "image/png"): string {
  return `data:${type};base64,${Buffer.from(bytes).toString("base64")}`;
}

/** A PNG whose header claims width × height, with a tiny (truncated) body: the header is all a decoder should read. */
function hugeHeaderPng(width: number, height: number): Uint8Array {
  const chunk = (type: string, body: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(1000))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

let server: Sdserve;
let strict: Sdserve;
let site: http.Server;
let siteUrl: string;

before(async () => {
  site = http.createServer((req, res) => {
    if (req.url === "/cat.png") {
      res.writeHead(200, { "Content-Type": "image/png" }).end(png(96, 64));
    } else if (req.url === "/mask.png") {
      res.writeHead(200, { "Content-Type": "image/png" }).end(png(96, 64, 3, 255));
    } else if (req.url === "/page.html") {
      res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><html><body>not a picture</body></html>");
    } else if (req.url === "/truncated.png") {
      const whole = png(64, 64, 3, 7);
      res.writeHead(200, { "Content-Type": "image/png" }).end(whole.subarray(0, Math.floor(whole.length / 2)));
    } else if (req.url === "/huge.png") {
      res.writeHead(200, { "Content-Type": "image/png" }).end(hugeHeaderPng(10_000, 10_000));
    } else if (req.url === "/to-private") {
      res.writeHead(302, { Location: "http://127.0.0.1:9/secret.png" }).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  [server, strict] = await Promise.all([startSdserve({ env: { SDSERVE_ALLOW_PRIVATE_URLS: "true" } }), startSdserve()]);
});
after(async () => {
  await Promise.all([server?.stop(), strict?.stop()]);
  site?.close();
});

async function run(on: Sdserve, model: string, input: Record<string, unknown>) {
  const r = await api(
    on,
    "POST",
    `/v1/models/${model}/predictions`,
    { input },
    {
      Authorization: "Bearer r8_e2e_token_alice",
      "Content-Type": "application/json",
      Prefer: "wait=60",
    },
  );
  return r;
}

async function pngSize(url: string): Promise<{ width: number; height: number }> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const p = decode(new Uint8Array(await res.arrayBuffer()));
  return { width: p.width, height: p.height };
}

test("img2img from a data: URI makes a PNG of the picture's own size", async () => {
  const r = await run(server, IMG2IMG, {
    prompt: "a cat",
    image: dataUri(png(80, 48)),
    num_inference_steps: 4,
    prompt_strength: 0.5,
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json["status"], "succeeded", String(r.json["error"]));
  const [url] = r.json["output"] as string[];
  assert.deepEqual(await pngSize(url as string), { width: 80, height: 48 });
});

test("inpainting from URLs of a local server (SDSERVE_ALLOW_PRIVATE_URLS=true) makes width × height", async () => {
  const r = await run(server, INPAINT, {
    prompt: "a cat",
    image: `${siteUrl}/cat.png`,
    mask: `${siteUrl}/mask.png`,
    width: 128,
    height: 256,
    num_inference_steps: 2,
    num_outputs: 2,
  });
  assert.equal(r.json["status"], "succeeded", String(r.json["error"]));
  const out = r.json["output"] as string[];
  assert.equal(out.length, 2);
  for (const url of out) assert.deepEqual(await pngSize(url), { width: 128, height: 256 });
});

test("the published schemas: img2img requires image, inpainting image and mask", async () => {
  const a = await run(server, IMG2IMG, { prompt: "x" });
  assert.equal(a.status, 422);
  assert.match(JSON.stringify(a.json), /image is required/);
  const b = await run(server, INPAINT, { prompt: "x", image: dataUri(png(8, 8)) });
  assert.equal(b.status, 422);
  assert.match(JSON.stringify(b.json), /mask is required/);
  const schema = await api(server, "GET", `/v1/models/${IMG2IMG}`);
  const input = (schema.json["latest_version"] as { openapi_schema: { components: { schemas: { Input: unknown } } } })
    .openapi_schema.components.schemas.Input as { properties: Record<string, Record<string, unknown>> };
  assert.equal(input.properties["image"]?.["format"], "uri");
  assert.equal(input.properties["prompt_strength"]?.["default"], 0.8);
});

test("a file input that can never be fetched is a 422 at create", async () => {
  for (const image of ["ftp://example.com/a.png", "data:image/png;base64,@@@", "data:nothing", "not a url", 42]) {
    const r = await run(server, IMG2IMG, { prompt: "x", image });
    assert.equal(r.status, 422, `${JSON.stringify(image)}: ${JSON.stringify(r.json)}`);
    assert.match(JSON.stringify(r.json), /input\.image/);
  }
});

test("hostile pictures fail the prediction with an error naming the input", async () => {
  const cases: [string, string, RegExp][] = [
    ["a 100-megapixel PNG", `${siteUrl}/huge.png`, /image is 10000×10000 .*over the limit/],
    ["a truncated PNG", `${siteUrl}/truncated.png`, /image could not be decoded|image is not a PNG/],
    ["an HTML page", `${siteUrl}/page.html`, /image is not a PNG, JPEG or WebP image/],
    ["a 404", `${siteUrl}/missing.png`, /image: fetching the URL answered HTTP 404/],
    ["a data: URI of text", "data:text/plain,hello", /image is not a PNG, JPEG or WebP image/],
  ];
  for (const [what, image, error] of cases) {
    const r = await run(server, IMG2IMG, { prompt: "x", image, num_inference_steps: 2 });
    assert.equal(r.status, 201, what);
    assert.equal(r.json["status"], "failed", what);
    assert.match(String(r.json["error"]), error, what);
  }
});

test("without the setting, a URL on a private address or redirecting to one is refused", async () => {
  for (const image of [`${siteUrl}/cat.png`, `${siteUrl}/to-private`]) {
    const r = await run(strict, IMG2IMG, { prompt: "x", image, num_inference_steps: 2 });
    assert.equal(r.json["status"], "failed");
    assert.match(
      String(r.json["error"]),
      /image: 127\.0\.0\.1 is a loopback, private .*SDSERVE_ALLOW_PRIVATE_URLS=true/,
    );
  }
});

test("stability-ai/stable-diffusion keeps its text-only schema", async () => {
  const m = await api(server, "GET", "/v1/models/stability-ai/stable-diffusion");
  const input = (m.json["latest_version"] as { openapi_schema: { components: { schemas: { Input: unknown } } } })
    .openapi_schema.components.schemas.Input as { properties: Record<string, unknown> };
  assert.equal("image" in input.properties, false);
});
