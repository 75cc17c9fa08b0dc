/**
 * Bad models give errors that name the file and the field at fault, before any session runs.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { TextEncoder, UNet, VaeDecoder } from "../../src/engine/networks.js";
import { loadPipeline } from "../../src/engine/pipeline.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { copyModel } from "../helpers/model-copy.js";

function expectModelError(fn: () => Promise<unknown>, ...parts: (string | RegExp)[]) {
  return assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof ModelError, `expected a ModelError, got ${String(err)}`);
    for (const p of parts) {
      if (typeof p === "string") assert.ok(err.message.includes(p), `"${err.message}" should mention ${p}`);
      else assert.match(err.message, p);
    }
    return true;
  });
}

describe("bad models", () => {
  const copies: { remove(): void }[] = [];
  after(() => {
    for (const c of copies) c.remove();
  });
  const copy = (m: "tiny-sd1" | "tiny-sd2v") => {
    const c = copyModel(m);
    copies.push(c);
    return c;
  };

  test("an unknown block type names config.json and the field", async () => {
    const c = copy("tiny-sd1");
    const file = c.patchConfig("unet", { down_block_types: ["AttnDownBlock2D", "CrossAttnDownBlock2D"] });
    const folder = await openModelFolder(c.dir);
    await expectModelError(() => UNet.load(folder.unet, {}), file, "down_block_types[0]", "AttnDownBlock2D");
  });

  test("an unsupported option names the field", async () => {
    const c = copy("tiny-sd2v");
    const file = c.patchConfig("unet", { class_embed_type: "timestep" });
    const folder = await openModelFolder(c.dir);
    await expectModelError(() => UNet.load(folder.unet, {}), file, "class_embed_type", "not supported");
  });

  test("an unsupported activation in the text encoder names the field", async () => {
    const c = copy("tiny-sd1");
    const file = c.patchConfig("text_encoder", { hidden_act: "relu" });
    const folder = await openModelFolder(c.dir);
    await expectModelError(() => TextEncoder.load(folder.textEncoder, {}), file, "hidden_act", "relu");
  });

  test("a config that disagrees with the weights names the weights file and tensor", async () => {
    const c = copy("tiny-sd1");
    c.patchConfig("unet", { cross_attention_dim: 40 });
    const folder = await openModelFolder(c.dir);
    await expectModelError(
      () => UNet.load(folder.unet, {}),
      "diffusion_pytorch_model.safetensors",
      /attn2\.to_k\.weight/,
      "[64, 32]",
      "[64, 40]",
    );
  });

  test("a tensor of the wrong shape in the weights file names the file and tensor", async () => {
    const c = copy("tiny-sd1");
    const file = path.join(c.dir, "vae", "diffusion_pytorch_model.safetensors");
    const st = await readSafetensors(file);
    const tensors = [];
    for (const t of st.tensors.values()) {
      const data = await readTensor(t);
      const shape =
        t.name === "decoder.conv_in.weight" ? [t.shape[0] as number, (t.shape[1] as number) * 2, 3, 3] : t.shape;
      const bytes = t.name === "decoder.conv_in.weight" ? Float32Array.from([...data, ...data]) : data;
      tensors.push({ name: t.name, dtype: "F32" as const, shape, data: bytes });
    }
    await writeSafetensors(file, tensors);
    const folder = await openModelFolder(c.dir);
    await expectModelError(() => VaeDecoder.load(folder.vae, {}), file, "decoder.conv_in.weight");
  });

  test("a missing weight names the component and tensor", async () => {
    const c = copy("tiny-sd1");
    const file = path.join(c.dir, "text_encoder", "model.safetensors");
    const st = await readSafetensors(file);
    const tensors = [];
    for (const t of st.tensors.values()) {
      if (t.name === "text_model.final_layer_norm.bias") continue;
      tensors.push({ name: t.name, dtype: "F32" as const, shape: t.shape, data: await readTensor(t) });
    }
    await writeSafetensors(file, tensors);
    const folder = await openModelFolder(c.dir);
    await expectModelError(
      () => TextEncoder.load(folder.textEncoder, {}),
      "text_model.final_layer_norm.bias",
      "not found",
    );
  });

  test("a missing folder or weights file is named", async () => {
    await expectModelError(() => loadPipeline(path.join(copy("tiny-sd1").dir, "nope")), "nope");
    const c = copy("tiny-sd2v");
    const { rmSync } = await import("node:fs");
    rmSync(path.join(c.dir, "unet", "diffusion_pytorch_model.safetensors"));
    await expectModelError(() => loadPipeline(c.dir), "unet");
  });

  test("a pipeline that is not SD 1.x / 2.x / SDXL is refused by model_index.json", async () => {
    const c = copy("tiny-sd1");
    const { writeFileSync, readFileSync } = await import("node:fs");
    const file = path.join(c.dir, "model_index.json");
    const index = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ ...index, _class_name: "StableDiffusion3Pipeline" }));
    await expectModelError(() => loadPipeline(c.dir), "model_index.json", "_class_name", "StableDiffusion3Pipeline");
  });

  test("an SD folder that calls itself SDXL is refused by what its text encoder lacks", async () => {
    const c = copy("tiny-sd1");
    const { writeFileSync, readFileSync } = await import("node:fs");
    const file = path.join(c.dir, "model_index.json");
    const index = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify({ ...index, _class_name: "StableDiffusionXLPipeline" }));
    await expectModelError(() => loadPipeline(c.dir), "text_encoder/config.json", "architectures", "WithProjection");
  });

  test("a CUDA request where CUDA is missing fails with a clear message", async () => {
    const c = copy("tiny-sd1");
    const folder = await openModelFolder(c.dir);
    await assert.rejects(
      () => VaeDecoder.load(folder.vae, { provider: "cuda" }),
      (err: unknown) => err instanceof ModelError && /CUDA/.test(err.message) && /cpu/.test(err.message),
    );
  });
});
