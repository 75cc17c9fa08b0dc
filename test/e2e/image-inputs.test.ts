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
/** Without SDSERVE_ALLOW_PRIVATE_URLS, with the picture site (and only it) in SDSERVE_ALLOWED_URL_HOSTS. */
let guarded: Sdserve;
let site: http.Server;
let siteUrl: string;
/** What the picture site was asked for, in order. */
const siteRequests: string[] = [];
/** An internal service on another loopback port that no file input may reach. */
let secret: http.Server;
let secretPort: number;
const secretRequests: string[] = [];

before(async () => {
  secret = http.createServer((req, res) => {
    secretRequests.push(req.url ?? "");
    res.writeHead(200, { "Content-Type": "image/png" }).end(png(32, 32, 3, 1));
  });
  await new Promise<void>((resolve) => secret.listen(0, "127.0.0.1", resolve));
  secretPort = (secret.address() as AddressInfo).port;
  site = http.createServer((req, res) => {
    siteRequests.push(req.url ?? "");
    // Redirects to the internal service, in the spellings an attacker would try.
    const internal: Record<string, string> = {
      "/to-secret": `http://127.0.0.1:${secretPort}/secret.png`,
      "/to-secret-localhost": `http://localhost:${secretPort}/secret.png`,
      "/to-secret-short": `http://127.1:${secretPort}/secret.png`,
      "/to-secret-mapped": `http://[::ffff:127.0.0.1]:${secretPort}/secret.png`,
      "/to-metadata": "http://169.254.169.254/latest/meta-data/",
      "/to-lan": "http://10.0.0.1/router.png",
    };
    const to = internal[req.url ?? ""];
    if (to) {
      res.writeHead(302, { Location: to }).end();
    } else if (req.url === "/hop1") {
      res.writeHead(301, { Location: "/hop2" }).end();
    } else if (req.url === "/hop2") {
      res.writeHead(307, { Location: "/to-secret" }).end();
    } else if (req.url === "/to-cat") {
      res.writeHead(302, { Location: "/cat.png" }).end();
    } else if (req.url === "/cat.png") {
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
  const sitePort = (site.address() as AddressInfo).port;
  [server, strict, guarded] = await Promise.all([
    startSdserve({ env: { SDSERVE_ALLOW_PRIVATE_URLS: "true" } }),
    startSdserve(),
    startSdserve({ env: { SDSERVE_ALLOWED_URL_HOSTS: `127.0.0.1:${sitePort}` } }),
  ]);
});
after(async () => {
  await Promise.all([server?.stop(), strict?.stop(), guarded?.stop()]);
  site?.close();
  secret?.close();
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

test("an allowed host's URL is fetched, but every redirect of it to an internal address is refused", async () => {
  // The allowed host itself, directly and through its own redirect: fetched.
  for (const path of ["/cat.png", "/to-cat"]) {
    const ok = await run(guarded, IMG2IMG, { prompt: "x", image: `${siteUrl}${path}`, num_inference_steps: 2 });
    assert.equal(ok.json["status"], "succeeded", `${path}: ${ok.json["error"]}`);
  }
  // The internal service directly (loopback, another port): refused before connecting.
  const direct = await run(guarded, IMG2IMG, {
    prompt: "x",
    image: `http://127.0.0.1:${secretPort}/secret.png`,
    num_inference_steps: 2,
  });
  assert.equal(direct.json["status"], "failed");
  assert.match(
    String(direct.json["error"]),
    /^image: 127\.0\.0\.1 is a loopback, private or otherwise internal address/,
  );

  const cases: [string, RegExp][] = [
    ["/to-secret", /^image: 127\.0\.0\.1 is a loopback, private/],
    ["/to-secret-localhost", /^image: localhost is a loopback, private/],
    ["/to-secret-short", /^image: 127\.0\.0\.1 is a loopback, private/],
    ["/to-secret-mapped", /^image: \[::ffff:7f00:1\] is a loopback, private/],
    ["/to-metadata", /^image: 169\.254\.169\.254 is a loopback, private/],
    ["/to-lan", /^mask: 10\.0\.0\.1 is a loopback, private/],
    // Three hops: two on the allowed host, each checked, then the internal one refused.
    ["/hop1", /^image: 127\.0\.0\.1 is a loopback, private/],
  ];
  for (const [path, error] of cases) {
    siteRequests.length = 0;
    const field = path === "/to-lan" ? "mask" : "image";
    const input: Record<string, unknown> = {
      prompt: "x",
      image: dataUri(png(64, 64)),
      mask: dataUri(png(64, 64, 3, 255)),
      num_inference_steps: 2,
      [field]: `${siteUrl}${path}`,
    };
    const r = await run(guarded, INPAINT, input);
    assert.equal(r.status, 201, `${path}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json["status"], "failed", path);
    assert.match(String(r.json["error"]), error, path);
    assert.match(String(r.json["error"]), /SDSERVE_ALLOW_PRIVATE_URLS=true/, path);
    assert.equal(r.json["output"], null, path);
    assert.deepEqual(siteRequests, path === "/hop1" ? ["/hop1", "/hop2", "/to-secret"] : [path]);
  }
  // The internal service never saw a request.
  assert.deepEqual(secretRequests, []);
});

test("stability-ai/stable-diffusion keeps its text-only schema", async () => {
  const m = await api(server, "GET", "/v1/models/stability-ai/stable-diffusion");
  const input = (m.json["latest_version"] as { openapi_schema: { components: { schemas: { Input: unknown } } } })
    .openapi_schema.components.schemas.Input as { properties: Record<string, unknown> };
  assert.equal("image" in input.properties, false);
});

/** The prediction's progress lines (tqdm's shape), as "done/total". */
function progress(logs: unknown): string[] {
  return String(logs ?? "")
    .split("\n")
    .map((l) => /^\s*(\d+)%\|.*?\|\s*(\d+\/\d+)/.exec(l))
    .filter((m) => m !== null)
    .map((m) => `${m[2]} ${m[1]}%`);
}

test("the progress bar counts the steps img2img runs (⌊steps × prompt_strength⌋) and ends at 100 %", async () => {
  // diffusers' StableDiffusionImg2ImgPipeline: its bar's total is the steps it runs.
  const r = await run(server, IMG2IMG, {
    prompt: "a cat",
    image: dataUri(png(64, 64)),
    num_inference_steps: 5,
    prompt_strength: 0.5,
  });
  assert.equal(r.json["status"], "succeeded", String(r.json["error"]));
  assert.deepEqual(progress(r.json["logs"]), ["0/2 0%", "1/2 50%", "2/2 100%"]);
});

test("PNDM's extra first call does not push the bar past 100 % (diffusers counts it as warm-up)", async () => {
  const r = await run(server, "stability-ai/stable-diffusion", {
    prompt: "a cat",
    width: 128,
    height: 128,
    num_inference_steps: 3,
    scheduler: "PNDM",
  });
  assert.equal(r.json["status"], "succeeded", String(r.json["error"]));
  const lines = progress(r.json["logs"]);
  assert.equal(lines.at(-1), "3/3 100%", lines.join(", "));
  for (const l of lines) assert.match(l, /^[0-3]\/3 /, lines.join(", "));
});

test("inpainting takes any mask PIL's convert('RGB') reads: all black, all white, grey + alpha, another size, a JPEG", async () => {
  const la = encode({ width: 32, height: 32, channels: 2, depth: 8, data: new Uint8Array(32 * 32 * 2).fill(200) });
  const sharp = (await import("sharp")).default;
  const jpeg = await sharp(Buffer.from(png(48, 80, 3, 255)))
    .jpeg()
    .toBuffer();
  for (const [what, mask, type] of [
    ["all black", png(64, 64, 3, 0), "image/png"],
    ["all white", png(64, 64, 3, 255), "image/png"],
    ["grey + alpha, 32²", la, "image/png"],
    ["a JPEG of another shape", new Uint8Array(jpeg), "image/jpeg"],
  ] as const) {
    const r = await run(server, INPAINT, {
      prompt: "a cat",
      image: dataUri(png(64, 64)),
      mask: dataUri(mask, type),
      width: 128,
      height: 128,
      num_inference_steps: 2,
    });
    assert.equal(r.json["status"], "succeeded", `${what}: ${r.json["error"]}`);
    assert.deepEqual(await pngSize((r.json["output"] as string[])[0] as string), { width: 128, height: 128 }, what);
  }
});

test("a JPEG's EXIF orientation is applied, as diffusers' load_image applies it", async () => {
  // Stored 64×32, tagged "turn 90°": the picture the camera meant is 32×64.
  const sharp = (await import("sharp")).default;
  const jpeg = await sharp(Buffer.from(png(64, 32)))
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const r = await run(server, IMG2IMG, { prompt: "a cat", image: dataUri(jpeg, "image/jpeg"), num_inference_steps: 2 });
  assert.equal(r.json["status"], "succeeded", String(r.json["error"]));
  assert.deepEqual(await pngSize((r.json["output"] as string[])[0] as string), { width: 32, height: 64 });
});

test("a prompt_strength that runs no step fails naming prompt_strength, the input the user gave", async () => {
  for (const prompt_strength of [0, 0.1]) {
    const r = await run(server, IMG2IMG, {
      prompt: "a cat",
      image: dataUri(png(64, 64)),
      num_inference_steps: 5,
      prompt_strength,
    });
    assert.equal(r.json["status"], "failed");
    assert.match(String(r.json["error"]), /^prompt_strength /, String(r.json["error"]));
    assert.doesNotMatch(String(r.json["error"]), /(^|[^_])strength/, String(r.json["error"]));
  }
});
