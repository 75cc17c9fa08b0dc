/**
 * SDXL single-file checkpoints (Stability's original layout). There is no SDXL single-file
 * golden: the tiny SDXL of `golden-family/sdxl` is written here into the original layout
 * (test/helpers/ldm-layout.ts, the inverse mapping written independently of the loader, with
 * OpenCLIP's q/k/v fused into in_proj and its text_projection transposed), then:
 *
 * - the loader's mapping gives back exactly the folder's tensors (names, shapes, values);
 * - runs from the file equal diffusers' references of the golden runs at the golden test's
 *   tolerances (latents 1e-4 relative to the tensor's max |value|, images 1e-4 abs) and the
 *   folder pipeline's images (measured: identical, 0 difference);
 * - the refiner's layout (OpenCLIP only, `conditioner.embedders.0.model.`) loads as the refiner;
 * - bad files (truncated, mixed families, unknown layout, sizes that need --config) are
 *   errors naming the file.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { type ModelFolder, openModelFolder } from "../../src/engine/weights/model-folder.js";
import { readSafetensors, readTensor, type TensorInfo } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { detectFamily, openSingleFile } from "../../src/engine/weights/single-file.js";
import { familyManifest, familyTensor, GOLDEN_FAMILY, maxAbs, maxAbsDiff } from "../helpers/fixtures.js";
import { writeSdxlCheckpoint } from "../helpers/ldm-layout.js";
import { writeTinyRefiner } from "../helpers/tiny-refiner.js";

const SECTION = "sdxl";
const MODEL = path.join(GOLDEN_FAMILY, SECTION, "tiny-sdxl");
const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;

const ref = (file: string) => familyTensor(SECTION, file.replace(/^ref\/|\.bin$/g, ""));
const relErr = (a: Float32Array, e: Float32Array) => maxAbsDiff(a, e) / maxAbs(e);
const _readJsonFile = (file: string) => JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-sdxl-single-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const CHECKPOINT = path.join(tmp, "tiny-sdxl.safetensors");

before(async () => {
  // Real files carry the schedule and EMA buffers too; the loader ignores them.
  await writeSdxlCheckpoint(MODEL, CHECKPOINT, [
    { name: "alphas_cumprod", dtype: "F32", shape: [4], data: new Float32Array(4) },
    { name: "model_ema.decay", dtype: "F32", shape: [], data: new Float32Array(1) },
  ]);
});

async function assertSameTensors(single: ModelFolder, folder: ModelFolder): Promise<void> {
  for (const name of ["unet", "vae", "textEncoder", "textEncoder2"] as const) {
    const want = folder[name]?.tensors;
    const got = single[name]?.tensors;
    assert.ok(want && got, name);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), `${name}: tensor names`);
    for (const [key, w] of want) {
      const g: TensorInfo = got.get(key)!;
      assert.deepEqual(g.shape, w.shape, `${name}.${key}: shape`);
      assert.deepEqual(await readTensor(g), await readTensor(w), `${name}.${key}: values`);
    }
  }
}

describe("SDXL base single file (tiny-sdxl in the original layout)", () => {
  test("told from its keys; the mapping gives exactly the folder's tensors (in_proj split, text_projection transposed)", async () => {
    const st = await readSafetensors(CHECKPOINT);
    assert.ok(st.tensors.has("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"));
    assert.ok(st.tensors.has("model.diffusion_model.label_emb.0.0.weight"));
    assert.equal(detectFamily(CHECKPOINT, st.tensors), "sdxl");
    const single = await openSingleFile(CHECKPOINT, { config: MODEL });
    assert.equal(single.checkpoint?.family, "sdxl");
    assert.equal(single.textEncoder.name, "text_encoder");
    assert.equal(single.textEncoder2?.name, "text_encoder_2");
    assert.equal(single.tokenizer2Dir, path.join(MODEL, "tokenizer_2"));
    // Nothing is copied: every tensor is a byte range of the one file.
    for (const c of [single.unet, single.vae, single.textEncoder, single.textEncoder2]) {
      assert.deepEqual(c?.weightFiles, [CHECKPOINT]);
      for (const t of c?.tensors.values() ?? []) assert.equal(t.file, CHECKPOINT);
    }
    await assertSameTensors(single, await openModelFolder(MODEL));
  });

  describe("runs from the file", () => {
    const m = familyManifest(SECTION);
    let single: Pipeline;
    let folder: Pipeline;
    before(async () => {
      single = await loadPipeline(CHECKPOINT, { config: MODEL, threads: 2 });
      folder = await loadPipeline(MODEL, { threads: 2 });
    });
    after(async () => {
      await single?.release();
      await folder?.release();
    });

    test("loads as SDXL with the folder's defaults and conditioning", () => {
      assert.equal(single.info.family, "sdxl");
      assert.deepEqual(single.info.defaults, folder.info.defaults);
      assert.equal(single.sdxl?.encoders.length, 2);
      assert.equal(single.sdxl?.settings.forceZerosForEmptyPrompt, true);
    });

    // biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
    const runs = (m.runs as any[]).filter((r) => ["euler_g5p0", "dpmpp_2m_g1p0", "euler_g5p0_negnone"].includes(r.id));
    assert.equal(runs.length, 3);
    for (const run of runs) {
      test(`run ${run.id}: equals diffusers' reference and the folder pipeline`, async (t) => {
        const req = {
          prompt: run.prompt,
          negativePrompt: run.negative_prompt ?? undefined,
          numInferenceSteps: run.num_inference_steps,
          guidanceScale: run.guidance_scale,
          height: run.height,
          width: run.width,
          seed: run.generator_seed,
          scheduler: run.scheduler_class,
          latents: ref(m.initial_latents),
        };
        const steps: Float32Array[] = [];
        const ours = await single.generate(req, {
          onStep: ({ latents }) => void steps.push(Float32Array.from(latents.data)),
        });
        const stepRef = ref(run.step_latents);
        const per = stepRef.data.length / steps.length;
        assert.equal(stepRef.shape[0], steps.length);
        let worst = 0;
        steps.forEach((s, i) => {
          const err = relErr(s, stepRef.data.subarray(i * per, (i + 1) * per));
          worst = Math.max(worst, err);
          assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
        });
        const image = decodedToFloatImages(ours.decoded);
        const imageErr = maxAbsDiff(image, ref(run.image).data);
        assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
        const theirs = await folder.generate(req);
        const vsFolder = maxAbsDiff(image, decodedToFloatImages(theirs.decoded));
        assert.ok(vsFolder <= IMAGE_TOL, `single file vs folder: max abs difference ${vsFolder}`);
        t.diagnostic(
          `latents ${worst.toExponential(2)} rel, image ${imageErr.toExponential(2)}, vs folder ${vsFolder}`,
        );
      });
    }
  });

  test("without --config, sizes unlike SDXL base 1.0's are an error naming the file that asks for --config", async () => {
    await assert.rejects(openSingleFile(CHECKPOINT), (err: Error) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /tiny-sdxl\.safetensors/);
      assert.match(err.message, /SDXL base 1\.0/);
      assert.match(err.message, /--config/);
      return true;
    });
  });
});

describe("SDXL refiner single file", () => {
  test("conditioner.embedders.0.model.* alone is the refiner: one encoder, aesthetic score, the folder's tensors and outputs", async () => {
    const dir = await writeTinyRefiner(path.join(tmp, "refiner"));
    const file = path.join(tmp, "tiny-refiner.safetensors");
    await writeSdxlCheckpoint(dir, file);
    const st = await readSafetensors(file);
    assert.ok(st.tensors.has("conditioner.embedders.0.model.text_projection"));
    assert.ok(![...st.tensors.keys()].some((k) => k.startsWith("conditioner.embedders.1.")));
    assert.equal(detectFamily(file, st.tensors), "sdxl-refiner");

    const single = await openSingleFile(file, { config: dir });
    const folder = await openModelFolder(dir);
    assert.equal(single.textEncoder.name, "text_encoder_2");
    assert.equal(single.textEncoder2, undefined);
    assert.equal(single.tokenizerDir, path.join(dir, "tokenizer_2"));
    for (const name of ["unet", "vae", "textEncoder"] as const) {
      const want = folder[name].tensors;
      const got = single[name].tensors;
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), name);
      for (const [key, w] of want) assert.deepEqual(await readTensor(got.get(key)!), await readTensor(w), key);
    }

    const pipes = [await loadPipeline(file, { config: dir, threads: 2 }), await loadPipeline(dir, { threads: 2 })];
    try {
      const [a, b] = pipes as [Pipeline, Pipeline];
      assert.equal(a.sdxl?.settings.requiresAestheticsScore, true);
      assert.equal(a.sdxl?.encoders.length, 1);
      const req = { prompt: "a lion at night", negativePrompt: "low quality", width: 64, height: 64 };
      const ca = await a.sdxl!.conditioning(req, 1, true);
      const cb = await b.sdxl!.conditioning(req, 1, true);
      assert.deepEqual(ca.context.data, cb.context.data);
      assert.deepEqual(ca.added.textEmbeds.data, cb.added.textEmbeds.data);
      assert.deepEqual(Array.from(ca.added.timeIds.data), [64, 64, 0, 0, 2.5, 64, 64, 0, 0, 6]);
      const sample = { data: new Float32Array(2 * 4 * 8 * 8).map((_, i) => Math.sin(i)), shape: [2, 4, 8, 8] };
      const ua = await a.unet.run(sample, 500, ca.context, undefined, {}, ca.added);
      const ub = await b.unet.run(sample, 500, cb.context, undefined, {}, cb.added);
      assert.ok(maxAbsDiff(ua.data, ub.data) <= 1e-6, "UNet outputs");
    } finally {
      await Promise.all(pipes.map((p) => p.release()));
    }
  });
});

describe("bad SDXL checkpoint files", () => {
  const rejectsNaming = async (file: string, pattern: RegExp) => {
    await assert.rejects(loadPipeline(file, { config: MODEL }), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(file)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };
  const f32 = (name: string) => ({ name, dtype: "F32" as const, shape: [2], data: new Float32Array(2) });

  test("a truncated SDXL checkpoint", async () => {
    const file = path.join(tmp, "truncated-sdxl.safetensors");
    copyFileSync(CHECKPOINT, file);
    truncateSync(file, 1_000_000);
    await rejectsNaming(file, /truncated/);
  });

  test("SD 1.x / 2.x and SDXL text encoders in one file", async () => {
    const file = path.join(tmp, "mixed.safetensors");
    await writeSafetensors(file, [
      f32("model.diffusion_model.out.2.bias"),
      f32("cond_stage_model.transformer.text_model.final_layer_norm.bias"),
      f32("conditioner.embedders.1.model.ln_final.bias"),
    ]);
    await rejectsNaming(file, /mixes the text encoders of two families/);
  });

  test("SDXL's OpenCLIP without its CLIP ViT-L (an unknown layout)", async () => {
    const file = path.join(tmp, "half-sdxl.safetensors");
    await writeSafetensors(file, [
      f32("model.diffusion_model.out.2.bias"),
      f32("conditioner.embedders.1.model.ln_final.bias"),
    ]);
    await rejectsNaming(file, /not an SDXL checkpoint of a known layout.*no conditioner\.embedders\.0\.transformer/);
  });

  test("SDXL text encoders without a UNet", async () => {
    const file = path.join(tmp, "no-unet.safetensors");
    await writeSafetensors(file, [f32("conditioner.embedders.0.model.ln_final.bias")]);
    await rejectsNaming(file, /no model\.diffusion_model\.\* keys/);
  });

  /** The checkpoint's keys (zero-filled) without `drop`, plus `add`. */
  const variant = async (name: string, drop: string | undefined, add: ReturnType<typeof f32>[] = []) => {
    const src = await readSafetensors(CHECKPOINT);
    const file = path.join(tmp, name);
    const tensors = [];
    for (const [key, t] of src.tensors) {
      if (key !== drop) tensors.push({ name: key, dtype: t.dtype, shape: t.shape, data: new Uint8Array(t.byteLength) });
    }
    await writeSafetensors(file, [...tensors, ...add]);
    return file;
  };

  test("UNet keys the config does not place", async () => {
    const file = await variant("extra-unet.safetensors", undefined, [
      f32("model.diffusion_model.input_blocks.40.1.proj_in.weight"),
    ]);
    await rejectsNaming(file, /UNet tensors the given config does not place.*input_blocks\.40/);
  });

  test("OpenCLIP without its text_projection (no pooled embedding)", async () => {
    const file = await variant("no-projection.safetensors", "conditioner.embedders.1.model.text_projection");
    await rejectsNaming(file, /text_projection/);
  });

  test("OpenCLIP's in_proj that is not three stacked projections", async () => {
    const key = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_bias";
    const file = await variant("bad-in-proj.safetensors", key, [
      { name: key, dtype: "F32", shape: [95], data: new Float32Array(95) },
    ]);
    await rejectsNaming(file, /not three stacked projections/);
  });
});
