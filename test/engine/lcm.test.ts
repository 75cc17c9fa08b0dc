/**
 * LCMScheduler against diffusers 0.29.2 (golden-family `lcm/`): the timestep tables of both
 * fixture models for 1, 2, 4 and 8 steps (exact), and the full 4-step run on tiny-sd1 with
 * guidance 1 (one UNet pass per step): latents and the scheduler's denoised estimate after every
 * step, and the image.
 *
 * Tolerances (the fixtures README's): latents and denoised 1e-3 relative to the tensor's largest
 * |value|, image 2e-3 abs. Measured: see the assertion messages (printed with --test-reporter=spec).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { createScheduler, LCMScheduler, resolveSchedulerName } from "../../src/engine/schedulers/index.js";
import { lcmTimesteps } from "../../src/engine/schedulers/lcm.js";
import {
  FIXTURE_MODELS,
  maxAbs,
  maxAbsDiff,
  modelDir,
  REFERENCE_CONFIGS,
  readJson,
  SHARED,
} from "../helpers/fixtures.js";

const LCM_DIR = path.join(SHARED, "fixtures/golden-family/lcm");
const LATENT_REL_TOL = 1e-3;
const IMAGE_TOL = 2e-3;

// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
const lcm: any = readJson(path.join(LCM_DIR, "manifest.json"));

function ref(key: string): { data: Float32Array; shape: number[] } {
  const entry = lcm.files[key];
  const buf = readFileSync(path.join(LCM_DIR, entry.file));
  return {
    data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
    shape: entry.shape,
  };
}

const relErr = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / maxAbs(b);

describe("LCMScheduler timesteps", () => {
  for (const model of FIXTURE_MODELS) {
    const config = JSON.parse(readFileSync(path.join(modelDir(model), "scheduler/scheduler_config.json"), "utf8"));
    const table = lcm.tables[model];
    for (const n of [1, 2, 4, 8]) {
      test(`${model}, ${n} steps: as diffusers`, () => {
        const s = createScheduler("LCMScheduler", config, n);
        assert.ok(s instanceof LCMScheduler);
        assert.deepEqual(s.timesteps, table[String(n)].timesteps);
        assert.equal(s.initNoiseSigma, table[String(n)].init_noise_sigma);
      });
    }
    test(`${model}: the effective config is diffusers'`, () => {
      const s = createScheduler("LCM", config, 4);
      for (const [key, value] of Object.entries(table.effective_config)) {
        if (key === "_class_name" || key === "skip_prk_steps") continue;
        assert.deepEqual(s.config[key], value, key);
      }
    });
  }

  test("names: LCM (Replicate, A1111) and LCMScheduler (diffusers), any case", () => {
    for (const name of ["LCM", "lcm", "LCMScheduler", "lcmscheduler"]) {
      assert.equal(resolveSchedulerName(name).className, "LCMScheduler");
    }
  });

  test("the reference checkpoint's own scheduler file (lcm-dreamshaper-v7) gives the LCM schedule", () => {
    const file = path.join(REFERENCE_CONFIGS, "lcm-dreamshaper-v7/scheduler/scheduler_config.json");
    const s = createScheduler("LCM", JSON.parse(readFileSync(file, "utf8")), 4);
    assert.deepEqual(s.timesteps, [999, 759, 499, 259]);
  });

  test("original_inference_steps and the step count bound each other", () => {
    // 50 distillation steps → k = 20; 3 steps at floor(0, 16.67, 33.33) of the reversed list.
    assert.deepEqual(lcmTimesteps(3, 50, 1000), [999, 679, 339]);
    assert.deepEqual(lcmTimesteps(50, 50, 1000).slice(-2), [39, 19]);
    assert.deepEqual(createScheduler("LCM", { original_inference_steps: 10 }, 2).timesteps, [999, 499]);
    assert.throws(() => createScheduler("LCM", {}, 51), RequestError);
    assert.throws(() => createScheduler("LCM", {}, 0), /positive integer/);
    assert.throws(() => createScheduler("LCM", { original_inference_steps: 1001 }, 4), /original_inference_steps/);
    assert.throws(() => createScheduler("LCM", { original_inference_steps: 0 }, 4), /original_inference_steps/);
    assert.throws(() => createScheduler("LCM", { original_inference_steps: "50" }, 4), /original_inference_steps/);
    assert.throws(() => createScheduler("LCM", { timestep_scaling: -1 }, 4), /timestep_scaling/);
    assert.throws(() => createScheduler("LCM", { thresholding: true }, 4), /thresholding/);
    assert.throws(() => createScheduler("LCM", { prediction_type: "flow" }, 4), /prediction_type/);
  });

  test("img2img strength (LatentConsistencyModelImg2ImgPipeline): the lowest int(50 · strength) timesteps, n steps over them", () => {
    // k = 20; strength 0.5 keeps 25 timesteps (499 … 19): positions floor(i · 25/4) = 0, 6, 12, 18.
    assert.deepEqual(lcmTimesteps(4, 50, 1000, 0.5), [499, 379, 259, 139]);
    // 0.8 keeps 40 (799 … 19): positions 0, 10, 20, 30.
    assert.deepEqual(lcmTimesteps(4, 50, 1000, 0.8), [799, 599, 399, 199]);
    // 0.3 keeps 15 (299 … 19): positions floor(i · 3.75) = 0, 3, 7, 11.
    assert.deepEqual(lcmTimesteps(4, 50, 1000, 0.3), [299, 239, 159, 79]);
    // 0.29 · 50 = 14.499999999999998 in float64: 14 kept (279 … 19), positions 0, 3, 7, 10.
    assert.deepEqual(lcmTimesteps(4, 50, 1000, 0.29), [279, 219, 139, 79]);
    assert.deepEqual(lcmTimesteps(1, 50, 1000, 0.5), [499]);
    assert.deepEqual(lcmTimesteps(4, 50, 1000, 1), lcmTimesteps(4, 50, 1000));
    const s = new LCMScheduler({}, 4, {}, { strength: 0.08 });
    assert.deepEqual(s.timesteps, [79, 59, 39, 19]);
    // 0.07 · 50 = 3.5000000000000004: 3 timesteps cannot hold 4 steps.
    assert.throws(
      () => createScheduler("LCM", {}, 4, { lcmStrength: 0.07 }),
      (e: unknown) =>
        e instanceof RequestError && e.field === "strength" && /keeps 3 .* fewer than the 4 steps/.test(e.message),
    );
    for (const bad of [0, -0.5, 1.5, Number.NaN]) {
      assert.throws(() => createScheduler("LCM", {}, 4, { lcmStrength: bad }), /strength must be in/);
    }
  });

  test("boundary condition: c_skip → 1 and c_out → 0 at t = 0; the formula elsewhere", () => {
    const s = createScheduler("LCM", {}, 4) as LCMScheduler;
    assert.deepEqual(s.boundaryScalings(0), { cSkip: 1, cOut: 0 });
    // t = 999, s = 10: (9990)² + 0.25 in float32.
    const { cSkip, cOut } = s.boundaryScalings(999);
    assert.ok(Math.abs(cSkip - 0.25 / (9990 ** 2 + 0.25)) < 1e-12);
    assert.ok(Math.abs(cOut - 9990 / Math.sqrt(9990 ** 2 + 0.25)) < 1e-7);
  });

  test("v and sample prediction: the last step returns c_skip·x + c_out·x̂₀ without drawing noise", () => {
    const x = Float32Array.of(0.5, -1.25, 2);
    const m = Float32Array.of(0.25, 0.75, -1);
    const noDraw = { randn: () => assert.fail("the last step must not draw noise") };
    for (const prediction of ["v_prediction", "sample", "epsilon"] as const) {
      const s = createScheduler(
        "LCM",
        { prediction_type: prediction, beta_schedule: "scaled_linear" },
        1,
      ) as LCMScheduler;
      const t = s.timesteps[0] as number;
      const out = s.step(m, 0, x, noDraw, [1, 3]);
      const { cSkip, cOut } = s.boundaryScalings(t);
      const abar = Math.fround(noiseAlphaBar(t));
      for (let i = 0; i < 3; i++) {
        const xi = x[i] as number;
        const mi = m[i] as number;
        const x0 =
          prediction === "sample"
            ? mi
            : prediction === "v_prediction"
              ? Math.sqrt(abar) * xi - Math.sqrt(1 - abar) * mi
              : (xi - Math.sqrt(1 - abar) * mi) / Math.sqrt(abar);
        const expected = cOut * x0 + cSkip * xi;
        // float32 arithmetic against float64: relative, since x̂₀ = (x − …) / √ᾱ grows ~15× at t = 999.
        assert.ok(
          Math.abs((out[i] as number) - expected) <= 1e-5 * Math.max(1, Math.abs(expected)),
          `${prediction} [${i}]`,
        );
      }
      assert.equal(s.lastDenoised, out);
    }
  });
});

/** ᾱ_t of the scaled_linear schedule with LCM's default betas, in float64 (for the hand check above). */
function noiseAlphaBar(t: number): number {
  let abar = 1;
  for (let i = 0; i <= t; i++) {
    const b = (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
    abar *= 1 - b;
  }
  return abar;
}

describe("LCM full run: tiny-sd1, 4 steps, guidance 1", () => {
  const run = lcm.runs[0];
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir(run.model), { threads: 2 });
  });
  after(() => pipe.release());

  test(`${run.id}: step latents, denoised and image as diffusers`, async (t) => {
    const latents: Float32Array[] = [];
    const denoised: Float32Array[] = [];
    const timesteps: number[] = [];
    const result = await pipe.generate(
      {
        prompt: run.prompt,
        numInferenceSteps: run.num_inference_steps,
        guidanceScale: run.guidance_scale,
        height: run.height,
        width: run.width,
        seed: run.generator_seed,
        scheduler: "LCM",
        latents: ref(`${run.id}_initial_latents`),
      },
      {
        onStep: (e) => {
          latents.push(Float32Array.from(e.latents.data));
          assert.ok(e.denoised, "LCM reports its denoised estimate");
          denoised.push(Float32Array.from(e.denoised.data));
          timesteps.push(e.timestep);
        },
      },
    );
    assert.deepEqual(timesteps, run.timesteps_used);
    const stepRef = ref(`${run.id}_step_latents`);
    const denoisedRef = ref(`${run.id}_step_denoised`);
    const per = stepRef.data.length / (stepRef.shape[0] as number);
    assert.equal(latents.length, stepRef.shape[0]);
    const errs: string[] = [];
    for (let i = 0; i < latents.length; i++) {
      const e1 = relErr(latents[i] as Float32Array, stepRef.data.subarray(i * per, (i + 1) * per));
      const e2 = relErr(denoised[i] as Float32Array, denoisedRef.data.subarray(i * per, (i + 1) * per));
      errs.push(`step ${i + 1}: latents ${e1.toExponential(2)}, denoised ${e2.toExponential(2)}`);
      assert.ok(e1 <= LATENT_REL_TOL && e2 <= LATENT_REL_TOL, errs.join("; "));
    }
    const imageErr = maxAbsDiff(decodedToFloatImages(result.decoded), ref(`${run.id}_image`).data);
    assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
    t.diagnostic(`${errs.join("; ")}; image ${imageErr.toExponential(2)}`);
  });
});
