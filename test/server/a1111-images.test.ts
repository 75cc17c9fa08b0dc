/**
 * A1111's img2img picture operations (server/a1111/images.ts) on small pictures worked out by
 * hand: resize_image's crop-and-resize and resize-and-fill, the mask blur against a direct
 * OpenCV-style convolution (reflect-101 borders; within 1 of it, the 8-bit rounding), the crop
 * region and its expansion (masking.py), fill, and the paste-back that leaves the original
 * untouched outside the generated box.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  blurKernelSize,
  blurMask,
  cropRegion,
  expandCropRegion,
  fillMasked,
  gaussianKernel,
  overlayOriginal,
  resizeImage,
} from "../../src/server/a1111/images.js";

const gray = (width: number, height: number, f: (x: number, y: number) => number) => {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = f(x, y);
  return { width, height, data };
};
const rgb = (width: number, height: number, f: (x: number, y: number) => [number, number, number]) => {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(f(x, y), (y * width + x) * 3);
  return { width, height, data };
};

/** cv2.GaussianBlur along x with BORDER_REFLECT_101, in float, rounded. */
function referenceBlurX(m: { width: number; height: number; data: Uint8Array }, sigma: number): Uint8Array {
  const size = blurKernelSize(sigma);
  const r = (size - 1) / 2;
  const k = gaussianKernel(size, sigma);
  const reflect = (i: number, n: number) => {
    let j = i;
    while (j < 0 || j >= n) j = j < 0 ? -j : 2 * (n - 1) - j;
    return j;
  };
  const out = new Uint8Array(m.data.length);
  for (let y = 0; y < m.height; y++) {
    for (let x = 0; x < m.width; x++) {
      let s = 0;
      for (let t = -r; t <= r; t++)
        s += (k[t + r] as number) * (m.data[y * m.width + reflect(x + t, m.width)] as number);
      out[y * m.width + x] = Math.round(s);
    }
  }
  return out;
}

describe("A1111 img2img picture operations", () => {
  test("resize_mode 1 (crop and resize): scaled to cover, the centre kept", async () => {
    // 4×2 → 2×2: already 2 high, so the middle two columns.
    const im = gray(4, 2, (x, y) => x * 10 + y);
    const out = await resizeImage(1, im, 2, 2);
    assert.deepEqual([...out.data], [10, 20, 11, 21]);
  });

  test("resize_mode 2 (resize and fill): scaled to fit, bands from the edge lines", async () => {
    // 4×2 → 4×4: the picture in rows 1–2; row 0 from the top edge, row 3 from the bottom edge:
    // PIL's Lanczos at the edge of 2 lines weighs them lanczos(0.5) and lanczos(1.5).
    const im = gray(4, 2, (_x, y) => (y === 0 ? 100 : 200));
    const out = await resizeImage(2, im, 4, 4);
    const l = (x: number) => (3 * Math.sin(Math.PI * x) * Math.sin((Math.PI * x) / 3)) / (Math.PI * x) ** 2;
    const top = Math.round((l(0.5) * 100 + l(1.5) * 200) / (l(0.5) + l(1.5)));
    const bottom = Math.round((l(0.5) * 200 + l(1.5) * 100) / (l(0.5) + l(1.5)));
    assert.deepEqual(
      [...out.data],
      [top, top, top, top, 100, 100, 100, 100, 200, 200, 200, 200, bottom, bottom, bottom, bottom],
    );
    // Every mode makes the size asked for.
    for (const mode of [0, 1, 2, 3]) {
      const r = await resizeImage(
        mode,
        rgb(30, 17, (x, y) => [x * 8, y * 15, 77]),
        24,
        40,
      );
      assert.deepEqual([r.width, r.height, r.data.length], [24, 40, 24 * 40 * 3]);
    }
  });

  test("mask blur: A1111's kernel size and OpenCV's Gaussian along one axis", async () => {
    assert.equal(blurKernelSize(4), 21);
    assert.equal(blurKernelSize(1), 7);
    const spike = gray(13, 3, (x, y) => (x === 4 || (x === 11 && y === 1) ? 255 : x === 0 ? 60 : 0));
    for (const sigma of [1, 2.5, 4, 9]) {
      const got = await blurMask(spike, sigma, "x");
      const want = referenceBlurX(spike, sigma);
      for (const [i, w] of want.entries())
        assert.ok(Math.abs((got.data[i] as number) - w) <= 1, `σ ${sigma} [${i}]: ${got.data[i]} vs ${w}`);
    }
    // Along y is along x of the transposed mask.
    const t = gray(3, 13, (x, y) => spike.data[x * 13 + y] as number);
    const gy = await blurMask(t, 2, "y");
    const want = referenceBlurX(spike, 2);
    for (let y = 0; y < 13; y++)
      for (let x = 0; x < 3; x++)
        assert.ok(Math.abs((gy.data[y * 3 + x] as number) - (want[x * 13 + y] as number)) <= 1);
  });

  test("crop region (masking.get_crop_region) and its expansion to the processing ratio", () => {
    const m = gray(100, 80, (x, y) => (x >= 40 && x < 60 && y >= 10 && y < 20 ? 255 : 0));
    assert.deepEqual(cropRegion(m, 0), [40, 10, 60, 20]);
    assert.deepEqual(cropRegion(m, 15), [25, 0, 75, 35]);
    assert.equal(
      cropRegion(
        gray(5, 5, () => 0),
        4,
      ),
      undefined,
    );
    // 20×10 to a square: 10 more rows, 5 above and 5 below.
    assert.deepEqual(expandCropRegion([40, 10, 60, 20], 512, 512, 100, 80), [40, 5, 60, 25]);
    // Pushed back inside at the top: y1 −5 → 0, y2 moved down as much.
    assert.deepEqual(expandCropRegion([40, 0, 60, 10], 512, 512, 100, 80), [40, 0, 60, 20]);
    // Too tall for 2:1: widened by 30, 15 each side, pushed in from the right edge.
    assert.deepEqual(expandCropRegion([85, 0, 100, 15], 256, 128, 100, 80), [70, 0, 100, 15]);
  });

  test("fill: the area to repaint takes the colours around it; an empty mask changes nothing", async () => {
    const im = rgb(16, 8, (x) => (x < 8 ? [200, 40, 40] : [0, 0, 255]));
    const none = await fillMasked(
      im,
      gray(16, 8, () => 0),
    );
    assert.deepEqual(none.data, im.data);
    const filled = await fillMasked(
      im,
      gray(16, 8, (x) => (x >= 8 ? 255 : 0)),
    );
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 16; x++) {
        const i = (y * 16 + x) * 3;
        // The kept half is as it was; the blue half is now the red around it (to the 8-bit
        // rounding of the blurred, premultiplied layers: within 3).
        const px = [...filled.data.subarray(i, i + 3)];
        if (x < 8) assert.deepEqual(px, [200, 40, 40], `(${x}, ${y})`);
        else
          for (const [k, v] of [200, 40, 40].entries())
            assert.ok(Math.abs((px[k] as number) - v) <= 3, `(${x}, ${y}): ${px}`);
      }
    }
  });

  test("paste-back: outside the generated box the original, exactly; inside, the generated picture where the mask is white", async () => {
    const original = rgb(20, 10, (x, y) => [x * 10, y * 20, 5]);
    const mask = gray(20, 10, (x, y) => (x >= 6 && x < 10 && y >= 2 && y < 6 ? 255 : 0));
    const generated = rgb(8, 8, () => [1, 2, 3]);
    const out = await overlayOriginal(generated, original, mask, { x: 4, y: 1, width: 8, height: 8 });
    for (let y = 0; y < 10; y++) {
      for (let x = 0; x < 20; x++) {
        const i = (y * 20 + x) * 3;
        const inMask = x >= 6 && x < 10 && y >= 2 && y < 6;
        assert.deepEqual([...out.data.subarray(i, i + 3)], inMask ? [1, 2, 3] : [...original.data.subarray(i, i + 3)]);
      }
    }
  });
});
