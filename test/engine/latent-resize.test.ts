/**
 * interpolate() against torch.nn.functional.interpolate(align_corners=False), on small cases
 * worked out by hand from ATen's formulas (UpSample.h, UpSampleKernel.cpp): positions, taps and
 * weights, written out below each case. Exact where the arithmetic is exact in float32; else to
 * 1e-6 (the values are float32s of the hand-computed fractions).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { interpolate, LATENT_UPSCALE_MODES } from "../../src/engine/latent-resize.js";

const row = (values: number[]) => ({ data: Float32Array.from(values), shape: [1, 1, 1, values.length] });
const close = (got: Float32Array, want: number[], tol = 1e-6) => {
  assert.equal(got.length, want.length);
  for (const [i, w] of want.entries()) {
    assert.ok(Math.abs((got[i] as number) - w) <= tol, `[${i}]: ${got[i]} vs ${w}`);
  }
};

describe("interpolate (torch semantics, align_corners=False)", () => {
  test("nearest: source floor(dst · in/out)", () => {
    // 2 → 4: scale 0.5 → sources 0, 0, 1, 1; 3 → 2: scale 1.5 → 0, floor(1.5) = 1.
    assert.deepEqual([...interpolate(row([5, 9]), 1, 4, { mode: "nearest" }).data], [5, 5, 9, 9]);
    assert.deepEqual([...interpolate(row([1, 2, 3]), 1, 2, { mode: "nearest" }).data], [1, 2]);
  });

  test("nearest-exact: source floor((dst + 0.5) · in/out)", () => {
    // 3 → 2: floor(0.75) = 0, floor(2.25) = 2 (plain nearest reads 0 and 1).
    assert.deepEqual([...interpolate(row([1, 2, 3]), 1, 2, { mode: "nearest-exact" }).data], [1, 3]);
    // 2 → 3: scale 2/3 → floor(1/3) = 0, floor(1) = 1, floor(5/3) = 1.
    assert.deepEqual([...interpolate(row([4, 8]), 1, 3, { mode: "nearest-exact" }).data], [4, 8, 8]);
  });

  test("bilinear: (dst + 0.5) · scale − 0.5, clamped at 0", () => {
    // 2 → 4: positions 0 (clamped), 0.25, 0.75, 1.25 (the right tap clamped) → 0, 1, 3, 4.
    assert.deepEqual([...interpolate(row([0, 4]), 1, 4, { mode: "bilinear" }).data], [0, 1, 3, 4]);
    // 4 → 2 without antialias: positions 0.5 and 2.5.
    assert.deepEqual([...interpolate(row([0, 1, 2, 3]), 1, 2, { mode: "bilinear" }).data], [0.5, 2.5]);
  });

  test("bilinear on both axes: 2×2 → 4×4", () => {
    const x = { data: Float32Array.from([0, 4, 8, 12]), shape: [1, 1, 2, 2] };
    const out = interpolate(x, 4, 4, { mode: "bilinear" });
    assert.deepEqual(out.shape, [1, 1, 4, 4]);
    // Rows [0, 1, 3, 4] and [8, 9, 11, 12], then the same weights down the columns.
    assert.deepEqual([...out.data], [0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12]);
  });

  test("torch's own example (nn.Upsample's documentation): [[1, 2], [3, 4]] × 2, bilinear and nearest", () => {
    const x = { data: Float32Array.from([1, 2, 3, 4]), shape: [1, 1, 2, 2] };
    assert.deepEqual(
      [...interpolate(x, 4, 4, { mode: "bilinear" }).data],
      [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4],
    );
    assert.deepEqual(
      [...interpolate(x, 4, 4, { mode: "nearest" }).data],
      [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4],
    );
  });

  test("bilinear antialiased: the triangle widened by the scale when shrinking", () => {
    // 4 → 2, scale 2, support 2: output 0 (centre 1) takes inputs 0, 1, 2 with weights
    // tri(−0.25), tri(0.25), tri(0.75) = 0.75, 0.75, 0.25 (sum 1.75) → 1.25 / 1.75;
    // output 1 (centre 3) takes 1, 2, 3 with 0.25, 0.75, 0.75 → 4 / 1.75.
    close(interpolate(row([0, 1, 2, 3]), 1, 2, { mode: "bilinear", antialias: true }).data, [1.25 / 1.75, 4 / 1.75]);
    // Growing, the antialiased filter is plain bilinear (the edge taps renormalised, not clamped).
    assert.deepEqual([...interpolate(row([0, 4]), 1, 4, { mode: "bilinear", antialias: true }).data], [0, 1, 3, 4]);
  });

  test("bicubic: Keys' cubic with A = −0.75, four taps clamped to the edge", () => {
    // 2 → 4 of [0, 4]: output 0 sits at −0.25 (t = 0.75): weights cc2(1.75) = −0.03515625,
    // cc1(0.75) = 0.26171875, cc1(0.25) = 0.87890625, cc2(1.25) = −0.10546875 on inputs
    // 0, 0, 0, 1 → 4 · −0.10546875; output 1 at 0.25 (t = 0.25): −0.10546875, 0.87890625,
    // 0.26171875, −0.03515625 on 0, 0, 1, 1 → 4 · 0.2265625; the rest by symmetry.
    const out = interpolate(row([0, 4]), 1, 4, { mode: "bicubic" });
    assert.deepEqual([...out.data], [-0.421875, 0.90625, 3.09375, 4.421875]);
  });

  test("bicubic antialiased: the cubic with A = −0.5 (PIL's), widened and renormalised", () => {
    // 4 → 2, support 4, inverse scale 0.5: output 0 (centre 1) weighs inputs 0..3 by
    // cubic(−0.25), cubic(0.25), cubic(0.75), cubic(1.25) = 0.8671875, 0.8671875, 0.2265625,
    // −0.0703125 (sum 1.890625) → 1.109375 / 1.890625; output 1 mirrors it.
    const v = 1.109375 / 1.890625;
    close(interpolate(row([0, 1, 2, 3]), 1, 2, { mode: "bicubic", antialias: true }).data, [v, 3 - v]);
  });

  test("planes are independent, the same size is the identity", () => {
    const x = { data: Float32Array.from([1, 2, 3, 4, 10, 20, 30, 40]), shape: [1, 2, 2, 2] };
    for (const opts of Object.values(LATENT_UPSCALE_MODES)) {
      assert.deepEqual([...interpolate(x, 2, 2, opts).data], [...x.data]);
    }
    const out = interpolate(x, 4, 4, { mode: "nearest" });
    assert.deepEqual([...out.data.subarray(16)], [10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40]);
  });

  test("A1111's six latent upscale modes", () => {
    assert.deepEqual(Object.keys(LATENT_UPSCALE_MODES), [
      "Latent",
      "Latent (antialiased)",
      "Latent (bicubic)",
      "Latent (bicubic antialiased)",
      "Latent (nearest)",
      "Latent (nearest-exact)",
    ]);
  });

  test("bad arguments are RequestErrors", () => {
    assert.throws(() => interpolate(row([1]), 0, 2, { mode: "bilinear" }), RequestError);
    assert.throws(() => interpolate(row([1]), 1, 2.5, { mode: "bilinear" }), RequestError);
    assert.throws(() => interpolate(row([1]), 1, 2, { mode: "nearest", antialias: true }), RequestError);
    assert.throws(
      () => interpolate({ data: new Float32Array(2), shape: [2] }, 1, 2, { mode: "nearest" }),
      RequestError,
    );
  });
});
