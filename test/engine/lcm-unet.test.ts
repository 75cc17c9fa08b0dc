/**
 * LCM UNets: UNet2DConditionModel with `time_cond_proj_dim`, which adds cond_proj(w-embedding)
 * to the sinusoidal timestep embedding before time_embedding.linear_1, with the embedding of
 * w = guidance_scale − 1 from diffusers' get_guidance_scale_embedding.
 *
 * There is no diffusers reference for this in the fixtures, so the checks are built from the
 * golden tiny-sd1 UNet and algebra rather than compared with a recorded tensor:
 * - with cond_proj all zeros the LCM UNet is the plain UNet (and so matches the golden UNet
 *   forward), whatever the condition;
 * - with a random cond_proj W and condition c, linear_1(e + W c) = linear_1(e) + L₁ W c, so the
 *   LCM UNet equals the plain UNet whose linear_1 bias is shifted by L₁ W c (computed here in
 *   float64): this pins the wiring (before linear_1, no bias, W's orientation);
 * - the embedding's values against hand-computed sines and cosines;
 * - end to end: an LCM UNet with zero cond_proj at its default guidance 8.5 takes one UNet pass
 *   per step (no unconditional batch) and reproduces diffusers' 4-step LCM run of tiny-sd1;
 * - img2img: LCM img2img's timesteps (strength applied to LCM's schedule) and, on the same
 *   zero-cond_proj UNet, the picture the plain UNet makes on the same timesteps.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { guidanceScaleEmbedding } from "../../src/engine/graph/unet.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { type TensorF32, UNet } from "../../src/engine/networks.js";
import { loadPipeline } from "../../src/engine/pipeline.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbs, maxAbsDiff, modelDir, readJson, refTensor, SHARED } from "../helpers/fixtures.js";

const COND_DIM = 8;
const BASE = 32; // tiny-sd1's block_out_channels[0]: the timestep embedding's width
const TEMB = 128; // 4 × BASE: linear_1's output

let tmp: string;

/** tiny-sd1 with its UNet replaced: config changes and extra / replaced tensors. */
async function variantModel(
  name: string,
  configPatch: Record<string, unknown>,
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
): Promise<string> {
  const src = modelDir("tiny-sd1");
  const dir = path.join(tmp, name);
  mkdirSync(path.join(dir, "unet"), { recursive: true });
  for (const entry of ["scheduler", "text_encoder", "tokenizer", "vae"]) {
    symlinkSync(path.join(src, entry), path.join(dir, entry));
  }
  // As SimianLuo/LCM_Dreamshaper_v7 names its pipeline when the UNet is an LCM one.
  const index = JSON.parse(readFileSync(path.join(src, "model_index.json"), "utf8"));
  if (configPatch["time_cond_proj_dim"]) index._class_name = "LatentConsistencyModelPipeline";
  writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index));
  const config = { ...JSON.parse(readFileSync(path.join(src, "unet/config.json"), "utf8")), ...configPatch };
  writeFileSync(path.join(dir, "unet/config.json"), JSON.stringify(config));
  const file = await readSafetensors(path.join(src, "unet/diffusion_pytorch_model.safetensors"));
  const out = [];
  for (const [tensorName, info] of file.tensors) {
    const data = tensors[tensorName]?.data ?? (await readTensor(info));
    out.push({ name: tensorName, dtype: "F32" as const, shape: info.shape, data });
  }
  for (const [tensorName, t] of Object.entries(tensors)) {
    if (!file.tensors.has(tensorName)) out.push({ name: tensorName, dtype: "F32" as const, ...t });
  }
  await writeSafetensors(path.join(dir, "unet/diffusion_pytorch_model.safetensors"), out);
  return dir;
}

async function loadUNet(dir: string): Promise<UNet> {
  return UNet.load((await openModelFolder(dir)).unet, { threads: 2 });
}

/** Deterministic values in [-0.5, 0.5). */
function pseudoRandom(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

describe("guidance-scale embedding (get_guidance_scale_embedding)", () => {
  test("hand-computed values: w = 0.5, dim 4 → [sin 500, sin 0.05, cos 500, cos 0.05]", () => {
    // f = [1, exp(−ln 10000 / 1)] = [1, 1e-4]; angles 1000·w·f = [500, 0.05].
    const e = guidanceScaleEmbedding(0.5, 4);
    const expected = [-0.46777180532247614, 0.04997916927067833, -0.883849273431478, 0.9987502603949663];
    for (let i = 0; i < 4; i++) assert.ok(Math.abs((e[i] as number) - (expected[i] as number)) < 1e-6, `[${i}]`);
  });

  test("w = 0 (guidance 1): sines 0, cosines 1; an odd width is zero-padded", () => {
    assert.deepEqual([...guidanceScaleEmbedding(0, 6)], [0, 0, 0, 1, 1, 1]);
    const odd = guidanceScaleEmbedding(0.5, 5);
    assert.equal(odd.length, 5);
    assert.equal(odd[4], 0);
    assert.ok(Math.abs((odd[0] as number) - -0.46777180532247614) < 1e-6);
  });

  test("256 wide (LCM_Dreamshaper_v7), guidance 7.5: sin/cos(6500) first, sin/cos(0.65) last", () => {
    const e = guidanceScaleEmbedding(6.5, 256);
    assert.ok(Math.abs((e[0] as number) - -0.04478473860112598) < 1e-6);
    assert.ok(Math.abs((e[128] as number) - Math.cos(6500)) < 1e-6);
    // k = 127: exp(−ln(10000)·127/127) = 1e-4 → angle 0.65.
    assert.ok(Math.abs((e[127] as number) - Math.sin(0.65)) < 1e-6);
    assert.ok(Math.abs((e[255] as number) - Math.cos(0.65)) < 1e-6);
  });

  test("refuses widths with no frequency spacing", () => {
    assert.throws(() => guidanceScaleEmbedding(1, 3), RangeError);
  });
});

describe("UNet with time_cond_proj_dim", () => {
  let plain: UNet;
  const sample = refTensor("tiny-sd1", "unet_in_sample");
  const context = refTensor("tiny-sd1", "unet_in_encoder_hidden_states");
  const cond = (w: number): TensorF32 => {
    const batch = sample.shape[0] as number;
    const data = new Float32Array(batch * COND_DIM);
    for (let b = 0; b < batch; b++) data.set(guidanceScaleEmbedding(w, COND_DIM), b * COND_DIM);
    return { data, shape: [batch, COND_DIM] };
  };

  before(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), "lcm-unet-"));
    plain = await loadUNet(modelDir("tiny-sd1"));
  });
  after(async () => {
    await plain.session.release();
    rmSync(tmp, { recursive: true, force: true });
  });

  test("cond_proj = 0: the plain UNet, for any condition (and diffusers' golden UNet output)", async () => {
    const dir = await variantModel(
      "zero",
      { time_cond_proj_dim: COND_DIM },
      {
        "time_embedding.cond_proj.weight": { shape: [BASE, COND_DIM], data: new Float32Array(BASE * COND_DIM) },
      },
    );
    const lcm = await loadUNet(dir);
    try {
      assert.equal(lcm.config?.timeCondProjDim, COND_DIM);
      const expected = await plain.run(sample, 500, context);
      const out = await lcm.run(sample, 500, context, cond(7.5));
      assert.ok(maxAbsDiff(out.data, expected.data) <= 1e-6);
      const golden = refTensor("tiny-sd1", "unet_out_t500");
      assert.ok(maxAbsDiff(out.data, golden.data) <= 1e-4);
      await assert.rejects(lcm.run(sample, 500, context), /timestep_cond/);
      await assert.rejects(plain.run(sample, 500, context, cond(1)), /timestep_cond/);
    } finally {
      await lcm.session.release();
    }
  });

  test("cond_proj = W: equals the plain UNet with linear_1's bias shifted by L₁·W·c", async (t) => {
    const W = pseudoRandom(BASE * COND_DIM, 17); // [BASE, COND_DIM], torch Linear layout
    const lcmDir = await variantModel(
      "random",
      { time_cond_proj_dim: COND_DIM },
      {
        "time_embedding.cond_proj.weight": { shape: [BASE, COND_DIM], data: W },
      },
    );
    const file = await readSafetensors(path.join(modelDir("tiny-sd1"), "unet/diffusion_pytorch_model.safetensors"));
    const l1 = await readTensor(file.tensors.get("time_embedding.linear_1.weight")!); // [TEMB, BASE]
    const b1 = await readTensor(file.tensors.get("time_embedding.linear_1.bias")!);
    const w = 3.5; // guidance 4.5
    const c = guidanceScaleEmbedding(w, COND_DIM);
    const wc = Array.from({ length: BASE }, (_, i) => {
      let s = 0;
      for (let j = 0; j < COND_DIM; j++) s += (W[i * COND_DIM + j] as number) * (c[j] as number);
      return s;
    });
    const shifted = Float32Array.from({ length: TEMB }, (_, o) => {
      let s = b1[o] as number;
      for (let i = 0; i < BASE; i++) s += (l1[o * BASE + i] as number) * (wc[i] as number);
      return s;
    });
    const shiftedDir = await variantModel(
      "shifted",
      {},
      { "time_embedding.linear_1.bias": { shape: [TEMB], data: shifted } },
    );
    const lcm = await loadUNet(lcmDir);
    const ref = await loadUNet(shiftedDir);
    try {
      const expected = await ref.run(sample, 999, context);
      const out = await lcm.run(sample, 999, context, cond(w));
      const err = maxAbsDiff(out.data, expected.data) / maxAbs(expected.data);
      const plainOut = await plain.run(sample, 999, context);
      const moved = maxAbsDiff(out.data, plainOut.data) / maxAbs(expected.data);
      t.diagnostic(
        `relative error ${err.toExponential(2)}; the condition moves the output by ${moved.toExponential(2)}`,
      );
      assert.ok(moved > 1e-2, "the condition must change the output for this check to mean anything");
      assert.ok(err <= 1e-5, `relative error ${err}`);
    } finally {
      await lcm.session.release();
      await ref.session.release();
    }
  });

  test("a pipeline with an LCM UNet: LCM, 4 steps, guidance 8.5 by default, one UNet pass per step", async (t) => {
    // biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
    const lcm: any = readJson(path.join(SHARED, "fixtures/golden-family/lcm/manifest.json"));
    const run = lcm.runs[0];
    const ref = (key: string) => {
      const entry = lcm.files[key];
      const buf = readFileSync(path.join(SHARED, "fixtures/golden-family/lcm", entry.file));
      return {
        data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
        shape: entry.shape,
      };
    };
    const dir = await variantModel(
      "pipeline",
      { time_cond_proj_dim: COND_DIM },
      { "time_embedding.cond_proj.weight": { shape: [BASE, COND_DIM], data: new Float32Array(BASE * COND_DIM) } },
    );
    const pipe = await loadPipeline(dir, { threads: 2 });
    try {
      assert.deepEqual(pipe.info.defaults, { numInferenceSteps: 4, guidanceScale: 8.5, scheduler: "LCMScheduler" });
      const batches: number[] = [];
      const run0 = pipe.unet.run.bind(pipe.unet);
      pipe.unet.run = (s, ts, ctx, tc) => {
        batches.push(s.shape[0] as number);
        assert.deepEqual(tc?.shape, [1, COND_DIM]);
        return run0(s, ts, ctx, tc);
      };
      // Guidance 8.5 (the default) with a zero cond_proj must give diffusers' guidance-1 run:
      // a second, unconditional batch would change it.
      const result = await pipe.generate({
        prompt: run.prompt,
        height: run.height,
        width: run.width,
        seed: run.generator_seed,
        latents: ref(`${run.id}_initial_latents`),
      });
      assert.deepEqual(batches, [1, 1, 1, 1]);
      assert.equal(result.parameters.guidanceScale, 8.5);
      const stepRef = ref(`${run.id}_step_latents`);
      const last = stepRef.data.subarray(stepRef.data.length - result.latents.data.length);
      const err = maxAbsDiff(result.latents.data, last) / maxAbs(last);
      const imageErr = maxAbsDiff(decodedToFloatImages(result.decoded), ref(`${run.id}_image`).data);
      t.diagnostic(`final latents ${err.toExponential(2)} relative, image ${imageErr.toExponential(2)} abs`);
      assert.ok(err <= 1e-3 && imageErr <= 2e-3);
      await assert.rejects(pipe.generate({ prompt: "x", guidanceScale: 1e38, numInferenceSteps: 1 }), RequestError);
    } finally {
      await pipe.release();
    }
  });

  test("img2img on an LCM UNet: strength picks LCM's lower timesteps and every step runs (LatentConsistencyModelImg2ImgPipeline)", async () => {
    const dir = await variantModel(
      "img2img",
      { time_cond_proj_dim: COND_DIM },
      { "time_embedding.cond_proj.weight": { shape: [BASE, COND_DIM], data: new Float32Array(BASE * COND_DIM) } },
    );
    const pipe = await loadPipeline(dir, { threads: 2 });
    // The same UNet without the condition (cond_proj is zero), as SD with an LCM-LoRA fused in:
    // diffusers' StableDiffusionImg2ImgPipeline, which cuts LCM's own schedule instead.
    const plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 2 });
    try {
      const image = { width: 32, height: 32, data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256) };
      const base = { prompt: "a red bicycle", image, scheduler: "LCM", seed: 21n };
      const timesteps = async (p: typeof pipe, req: Parameters<typeof pipe.generate>[0]) => {
        const seen: number[] = [];
        const r = await p.generate(req, { onStep: ({ timestep }) => void seen.push(timestep) });
        return { seen, r };
      };
      // original_inference_steps 50 (k = 20) × strength 0.5 keeps 25 timesteps, 499 … 19; 4 steps at
      // floor(0, 6.25, 12.5, 18.75) of them from the top.
      const lcm = await timesteps(pipe, { ...base, strength: 0.5, numInferenceSteps: 4 });
      assert.deepEqual(lcm.seen, [499, 379, 259, 139]);
      assert.equal(lcm.r.parameters.strength, 0.5);
      // Cutting 8 LCM steps (999 879 759 639 | 499 379 259 139) at strength 0.5 gives the same four
      // timesteps on the plain UNet: the same draws from the generator, the same picture.
      const cut = await timesteps(plain, { ...base, strength: 0.5, numInferenceSteps: 8, guidanceScale: 1 });
      assert.deepEqual(cut.seen, [499, 379, 259, 139]);
      const err = maxAbsDiff(lcm.r.latents.data, cut.r.latents.data) / maxAbs(cut.r.latents.data);
      assert.ok(err <= 1e-6, `final latents: relative error ${err}`);
      // The plain UNet's own 4 steps at strength 0.5: the last two of 999 759 499 259.
      assert.deepEqual((await timesteps(plain, { ...base, strength: 0.5, numInferenceSteps: 4 })).seen, [499, 259]);
      // Inpainting (no diffusers LCM pipeline for it): strength 1 runs LCM's whole schedule, below
      // 1 cuts it as StableDiffusionInpaintPipeline does.
      const mask = {
        width: 32,
        height: 32,
        data: Uint8Array.from({ length: 32 * 32 }, (_, i) => (i % 32 < 16 ? 255 : 0)),
      };
      assert.deepEqual((await timesteps(pipe, { ...base, mask, numInferenceSteps: 4 })).seen, [999, 759, 499, 259]);
      assert.deepEqual(
        (await timesteps(pipe, { ...base, mask, strength: 0.5, numInferenceSteps: 4 })).seen,
        [499, 259],
      );
      // Strength 0.8 (the default), and too low a strength for the steps.
      assert.deepEqual((await timesteps(pipe, { ...base, numInferenceSteps: 4 })).seen, [799, 599, 399, 199]);
      await assert.rejects(pipe.generate({ ...base, strength: 0.06, numInferenceSteps: 4 }), (e: unknown) => {
        assert.ok(e instanceof RequestError);
        assert.equal(e.field, "strength");
        assert.match(e.message, /keeps 3 of the model's 50 distillation timesteps.*fewer than the 4 steps/);
        return true;
      });
    } finally {
      await pipe.release();
      await plain.release();
    }
  });
});
