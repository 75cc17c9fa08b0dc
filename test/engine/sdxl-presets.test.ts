/**
 * The engine's graphs for the published SDXL configs (presets/, no weights) bind exactly the
 * parameters of the published checkpoints: UNet 2,567,463,684 in 1,680 tensors, CLIP ViT-L
 * 123,060,480, OpenCLIP ViT-bigG with projection 694,659,840. A missing or extra layer (the
 * add_embedding, text_projection, per-block transformer depths) would change these counts.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import type { ComponentName } from "../../src/engine/weights/model-folder.js";
import { impliedTensorShapes } from "../../src/engine/weights/random-weights.js";
import { REPO_ROOT, readJson } from "../helpers/fixtures.js";

function parameters(preset: string, component: ComponentName): { count: number; tensors: number } {
  const config = readJson<Record<string, unknown>>(path.join(REPO_ROOT, "presets", preset, component, "config.json"));
  const shapes = impliedTensorShapes(component, config);
  let count = 0;
  for (const s of shapes.values()) count += s.reduce((a, d) => a * d, 1);
  return { count, tensors: shapes.size };
}

for (const preset of ["sdxl", "sdxl-turbo"]) {
  test(`${preset}: the UNet and both text encoders have the published parameter counts`, () => {
    assert.deepEqual(parameters(preset, "unet"), { count: 2_567_463_684, tensors: 1680 });
    assert.equal(parameters(preset, "text_encoder").count, 123_060_480);
    assert.equal(parameters(preset, "text_encoder_2").count, 694_659_840);
  });
}

test("sdxl-refiner: four transformer layers in each attention block, the aesthetic-score embedding width", () => {
  const config = readJson<Record<string, unknown>>(path.join(REPO_ROOT, "presets/sdxl-refiner/unet/config.json"));
  const shapes = impliedTensorShapes("unet", config);
  assert.deepEqual(shapes.get("add_embedding.linear_1.weight"), [4 * 384, 1280 + 5 * 256]);
  assert.ok(shapes.has("down_blocks.1.attentions.0.transformer_blocks.3.attn1.to_q.weight"));
  assert.ok(!shapes.has("down_blocks.1.attentions.0.transformer_blocks.4.attn1.to_q.weight"));
  assert.ok(!shapes.has("down_blocks.0.attentions.0.proj_in.weight"));
});
