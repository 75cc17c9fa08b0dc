/**
 * OpenAI's POST /v1/images/edits with the real `openai` client against the real server: a
 * picture and a mask whose fully transparent pixels mark the area to edit (OpenAI's convention),
 * a picture whose own transparency is the mask, and bad requests in OpenAI's error envelope.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { decode, encode } from "fast-png";
import OpenAI, { toFile } from "openai";
import { type Sdserve, startSdserve, TOKEN } from "./server.js";

let server: Sdserve;
let openai: OpenAI;

before(async () => {
  server = await startSdserve();
  openai = new OpenAI({ apiKey: TOKEN, baseURL: `${server.url}/v1`, maxRetries: 0 });
});
after(async () => {
  await server?.stop();
});

/** RGBA, opaque except a transparent square in the middle. */
function rgbaWithHole(width: number, height: number): Uint8Array {
  const data = new Uint8Array(width * height * 4).fill(180);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inHole = x >= width / 4 && x < (3 * width) / 4 && y >= height / 4 && y < (3 * height) / 4;
      data[(y * width + x) * 4 + 3] = inHole ? 0 : 255;
    }
  }
  return encode({ width, height, data, channels: 4, depth: 8 });
}

function rgb(width: number, height: number): Uint8Array {
  return encode({ width, height, data: new Uint8Array(width * height * 3).fill(90), channels: 3, depth: 8 });
}

test("images.edit with an image and a transparent-area mask returns PNGs of the asked size", async () => {
  const res = await openai.images.edit({
    image: await toFile(Buffer.from(rgb(256, 256)), "photo.png", { type: "image/png" }),
    mask: await toFile(Buffer.from(rgbaWithHole(256, 256)), "mask.png", { type: "image/png" }),
    prompt: "a cat on the sofa",
    n: 2,
    size: "256x256",
    response_format: "b64_json",
    // sdserve's own inputs pass through as fields.
    num_inference_steps: 2,
  } as OpenAI.Images.ImageEditParamsNonStreaming);
  assert.equal(res.data?.length, 2);
  for (const d of res.data ?? []) {
    const png = decode(Buffer.from(d.b64_json as string, "base64"));
    assert.equal(png.width, 256);
    assert.equal(png.height, 256);
  }
  // The mask the prediction got is Replicate's: white (repaint) exactly where the given mask was transparent.
  const files = (await (
    await fetch(`${server.url}/v1/files`, { headers: { Authorization: `Bearer ${TOKEN}` } })
  ).json()) as { results: unknown[] };
  const kept = (files.results as { name: string; urls: { get: string } }[]).find((f) => f.name === "mask.png");
  const bytes = await (
    await fetch(kept?.urls.get as string, { headers: { Authorization: `Bearer ${TOKEN}` } })
  ).arrayBuffer();
  const mask = decode(new Uint8Array(bytes));
  const at = (x: number, y: number) => mask.data[(y * mask.width + x) * mask.channels] as number;
  assert.equal(at(128, 128), 255);
  assert.equal(at(10, 10), 0);
  assert.equal(at(200, 100), 0);
});

test("images.edit without a mask uses the image's transparency; the output URL is a PNG of the image's size", async () => {
  const res = await openai.images.edit({
    image: await toFile(Buffer.from(rgbaWithHole(128, 256)), "cut.png", { type: "image/png" }),
    prompt: "fill the hole",
    num_inference_steps: 2,
  } as OpenAI.Images.ImageEditParamsNonStreaming);
  const url = res.data?.[0]?.url as string;
  const png = decode(new Uint8Array(await (await fetch(url)).arrayBuffer()));
  assert.deepEqual([png.width, png.height], [128, 256]);
});

test("bad edits are 400s in OpenAI's envelope", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ image: await toFile(Buffer.from(rgb(64, 64)), "a.png"), prompt: "x" }, /must have transparency/],
    [{ image: await toFile(Buffer.from("<html></html>"), "a.png"), prompt: "x" }, /image is not a PNG, JPEG or WebP/],
    [{ image: await toFile(Buffer.from(rgbaWithHole(64, 64)), "a.png") }, /prompt is required/],
    [{ image: await toFile(Buffer.from(rgbaWithHole(64, 64)), "a.png"), prompt: "x", size: "100x100" }, /size must be/],
    [{ image: await toFile(Buffer.from(rgbaWithHole(64, 64)), "a.png"), prompt: "x", n: 9 }, /n must be/],
  ];
  for (const [body, message] of cases) {
    await assert.rejects(
      openai.images.edit(body as unknown as OpenAI.Images.ImageEditParamsNonStreaming),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.match(err.message, message);
        return true;
      },
    );
  }
});
