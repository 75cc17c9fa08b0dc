/**
 * Decoding and sizing image inputs: PNG / JPEG / WebP into RGB, alpha kept aside, and hostile
 * bytes (a 100-megapixel header, huge dimensions in a tiny file, truncated data, an HTML page,
 * empty input, formats outside the three) refused with a RequestError naming the input, before
 * any pixel is decoded where the header already says no.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { RequestError } from "../../src/engine/errors.js";
import { encodePng } from "../../src/engine/image.js";
import {
  binariseMask,
  decodeImage,
  maskFromTransparency,
  pixelsToTensor,
  resizeNearest,
  resizePixels,
  targetSize,
  toGray,
} from "../../src/engine/image-input.js";

/** A deterministic RGB picture with detail in every channel. */
function picture(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    data[i * 3] = (i * 7) % 256;
    data[i * 3 + 1] = (i * 13 + 5) % 256;
    data[i * 3 + 2] = (i * 31 + 11) % 256;
  }
  return { width, height, data };
}

function chunk(type: string, body: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  const typed = Buffer.concat([Buffer.from(type, "latin1"), body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([len, typed, crc]);
}

/** A well-formed PNG whose header claims width × height, with a few bytes of image data. */
function pngHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(64))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

async function refused(bytes: Uint8Array, pattern: RegExp, field = "image") {
  await assert.rejects(decodeImage(bytes, { field }), (err: unknown) => {
    assert.ok(err instanceof RequestError, `a RequestError, got ${String(err)}`);
    assert.equal(err.field, field);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("decodeImage", () => {
  test("PNG, lossless WebP and JPEG decode to RGB of the right size", async () => {
    const p = picture(40, 24);
    const png = encodePng(p);
    const fromPng = await decodeImage(png);
    assert.equal(fromPng.format, "png");
    assert.deepEqual([fromPng.width, fromPng.height], [40, 24]);
    assert.deepEqual(fromPng.data, p.data);
    assert.equal(fromPng.alpha, undefined);

    const raw = { raw: { width: 40, height: 24, channels: 3 as const } };
    const webp = await sharp(Buffer.from(p.data), raw).webp({ lossless: true }).toBuffer();
    const fromWebp = await decodeImage(webp);
    assert.equal(fromWebp.format, "webp");
    assert.deepEqual(fromWebp.data, p.data);

    const jpeg = await sharp(Buffer.from(p.data), raw).jpeg({ quality: 95 }).toBuffer();
    const fromJpeg = await decodeImage(jpeg);
    assert.equal(fromJpeg.format, "jpeg");
    assert.deepEqual([fromJpeg.width, fromJpeg.height], [40, 24]);
    assert.equal(fromJpeg.data.length, 40 * 24 * 3);
  });

  test("alpha: the colours are kept as they are (PIL's convert('RGB')) and the alpha channel returned", async () => {
    const rgba = Buffer.alloc(4 * 4 * 4);
    for (let i = 0; i < 16; i++) rgba.set([200, 100, 50, i * 16], i * 4);
    const png = await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toBuffer();
    const out = await decodeImage(png);
    assert.equal(out.data.length, 48);
    for (let i = 0; i < 16; i++) assert.deepEqual([...out.data.subarray(i * 3, i * 3 + 3)], [200, 100, 50]);
    assert.deepEqual(
      [...(out.alpha as Uint8Array)],
      Array.from({ length: 16 }, (_, i) => i * 16),
    );
  });

  test("16-bit and palette PNGs and a CMYK JPEG come out as 8-bit RGB", async () => {
    const p = picture(8, 8);
    const base = sharp(Buffer.from(p.data), { raw: { width: 8, height: 8, channels: 3 } });
    const png16 = await decodeImage(await base.clone().toColourspace("rgb16").png().toBuffer());
    assert.deepEqual(png16.data, p.data);
    const palette = await decodeImage(await base.clone().png({ palette: true, colours: 256 }).toBuffer());
    assert.equal(palette.data.length, 8 * 8 * 3);
    const cmyk = await decodeImage(await base.clone().toColourspace("cmyk").jpeg({ quality: 100 }).toBuffer());
    assert.equal(cmyk.data.length, 8 * 8 * 3);
    assert.equal(cmyk.alpha, undefined);
  });

  test("a CMYK JPEG is made RGB as PIL's convert('RGB') makes it (no ICC transform), as diffusers and Cog read pictures", async () => {
    // 4×1, written by Pillow 9.4 from the inks below (Adobe polarity, quality 100, no subsampling).
    const jpeg = Buffer.from(
      "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwABAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB" +
        "AQEBAQEBAQEBAQEBAQEB/8AAFAgAAQAEBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//E" +
        "ALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2" +
        "Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrC" +
        "w8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwD6m/a6/wCSgz/9lS/bp/8AXn37" +
        "c9et+Lv+TW/+CW//AGiy/Y8/9RrXq/qz/wCCJ/8AyiX/AOCeP/Zo3wH/APVbeHK/sG/Yw/5Kp/wUe/7PuH/rFv7Gdf/Z",
      "base64",
    );
    // Pillow's reading: (0,245,255,2) (200,30,60,40) (10,10,10,200) (128,128,0,0) → its cmyk2rgb.
    const out = await decodeImage(jpeg);
    assert.deepEqual([...out.data], [253, 10, 0, 46, 190, 164, 53, 53, 53, 127, 127, 255]);
    assert.equal(out.alpha, undefined);
  });

  test("OpenAI's mask convention: fully transparent pixels are the area to repaint", async () => {
    const rgba = Buffer.alloc(2 * 2 * 4);
    for (const [i, a] of [0, 1, 255, 0].entries()) rgba.set([10, 20, 30, a], i * 4);
    const png = await sharp(rgba, { raw: { width: 2, height: 2, channels: 4 } })
      .png()
      .toBuffer();
    assert.deepEqual([...maskFromTransparency(await decodeImage(png)).data], [255, 0, 0, 255]);
    const opaque = await decodeImage(encodePng(picture(2, 2)));
    assert.deepEqual([...maskFromTransparency(opaque).data], [0, 0, 0, 0]);
  });

  test("a 100-megapixel PNG header is refused from the header, before decoding", async () => {
    const bytes = pngHeader(10_000, 10_000);
    assert.ok(bytes.length < 200);
    await refused(bytes, /10000×10000 \(100\.0 megapixels\), over the limit/);
  });

  test("huge dimensions in a tiny file (PNG 65535² and a JPEG whose frame header says 60000²) are refused", async () => {
    await refused(pngHeader(65_535, 65_535), /over the limit/);
    const jpeg = await sharp(Buffer.from(picture(8, 8).data), { raw: { width: 8, height: 8, channels: 3 } })
      .jpeg()
      .toBuffer();
    // SOF0 marker: FF C0, length (2), precision (1), height (2), width (2).
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    assert.ok(sof > 0);
    jpeg.writeUInt16BE(60_000, sof + 5);
    jpeg.writeUInt16BE(60_000, sof + 7);
    await refused(jpeg, /60000×60000 .* over the limit/, "mask");
  });

  test("the pixel limit is an option", async () => {
    const png = encodePng(picture(40, 24));
    await assert.rejects(decodeImage(png, { maxPixels: 40 * 24 - 1 }), /over the limit/);
    assert.equal((await decodeImage(png, { maxPixels: 40 * 24 })).width, 40);
  });

  test("a truncated PNG is a clear error, not a half-grey picture", async () => {
    const png = encodePng(picture(64, 64));
    for (const cut of [Math.floor(png.length / 2), png.length - 20, 40]) {
      await refused(png.subarray(0, cut), /could not be decoded|not a PNG, JPEG or WebP/);
    }
  });

  test("a PNG with a zero width is refused", async () => {
    await refused(pngHeader(0, 64), /not a PNG, JPEG or WebP|no size/);
  });

  test("an HTML page, random bytes and empty input are refused", async () => {
    await refused(Buffer.from("<!doctype html><html><body>Not found</body></html>"), /not a PNG, JPEG or WebP/);
    await refused(
      Uint8Array.from({ length: 1000 }, (_, i) => (i * 73 + 11) % 256),
      /not a PNG, JPEG or WebP/,
    );
    await refused(new Uint8Array(0), /is empty/);
  });

  test("formats other than PNG, JPEG and WebP (SVG, GIF) are refused by name", async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>',
    );
    await refused(svg, /svg file; PNG, JPEG or WebP expected/);
    const gif = await sharp(Buffer.from(picture(8, 8).data), { raw: { width: 8, height: 8, channels: 3 } })
      .gif()
      .toBuffer();
    await refused(gif, /gif file; PNG, JPEG or WebP expected/);
  });
});

describe("sizing and tensors", () => {
  test("the generation size: given width/height, else the picture's own rounded down to the VAE factor", () => {
    assert.deepEqual(targetSize({ width: 517, height: 389 }, 8), { width: 512, height: 384 });
    assert.deepEqual(targetSize({ width: 517, height: 389 }, 8, 256, 320), { width: 256, height: 320 });
    assert.deepEqual(targetSize({ width: 64, height: 64 }, 8), { width: 64, height: 64 });
  });

  test("resizePixels gives exactly the size asked, for RGB and grey; the same size is untouched", async () => {
    const p = picture(30, 20);
    assert.equal(await resizePixels(p, 30, 20), p);
    const rgb = await resizePixels(p, 16, 24);
    assert.deepEqual([rgb.width, rgb.height, rgb.data.length], [16, 24, 16 * 24 * 3]);
    const grey = await resizePixels(toGray(p), 8, 8);
    assert.deepEqual([grey.width, grey.height, grey.data.length], [8, 8, 64]);
  });

  test("grey as PIL's convert('L'), binarised at 128, nearest downsampling", () => {
    const g = toGray({ width: 3, height: 1, data: Uint8Array.of(255, 0, 0, 0, 255, 0, 127, 127, 127) });
    assert.deepEqual([...g.data], [76, 150, 127]);
    const mask = binariseMask({ width: 4, height: 1, data: Uint8Array.of(0, 127, 128, 255) });
    assert.deepEqual([...mask.data], [0, 0, 1, 1]);
    const x = { data: Float32Array.from({ length: 36 }, (_, i) => i), shape: [1, 1, 6, 6] };
    assert.deepEqual([...resizeNearest(x, 3, 2).data], [0, 3, 12, 15, 24, 27]);
    // Upsampling (another mask size) repeats source pixels.
    assert.deepEqual([...resizeNearest({ data: Float32Array.of(1, 2), shape: [1, 1, 1, 2] }, 1, 4).data], [1, 1, 2, 2]);
  });

  test("pixels → [1, 3, H, W] in [-1, 1]", () => {
    const t = pixelsToTensor({ width: 2, height: 1, data: Uint8Array.of(0, 128, 255, 255, 0, 64) });
    assert.deepEqual(t.shape, [1, 3, 1, 2]);
    assert.deepEqual(
      [...t.data],
      [
        -1,
        1,
        Math.fround(Math.fround(2 * Math.fround(128 / 255)) - 1),
        -1,
        1,
        Math.fround(Math.fround(2 * Math.fround(64 / 255)) - 1),
      ],
    );
  });
});
