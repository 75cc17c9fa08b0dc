/**
 * OpenAI's POST /v1/images/edits with the real `openai` client against the real server: a
 * picture and a mask whose fully transparent pixels mark the area to edit (OpenAI's convention),
 * a picture whose own transparency is the mask, and bad requests in OpenAI's error envelope.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { decode, encode } from "fast-png";
import OpenAI, { toFile } from "openai";
import sharp from "sharp";
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
    model: "dall-e-2",
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

test("images.edit reads model and the output fields as OpenAI does: GPT image models (the default) answer base64", async () => {
  const image = async () => toFile(Buffer.from(rgbaWithHole(128, 128)), "cut.png", { type: "image/png" });
  const edit = async (extra: Record<string, unknown>) =>
    openai.images.edit({
      image: await image(),
      prompt: "fill the hole",
      num_inference_steps: 2,
      ...extra,
    } as OpenAI.Images.ImageEditParamsNonStreaming);
  // OpenAI's edits default to a GPT image model, and those answer base64 whatever response_format says.
  for (const extra of [{}, { model: "gpt-image-1" }, { model: "gpt-image-1", response_format: "url" }]) {
    const res = await edit(extra);
    assert.equal(res.data?.[0]?.url, undefined, JSON.stringify(extra));
    const png = decode(Buffer.from(res.data?.[0]?.b64_json as string, "base64"));
    assert.deepEqual([png.width, png.height], [128, 128]);
  }
  assert.ok((await edit({ model: "dall-e-2" })).data?.[0]?.url);
  assert.ok((await edit({ response_format: "url" })).data?.[0]?.url);
  // output_format and output_compression, as in generations.
  const jpeg = await edit({ model: "gpt-image-1", output_format: "jpeg", output_compression: 50 });
  assert.equal(
    Buffer.from(jpeg.data?.[0]?.b64_json as string, "base64")
      .subarray(0, 3)
      .toString("hex"),
    "ffd8ff",
  );
  const webp = await edit({ output_format: "webp" });
  assert.equal(
    Buffer.from(webp.data?.[0]?.b64_json as string, "base64")
      .subarray(0, 4)
      .toString(),
    "RIFF",
  );

  const cases: [Record<string, unknown>, string, number, string | null][] = [
    [{ model: "no/such-model" }, "model", 404, "model_not_found"],
    // Served, but a text-to-image model: it cannot edit.
    [{ model: "stability-ai/stable-diffusion" }, "model", 400, null],
    [{ background: "transparent" }, "background", 400, null],
    [{ output_format: "gif" }, "output_format", 400, null],
    [{ output_format: "jpeg", output_compression: 101 }, "output_compression", 400, null],
    [{ output_format: "jpeg", response_format: "url", model: "dall-e-2" }, "output_format", 400, null],
    [{ quality: "ultra" }, "quality", 400, null],
    [{ input_fidelity: "max" }, "input_fidelity", 400, null],
  ];
  for (const [extra, param, status, code] of cases) {
    await assert.rejects(edit(extra), (err: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(err.status, status, JSON.stringify(extra));
      const e = err.error as { param?: string; type?: string; code?: string | null };
      assert.equal(e.param, param, JSON.stringify(extra));
      assert.equal(e.type, "invalid_request_error");
      assert.equal(e.code, code);
      return true;
    });
  }
});

test("edits refuse what the inpainting model would misread, before any prediction: a mask of another size, several images, a non-image, too many pixels", async () => {
  const count = async () => {
    const res = await fetch(`${server.url}/v1/predictions`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    return ((await res.json()) as { results: unknown[] }).results.length;
  };
  const before = await count();
  const photo = async () => toFile(Buffer.from(rgb(128, 128)), "photo.png", { type: "image/png" });
  const gif = await sharp({ create: { width: 128, height: 128, channels: 3, background: "red" } })
    .gif()
    .toBuffer();
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [
      { image: await photo(), mask: await toFile(Buffer.from(rgbaWithHole(64, 64)), "mask.png") },
      "mask",
      /mask is 64x64 and image 128x128/,
    ],
    [
      { image: [await photo(), await photo()], mask: await toFile(Buffer.from(rgbaWithHole(128, 128)), "m.png") },
      "image",
      /One image/,
    ],
    [
      {
        image: await toFile(Buffer.from("<html></html>"), "a.png"),
        mask: await toFile(Buffer.from(rgbaWithHole(128, 128)), "m.png"),
      },
      "image",
      /image is not a PNG, JPEG or WebP/,
    ],
    [
      { image: await toFile(gif, "a.gif"), mask: await toFile(Buffer.from(rgbaWithHole(128, 128)), "m.png") },
      "image",
      /image is a gif file/,
    ],
  ];
  // Over the decoder's 4096x4096 pixels: said so, not "not a PNG".
  const huge = (channels: 3 | 4) =>
    sharp({ create: { width: 5000, height: 4000, channels, background: { r: 9, g: 9, b: 9, alpha: 0 } } })
      .png()
      .toBuffer();
  cases.push(
    [
      { image: await toFile(await huge(4), "big.png") },
      "image",
      /image is 5000×4000 \(20\.0 megapixels\), over the limit/,
    ],
    [
      { image: await toFile(await huge(3), "big.png"), mask: await toFile(await huge(4), "m.png") },
      "image",
      /image is 5000×4000 \(20\.0 megapixels\), over the limit/,
    ],
  );
  for (const [body, param, message] of cases) {
    await assert.rejects(
      openai.images.edit({
        prompt: "x",
        num_inference_steps: 2,
        ...body,
      } as unknown as OpenAI.Images.ImageEditParamsNonStreaming),
      (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(err.status, 400, String(err));
        assert.equal((err.error as { param?: string }).param, param);
        assert.match(err.message, message);
        return true;
      },
    );
  }
  assert.equal(await count(), before);
});

test("images.edit with stream: true: image_edit events, as the openai client reads them", async () => {
  const stream = await openai.images.edit({
    image: await toFile(Buffer.from(rgbaWithHole(128, 128)), "cut.png", { type: "image/png" }),
    prompt: "fill the hole",
    stream: true,
    output_format: "webp",
    num_inference_steps: 2,
  } as OpenAI.Images.ImageEditParamsStreaming);
  const events: OpenAI.Images.ImageEditStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  assert.deepEqual(
    events.map((e) => [e.type, e.size, e.output_format, e.background]),
    [["image_edit.completed", "128x128", "webp", "opaque"]],
  );
  assert.equal(
    Buffer.from(events[0]?.b64_json as string, "base64")
      .subarray(0, 4)
      .toString(),
    "RIFF",
  );
});
