/**
 * Single-file checkpoints in the original LDM layout (golden-family/single_file): the key
 * mapping gives exactly the folder's weights rounded to float16, and a full run from the file
 * gives diffusers' from_single_file images. Bad files fail with errors naming the file.
 *
 * Tolerances reached: step latents ≤ 1e-4 relative to the tensor's max |value| (as the folder
 * runs in pipeline.test.ts), image 1e-4 abs.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { loadPipeline } from "../../src/engine/pipeline.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { halfToFloat, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { decidePredictionType, openSingleFile } from "../../src/engine/weights/single-file.js";
import { FIXTURE_MODELS, maxAbs, maxAbsDiff, modelDir, readJson, SHARED } from "../helpers/fixtures.js";

const DIR = path.join(SHARED, "fixtures/golden-family/single_file");
const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;

// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
const manifest: any = readJson(path.join(DIR, "manifest.json"));

function ref(key: string): Float32Array {
  const entry = manifest.files[key];
  const buf = readFileSync(path.join(DIR, entry.file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** float32 → nearest float16 (ties to even) → float32. */
function roundToHalf(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0] as number;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  let h: number;
  if (exp >= 31) h = sign | 0x7c00;
  else if (exp <= 0) {
    if (exp < -10) h = sign;
    else {
      mant |= 0x800000;
      const shift = 14 - exp;
      const half = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      h = sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
    }
  } else {
    const half = (exp << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    h = sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
  }
  return halfToFloat(h);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-single-file-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

for (const model of FIXTURE_MODELS) {
  const file = path.join(DIR, `${model}.safetensors`);
  // biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
  const entry = manifest.checkpoints.find((c: any) => c.id === model);

  describe(`${model} single file`, () => {
    test("the key mapping gives exactly the folder's weights, rounded to float16", async () => {
      const folder = await openModelFolder(modelDir(model));
      const single = await openSingleFile(file, { config: modelDir(model) });
      for (const name of ["unet", "vae", "textEncoder"] as const) {
        const want = folder[name].tensors;
        const got = single[name].tensors;
        assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), `${name}: tensor names`);
        for (const [key, w] of want) {
          const g = got.get(key)!;
          // The LDM VAE attention stores 1×1 convs where diffusers has linears: same bytes.
          assert.deepEqual(g.shape, w.shape, `${name}.${key}: shape`);
          const a = await readTensor(g);
          const b = await readTensor(w);
          for (let i = 0; i < b.length; i++) {
            if (a[i] !== roundToHalf(b[i] as number)) {
              assert.fail(`${name}.${key}[${i}]: ${a[i]} is not ${b[i]} rounded to float16`);
            }
          }
        }
      }
    });

    test(`a run from the file equals diffusers' from_single_file (${entry.run.scheduler_class})`, async () => {
      const pipe = await loadPipeline(file, { config: modelDir(model), threads: 2 });
      try {
        const run = entry.run;
        const steps: Float32Array[] = [];
        const init = ref(`${model}_initial_latents`);
        const result = await pipe.generate(
          {
            prompt: run.prompt,
            negativePrompt: run.negative_prompt,
            numInferenceSteps: run.num_inference_steps,
            guidanceScale: run.guidance_scale,
            width: run.width,
            height: run.height,
            seed: run.generator_seed,
            scheduler: run.scheduler_class,
            latents: { data: init, shape: manifest.files[`${model}_initial_latents`].shape },
          },
          { onStep: ({ latents }) => void steps.push(Float32Array.from(latents.data)) },
        );
        const stepRef = ref(`${model}_f16_step_latents`);
        const per = stepRef.length / steps.length;
        steps.forEach((s, i) => {
          const expected = stepRef.subarray(i * per, (i + 1) * per);
          const err = maxAbsDiff(s, expected) / maxAbs(expected);
          assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
        });
        const imageErr = maxAbsDiff(decodedToFloatImages(result.decoded), ref(`${model}_f16_image`));
        assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
      } finally {
        await pipe.release();
      }
    });

    test("without --config, sizes unlike the published model's are an error that asks for --config", async () => {
      await assert.rejects(openSingleFile(file), (err: Error) => {
        assert.ok(err instanceof ModelError);
        assert.match(err.message, new RegExp(`${model}\\.safetensors`));
        assert.match(err.message, /--config/);
        return true;
      });
    });
  });
}

describe("prediction type of a single file", () => {
  const sd2 = path.join(DIR, "tiny-sd2v.safetensors");

  test("SD 2.x is v-prediction unless the file says otherwise; SD 1.x is epsilon", () => {
    const none = new Map();
    assert.equal(decidePredictionType("sd2", none, {}), "v_prediction");
    assert.equal(decidePredictionType("sd1", none, {}), "epsilon");
    assert.equal(decidePredictionType("sd2", none, { "modelspec.prediction_type": "epsilon" }), "epsilon");
    assert.equal(decidePredictionType("sd1", new Map([["v_pred", {} as never]]), {}), "v_prediction");
  });

  test("an SD 2.x inpainting file (9 UNet input channels) is epsilon, as diffusers takes stable-diffusion-2-inpainting", () => {
    const convIn = (channels: number) =>
      new Map([["model.diffusion_model.input_blocks.0.0.weight", { shape: [320, channels, 3, 3] } as never]]);
    assert.equal(decidePredictionType("sd2", convIn(9), {}), "epsilon");
    assert.equal(decidePredictionType("sd2", convIn(4), {}), "v_prediction");
    assert.equal(decidePredictionType("sd1", convIn(9), {}), "epsilon");
    assert.equal(decidePredictionType("sd2", convIn(9), { "modelspec.prediction_type": "v" }), "v_prediction");
  });

  test("--prediction-type overrides the config folder's", async () => {
    const folder = await openSingleFile(sd2, { config: modelDir("tiny-sd2v"), predictionType: "epsilon" });
    assert.equal(folder.schedulerConfig["prediction_type"], "epsilon");
    const plain = await openSingleFile(sd2, { config: modelDir("tiny-sd2v") });
    assert.equal(plain.schedulerConfig["prediction_type"], "v_prediction");
  });
});

describe("bad checkpoint files", () => {
  const rejectsNaming = async (file: string, pattern: RegExp) => {
    await assert.rejects(loadPipeline(file, { config: modelDir("tiny-sd1") }), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(file)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };

  test("a truncated checkpoint", async () => {
    const file = path.join(tmp, "truncated.safetensors");
    copyFileSync(path.join(DIR, "tiny-sd1.safetensors"), file);
    truncateSync(file, 5_000_000);
    await rejectsNaming(file, /truncated/);
  });

  test("a pickled .ckpt is refused without being read, saying why", async () => {
    const file = path.join(tmp, "model.ckpt");
    writeFileSync(file, Buffer.from([0x80, 0x02, 0x7d, 0x71]));
    await rejectsNaming(file, /pickle.*arbitrary code.*safetensors/s);
  });

  test("a pickle renamed to .safetensors is told by its first bytes", async () => {
    const file = path.join(tmp, "renamed.safetensors");
    writeFileSync(file, Buffer.concat([Buffer.from("PK\x03\x04"), Buffer.alloc(100)]));
    await rejectsNaming(file, /pickle/);
  });

  test("a UNet of neither 4 nor 9 input channels (SD 2 depth-to-image) is refused naming the file, not its preset", async () => {
    const file = path.join(tmp, "512-depth-ema.safetensors");
    const zeros = (name: string, shape: number[]) => ({
      name,
      dtype: "F16" as const,
      shape,
      data: new Uint16Array(shape.reduce((a, d) => a * d, 1)),
    });
    await writeSafetensors(file, [
      zeros("model.diffusion_model.input_blocks.0.0.weight", [320, 5, 3, 3]),
      zeros("cond_stage_model.model.token_embedding.weight", [8, 1024]),
    ]);
    await assert.rejects(loadPipeline(file), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes("512-depth-ema.safetensors"), err.message);
      assert.match(err.message, /takes 5 input channels/);
      return true;
    });
  });

  test("EDM-formulation checkpoints (Playground v2.5's edm_mean, CosXL's edm_vpred.sigma_max) are refused by name", async () => {
    for (const [name, marker] of [
      ["playground-v2.5", "edm_mean"],
      ["cosxl", "edm_vpred.sigma_max"],
    ] as const) {
      const file = path.join(tmp, `${name}.safetensors`);
      const t = (n: string, shape: number[]) => ({
        name: n,
        dtype: "F32" as const,
        shape,
        data: new Float32Array(shape.reduce((a, d) => a * d, 1)),
      });
      await writeSafetensors(file, [
        t("model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3]),
        t("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", [8, 768]),
        t("conditioner.embedders.1.model.token_embedding.weight", [8, 1280]),
        t(marker, marker === "edm_mean" ? [1, 4, 1, 1] : []),
      ]);
      await assert.rejects(loadPipeline(file), (err: Error) => {
        assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
        assert.ok(err.message.includes(`${name}.safetensors`), err.message);
        assert.match(err.message, new RegExp(`EDM-formulation model \\(its ${marker.replace(/\./g, "\\.")} key`));
        return true;
      });
    }
  });

  test("a checkpoint of an unknown family", async () => {
    const file = path.join(tmp, "unknown.safetensors");
    await writeSafetensors(file, [{ name: "encoder.weight", dtype: "F32", shape: [2], data: new Float32Array(2) }]);
    await rejectsNaming(file, /not a Stable Diffusion checkpoint of a known family/);
  });

  test("UNet keys without a text encoder", async () => {
    const file = path.join(tmp, "unet-only.safetensors");
    await writeSafetensors(file, [
      { name: "model.diffusion_model.out.2.bias", dtype: "F32", shape: [4], data: new Float32Array(4) },
    ]);
    await rejectsNaming(file, /no text encoder/);
  });

  test("an SDXL checkpoint with half its text encoders is refused, saying what SDXL files hold", async () => {
    const file = path.join(tmp, "sdxl.safetensors");
    await writeSafetensors(file, [
      { name: "model.diffusion_model.out.2.bias", dtype: "F32", shape: [4], data: new Float32Array(4) },
      {
        name: "conditioner.embedders.1.model.positional_embedding",
        dtype: "F32",
        shape: [2],
        data: new Float32Array(2),
      },
    ]);
    await rejectsNaming(file, /not an SDXL checkpoint of a known layout/);
  });

  test("a LoRA given as a model says so", async () => {
    await rejectsNaming(path.join(SHARED, "fixtures/golden-family/lora/tiny-sd1_lora_kohya.safetensors"), /LoRA/);
  });
});
