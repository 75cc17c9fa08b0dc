/**
 * `--vae`: another VAE for a model, from a diffusers VAE folder or a single `.safetensors` VAE
 * file (original LDM names, bare or under first_stage_model., or diffusers names). A swapped
 * VAE must decode exactly as the same weights do inside a model.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import type { TensorF32 } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { writeRandomComponent } from "../../src/engine/weights/random-weights.js";
import { readSafetensors } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbsDiff, modelDir, SHARED } from "../helpers/fixtures.js";
import { copyModel } from "../helpers/model-copy.js";

const CHECKPOINT = path.join(SHARED, "fixtures/golden-family/single_file/tiny-sd1.safetensors");
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-vae-"));
const opened: Pipeline[] = [];
after(async () => {
  for (const p of opened) await p.release();
  rmSync(tmp, { recursive: true, force: true });
});

async function load(source: string, opts: Parameters<typeof loadPipeline>[1] = {}): Promise<Pipeline> {
  const p = await loadPipeline(source, { threads: 1, ...opts });
  opened.push(p);
  return p;
}

const latents: TensorF32 = {
  data: Float32Array.from({ length: 4 * 8 * 8 }, (_, i) => Math.sin(i * 0.37) * 2),
  shape: [1, 4, 8, 8],
};

/** The checkpoint's first_stage_model.* tensors, bytes as they are, under `rename(key)`. */
async function extractVae(file: string, rename: (key: string) => string): Promise<void> {
  const st = await readSafetensors(CHECKPOINT);
  const bytes = readFileSync(CHECKPOINT);
  const tensors = [...st.tensors.values()]
    .filter((t) => t.name.startsWith("first_stage_model."))
    .map((t) => ({
      name: rename(t.name),
      dtype: t.dtype,
      shape: t.shape,
      data: bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength),
    }));
  await writeSafetensors(file, tensors);
}

describe("a VAE from a single file", () => {
  let reference: Float32Array;
  let base: Float32Array;
  before(async () => {
    reference = (await (await load(CHECKPOINT, { config: modelDir("tiny-sd1") })).vae.decode(latents)).data;
    base = (await (await load(modelDir("tiny-sd1"))).vae.decode(latents)).data;
  });

  for (const [what, rename] of [
    ["original names", (k: string) => k.slice("first_stage_model.".length)],
    ["original names under first_stage_model.", (k: string) => k],
  ] as const) {
    test(`${what} decode exactly as inside the checkpoint`, async () => {
      const file = path.join(tmp, `vae-${what.length}.safetensors`);
      await extractVae(file, rename);
      const swapped = await load(modelDir("tiny-sd1"), { vae: file });
      const out = (await swapped.vae.decode(latents)).data;
      assert.equal(maxAbsDiff(out, reference), 0);
      assert.ok(maxAbsDiff(out, base) > 0, "the swap changed nothing");
      assert.deepEqual(swapped.folder.vae.weightFiles, [file], "pictures are encoded with the swapped VAE too");
    });
  }
});

test("a diffusers VAE folder decodes as the same VAE inside a model folder", async () => {
  const vaeDir = path.join(tmp, "random-vae");
  const config = JSON.parse(readFileSync(path.join(modelDir("tiny-sd1"), "vae", "config.json"), "utf8"));
  await writeRandomComponent(vaeDir, "vae", config, { seed: 9 });
  const copy = copyModel("tiny-sd1");
  try {
    rmSync(path.join(copy.dir, "vae"), { recursive: true });
    cpSync(vaeDir, path.join(copy.dir, "vae"), { recursive: true });
    const swapped = (await (await load(modelDir("tiny-sd1"), { vae: vaeDir })).vae.decode(latents)).data;
    const inside = (await (await load(copy.dir)).vae.decode(latents)).data;
    assert.equal(maxAbsDiff(swapped, inside), 0);
    // Pictures (img2img, inpainting) are encoded with the swapped VAE too.
    const swappedPipe = opened.at(-2) as Pipeline;
    assert.equal(swappedPipe.folder.vae.dir, vaeDir);
  } finally {
    copy.remove();
  }
});

describe("bad VAEs", () => {
  const rejects = async (vae: string, pattern: RegExp) => {
    await assert.rejects(load(modelDir("tiny-sd1"), { vae }), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(vae)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };

  test("a whole checkpoint", () => rejects(CHECKPOINT, /whole model checkpoint/));
  test("a file with no decoder", async () => {
    const file = path.join(tmp, "nodecoder.safetensors");
    await writeSafetensors(file, [
      { name: "encoder.conv_in.weight", dtype: "F32", shape: [1], data: new Float32Array(1) },
    ]);
    await rejects(file, /not a VAE/);
  });
  test("a VAE of another architecture", async () => {
    const file = path.join(tmp, "sd2v-vae.safetensors");
    const other = await readSafetensors(path.join(SHARED, "fixtures/golden-family/single_file/tiny-sd2v.safetensors"));
    const bytes = readFileSync(other.path);
    await writeSafetensors(
      file,
      [...other.tensors.values()]
        .filter((t) => t.name.startsWith("first_stage_model."))
        .map((t) => ({ ...t, data: bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength) })),
    );
    await rejects(file, /shape|not found/);
  });
  test("a pickle", async () => {
    const file = path.join(tmp, "vae.pt");
    writeFileSync(file, Buffer.from([0x80, 0x02]));
    await rejects(file, /pickle/);
  });
  test("a missing path", () => rejects(path.join(tmp, "nope.safetensors"), /not found/));
});
