/**
 * Which files a Hub pull takes for SDXL repositories (planPipelineFiles): the second text encoder
 * and its tokenizer with the base's, only those for the refiner, nothing new for SD.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { planPipelineFiles } from "../../src/engine/hub/select.js";

const common = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "unet/config.json",
  "unet/diffusion_pytorch_model.safetensors",
  "unet/diffusion_pytorch_model.fp16.safetensors",
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
  "vae_1_0/config.json",
  "vae_1_0/diffusion_pytorch_model.safetensors",
  "sd_xl_base_1.0.safetensors",
  "README.md",
];
const encoder = (dir: string) => [`${dir}/config.json`, `${dir}/model.safetensors`, `${dir}/model.fp16.safetensors`];
const tokenizer = (dir: string) =>
  ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"].map((f) => `${dir}/${f}`);

test("SDXL base: both encoders and both tokenizers, one variant, no single-file checkpoint or vae_1_0", () => {
  const listing = [
    ...common,
    ...encoder("text_encoder"),
    ...encoder("text_encoder_2"),
    ...tokenizer("tokenizer"),
    ...tokenizer("tokenizer_2"),
  ];
  const { files } = planPipelineFiles(listing, "fp32", "stabilityai/stable-diffusion-xl-base-1.0");
  assert.deepEqual(
    new Set(files),
    new Set([
      "model_index.json",
      "scheduler/scheduler_config.json",
      ...tokenizer("tokenizer"),
      ...tokenizer("tokenizer_2"),
      "text_encoder/config.json",
      "text_encoder/model.safetensors",
      "unet/config.json",
      "unet/diffusion_pytorch_model.safetensors",
      "vae/config.json",
      "vae/diffusion_pytorch_model.safetensors",
      "text_encoder_2/config.json",
      "text_encoder_2/model.safetensors",
    ]),
  );
});

test("SDXL refiner: text_encoder_2 and tokenizer_2 only", () => {
  const listing = [...common, ...encoder("text_encoder_2"), ...tokenizer("tokenizer_2")];
  const { files } = planPipelineFiles(listing, "fp16", "stabilityai/stable-diffusion-xl-refiner-1.0");
  assert.ok(files.includes("text_encoder_2/model.fp16.safetensors"));
  assert.ok(files.includes("tokenizer_2/vocab.json"));
  assert.ok(!files.some((f) => f.startsWith("tokenizer/") || f.startsWith("text_encoder/")));
});

test("an SDXL repository missing tokenizer_2's vocabulary is refused by name", () => {
  const listing = [...common, ...encoder("text_encoder"), ...encoder("text_encoder_2"), ...tokenizer("tokenizer")];
  assert.throws(
    () => planPipelineFiles(listing, "fp32", "someone/sdxl"),
    (err: unknown) => err instanceof ModelError && err.message.includes("tokenizer_2/vocab.json"),
  );
});
