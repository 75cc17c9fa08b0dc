/** The cheap latents → RGB preview: one linear map per latent pixel, noise scaled down first. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { canPreview, latentsToPreviewImages } from "../../src/engine/latent-preview.js";

/** [1, 4, 1, 1] latents holding one value per channel. */
function pixel(values: [number, number, number, number]) {
  return { data: Float32Array.from(values), shape: [1, 4, 1, 1] };
}

test("each latent channel maps to RGB through the SD 1.x factors, [-1, 1] → [0, 255]", () => {
  // Channel 3 alone at -1: (0.184, 0.271, 0.473) → bluish.
  assert.deepEqual([...(latentsToPreviewImages(pixel([0, 0, 0, -1]))[0]?.data ?? [])], [151, 162, 188]);
  // All zero is mid grey.
  assert.deepEqual([...(latentsToPreviewImages(pixel([0, 0, 0, 0]))[0]?.data ?? [])], [128, 128, 128]);
  // Spread 1.30 (population std of 0, 0, 0, -3): divided by it, then blue saturates at 255.
  assert.deepEqual([...(latentsToPreviewImages(pixel([0, 0, 0, -3]))[0]?.data ?? [])], [182, 207, 255]);
});

test("one image per batch entry at latent size; noisy latents are scaled to unit spread", () => {
  const [b, h, w] = [2, 3, 5];
  const plane = h * w;
  const data = new Float32Array(b * 4 * plane);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 1.7) * 2; // spread > 1
  const images = latentsToPreviewImages({ data, shape: [b, 4, h, w] });
  assert.equal(images.length, 2);
  for (const image of images) {
    assert.equal(image.width, w);
    assert.equal(image.height, h);
    assert.equal(image.data.length, plane * 3);
  }
  // Ten times the noise looks the same: only its direction matters once the spread exceeds 1.
  const louder = latentsToPreviewImages({ data: data.map((v) => v * 10), shape: [b, 4, h, w] });
  assert.deepEqual(louder, images);
  // The second image is made from the second batch entry only.
  const second = latentsToPreviewImages({ data: data.subarray(4 * plane), shape: [1, 4, h, w] });
  assert.deepEqual(second[0], images[1]);
});

test("only 4-channel latents have a preview", () => {
  assert.equal(canPreview({ data: new Float32Array(3), shape: [1, 3, 1, 1] }), false);
  assert.equal(canPreview({ data: new Float32Array(4), shape: [1, 4, 1, 1] }), true);
  assert.throws(() => latentsToPreviewImages({ data: new Float32Array(3), shape: [1, 3, 1, 1] }));
});
