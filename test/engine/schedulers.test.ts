/**
 * Schedulers against the golden fixtures: diffusers 0.29.2's timesteps, sigmas, betas and
 * alphas_cumprod for both fixture models, every scheduler, 8 / 25 / 50 steps; the effective
 * configs; DDIM's steps replayed on the recorded UNet outputs of the full pipeline run; and the
 * name mapping.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { describe, test } from "node:test";
import { ModelError, RequestError } from "../../src/engine/errors.js";
import {
  A1111_SCHEDULERS,
  createScheduler,
  DIFFUSERS_SCHEDULERS,
  noiseSchedule,
  REPLICATE_SCHEDULERS,
  resolveSchedulerName,
  SCHEDULER_NAMES,
} from "../../src/engine/schedulers/index.js";
import { FIXTURE_MODELS, GOLDEN, maxAbs, maxAbsDiff, modelDir, readJson, refTensor } from "../helpers/fixtures.js";

interface TimestepEntry {
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
}
interface TimestepTable {
  base_config: Record<string, unknown>;
  classes: Record<string, string>;
  extra_kwargs: Record<string, Record<string, unknown>>;
  schedulers: Record<string, Record<string, TimestepEntry> & { effective_config: Record<string, unknown> }> & {
    _betas: number[];
    _alphas_cumprod: number[];
  };
}

/** Largest |a − b| / |b| (|a − b| where b is 0). */
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    const d = y === 0 ? Math.abs(x) : Math.abs(x - y) / Math.abs(y);
    m = Math.max(m, Number.isNaN(d) ? Number.POSITIVE_INFINITY : d);
  }
  return m;
}

const STEP_COUNTS = ["8", "25", "50"] as const;

for (const model of FIXTURE_MODELS) {
  describe(`schedulers match diffusers' tables: ${model}`, () => {
    const table = readJson<TimestepTable>(path.join(GOLDEN, model, "scheduler_timesteps.json"));
    const fileConfig = readJson<Record<string, unknown>>(path.join(modelDir(model), "scheduler/scheduler_config.json"));

    test("the fixture's base config is the model's scheduler_config.json", () => {
      assert.deepEqual(table.base_config, fileConfig);
    });

    test("betas and alphas_cumprod (torch float32 linspace, float64-accumulated cumprod)", () => {
      const { betas, alphasCumprod } = noiseSchedule({
        num_train_timesteps: fileConfig["num_train_timesteps"] as number,
        beta_start: fileConfig["beta_start"] as number,
        beta_end: fileConfig["beta_end"] as number,
        beta_schedule: fileConfig["beta_schedule"] as string,
        trained_betas: fileConfig["trained_betas"],
      });
      // Bit-exact in practice; the README's bar is 1e-6 relative.
      assert.equal(maxRelDiff(betas, table.schedulers._betas), 0);
      assert.equal(maxRelDiff(alphasCumprod, table.schedulers._alphas_cumprod), 0);
    });

    for (const [key, className] of Object.entries(table.classes)) {
      const karras = table.extra_kwargs[key]?.["use_karras_sigmas"] === true;
      for (const n of STEP_COUNTS) {
        test(`${key} (${className}${karras ? ", Karras" : ""}), ${n} steps`, () => {
          const expected = table.schedulers[key]?.[n] as TimestepEntry;
          const s = createScheduler(className, fileConfig, Number(n), { karras });
          assert.equal(s.name, className);
          assert.deepEqual([...s.timesteps], expected.timesteps, "timesteps");
          if (expected.sigmas) {
            assert.ok(s.sigmas, "sigmas");
            assert.ok(
              maxRelDiff(s.sigmas, expected.sigmas) <= 1e-6,
              `sigmas off by ${maxRelDiff(s.sigmas, expected.sigmas)}`,
            );
          }
          assert.ok(
            Math.abs(s.initNoiseSigma - expected.init_noise_sigma) <= 1e-6 * expected.init_noise_sigma,
            `init_noise_sigma ${s.initNoiseSigma} vs ${expected.init_noise_sigma}`,
          );
        });
      }

      test(`${key}: effective config as diffusers' from_config leaves it`, () => {
        const effective = table.schedulers[key]?.effective_config as Record<string, unknown>;
        const s = createScheduler(className, fileConfig, 8, { karras });
        for (const [field, value] of Object.entries(s.config)) {
          assert.ok(field in effective, `${field} is not a ${className} key`);
          assert.deepEqual(value, effective[field], field);
        }
        // Every key the class declares is resolved (the effective config also carries the other
        // class's keys as hidden extras, which the class ignores).
        assert.equal(s.config["timestep_spacing"], effective["timestep_spacing"]);
        assert.equal(s.config["prediction_type"], effective["prediction_type"]);
      });
    }

    test("DDIM replays the recorded 8-step run (guidance 7.5 on the traced UNet outputs)", () => {
      const m = readJson<{ runs: { id: string; timesteps: number[] }[] }>(path.join(GOLDEN, model, "manifest.json"));
      const run = m.runs.find((r) => r.id === "ddim");
      assert.ok(run);
      const s = createScheduler("DDIM", fileConfig, 8);
      assert.deepEqual([...s.timesteps], run.timesteps);
      const init = refTensor(model, "pipe_initial_latents");
      const outputs = refTensor(model, "run_ddim_trace_unet_outputs");
      const stepLatents = refTensor(model, "run_ddim_step_latents");
      const final = refTensor(model, "run_ddim_final_latents");
      const shape = init.shape;
      const size = init.data.length;
      let latents: Float32Array = init.data.map((v) => v * s.initNoiseSigma);
      const noRandom = {
        randn: () => {
          throw new Error("DDIM (eta 0) draws no noise");
        },
      };
      let worst = 0;
      for (let i = 0; i < s.timesteps.length; i++) {
        // outputs[i] is [uncond, cond]; guidance in float32 as torch: u + 7.5 (c − u).
        const uncond = outputs.data.subarray(2 * i * size, (2 * i + 1) * size);
        const cond = outputs.data.subarray((2 * i + 1) * size, (2 * i + 2) * size);
        const guided = uncond.map((u, j) => u + Math.fround(7.5 * Math.fround((cond[j] as number) - u)));
        assert.equal(s.scaleModelInput(latents, i), latents, "DDIM does not scale its input");
        latents = s.step(guided, i, latents, noRandom, shape);
        const expected = stepLatents.data.subarray(i * size, (i + 1) * size);
        const rel = maxAbsDiff(latents, expected) / maxAbs(expected);
        worst = Math.max(worst, rel);
        assert.ok(rel <= 1e-3, `step ${i}: ${rel} relative to max |value|`);
      }
      const rel = maxAbsDiff(latents, final.data) / maxAbs(final.data);
      assert.ok(rel <= 1e-3, `final latents: ${rel}`);
      // The arithmetic mirrors torch's float32 operations, so the replay is in fact exact.
      assert.equal(worst, 0, `steps reproduce diffusers bit for bit (worst ${worst})`);
      assert.equal(rel, 0);
    });
  });
}

describe("scheduler names", () => {
  const config = readJson<Record<string, unknown>>(path.join(modelDir("tiny-sd1"), "scheduler/scheduler_config.json"));

  test("every accepted name builds a scheduler", () => {
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, config, 10);
      assert.ok(s.timesteps.length >= 10, name);
    }
  });

  test("Replicate's names", () => {
    const expected: Record<string, [string, boolean]> = {
      DDIM: ["DDIMScheduler", false],
      K_EULER: ["EulerDiscreteScheduler", false],
      K_EULER_ANCESTRAL: ["EulerAncestralDiscreteScheduler", false],
      DPMSolverMultistep: ["DPMSolverMultistepScheduler", false],
      PNDM: ["PNDMScheduler", false],
      KLMS: ["LMSDiscreteScheduler", false],
      HeunDiscrete: ["HeunDiscreteScheduler", false],
      UniPCMultistep: ["UniPCMultistepScheduler", false],
      KarrasDPM: ["DPMSolverMultistepScheduler", true],
      LCM: ["LCMScheduler", false],
    };
    assert.deepEqual(Object.keys(REPLICATE_SCHEDULERS).sort(), Object.keys(expected).sort());
    for (const [name, [className, karras]] of Object.entries(expected)) {
      const s = createScheduler(name, config, 8);
      assert.equal(s.name, className, name);
      if ("use_karras_sigmas" in s.config) assert.equal(s.config["use_karras_sigmas"], karras, name);
    }
  });

  test("diffusers' class names, with Karras sigmas on request", () => {
    assert.equal(Object.keys(DIFFUSERS_SCHEDULERS).length, 9);
    for (const name of Object.keys(DIFFUSERS_SCHEDULERS)) assert.equal(createScheduler(name, config, 8).name, name);
    const k = createScheduler("EulerDiscreteScheduler", config, 8, { karras: true });
    assert.equal(k.config["use_karras_sigmas"], true);
    assert.throws(
      () => createScheduler("DDIMScheduler", config, 8, { karras: true }),
      (e: unknown) => e instanceof RequestError && e.field === "scheduler",
    );
  });

  test("AUTOMATIC1111's sampler names", () => {
    const expected: Record<string, [string, Record<string, unknown>]> = {
      "Euler a": ["EulerAncestralDiscreteScheduler", {}],
      Euler: ["EulerDiscreteScheduler", { use_karras_sigmas: false }],
      "DPM++ 2M": [
        "DPMSolverMultistepScheduler",
        { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: false },
      ],
      "DPM++ 2M Karras": [
        "DPMSolverMultistepScheduler",
        { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: true },
      ],
      "DPM++ 2M SDE": ["DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++" }],
      "DPM++ 2M SDE Karras": [
        "DPMSolverMultistepScheduler",
        { algorithm_type: "sde-dpmsolver++", use_karras_sigmas: true },
      ],
      DDIM: ["DDIMScheduler", {}],
      PLMS: ["PNDMScheduler", { skip_prk_steps: true }],
      LMS: ["LMSDiscreteScheduler", { use_karras_sigmas: false }],
      "LMS Karras": ["LMSDiscreteScheduler", { use_karras_sigmas: true }],
      Heun: ["HeunDiscreteScheduler", {}],
      UniPC: ["UniPCMultistepScheduler", {}],
      LCM: ["LCMScheduler", {}],
    };
    assert.deepEqual(Object.keys(A1111_SCHEDULERS).sort(), Object.keys(expected).sort());
    for (const [name, [className, fields]] of Object.entries(expected)) {
      const s = createScheduler(name, config, 8);
      assert.equal(s.name, className, name);
      for (const [field, value] of Object.entries(fields)) assert.equal(s.config[field], value, `${name}: ${field}`);
    }
  });

  test("names match regardless of case and surrounding space", () => {
    assert.equal(resolveSchedulerName("euler A").className, "EulerAncestralDiscreteScheduler");
    assert.equal(resolveSchedulerName(" k_euler ").className, "EulerDiscreteScheduler");
    assert.equal(resolveSchedulerName("dpm++ 2m karras").overrides["use_karras_sigmas"], true);
  });

  test("an unknown name is an error listing the accepted ones", () => {
    assert.throws(
      () => createScheduler("Euler b", config, 8),
      (e: unknown) =>
        e instanceof RequestError &&
        e.field === "scheduler" &&
        SCHEDULER_NAMES.every((n) => e.message.includes(n)) &&
        e.message.includes('"Euler b"'),
    );
  });
});

describe("scheduler configs", () => {
  const config = readJson<Record<string, unknown>>(path.join(modelDir("tiny-sd2v"), "scheduler/scheduler_config.json"));

  test("keys may be given in camelCase", () => {
    const s = createScheduler("DDIM", { ...config, timestepSpacing: "trailing", setAlphaToOne: true }, 4);
    assert.deepEqual([...s.timesteps], [999, 749, 499, 249]);
    assert.equal(s.config["set_alpha_to_one"], true);
  });

  test("a key missing from the file takes the new class's own default, as from_config does", () => {
    // tiny-sd2v's file (a DDIMScheduler) has no timestep_spacing: DDIM and PNDM default to "leading", the rest to "linspace".
    assert.equal(createScheduler("DDIM", config, 8).timesteps[0], 876);
    assert.equal(createScheduler("PNDM", config, 8).timesteps[0], 876);
    assert.equal(createScheduler("K_EULER", config, 8).timesteps[0], 999);
    assert.equal(createScheduler("DPMSolverMultistep", config, 8).timesteps[0], 999);
    // ...and so does a key of another class: PNDM's skip_prk_steps is ignored by DDIM.
    assert.equal("skip_prk_steps" in createScheduler("DDIM", config, 8).config, false);
  });

  test("unsupported options are ModelErrors naming the field", () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ["DDIM", { thresholding: true }, "thresholding"],
      ["DDIM", { beta_schedule: "sigmoid" }, "beta_schedule"],
      ["DDIM", { timestep_spacing: "uniform" }, "timestep_spacing"],
      ["DDIM", { steps_offset: "1" }, "steps_offset"],
      ["DDIM", { trained_betas: [0.1, 0.2] }, "trained_betas"],
      ["PNDM", { prediction_type: "sample" }, "prediction_type"],
      ["K_EULER_ANCESTRAL", { prediction_type: "sample" }, "prediction_type"],
      ["K_EULER", { final_sigmas_type: "one" }, "final_sigmas_type"],
      ["DPMSolverMultistep", { algorithm_type: "dpmsolver", final_sigmas_type: "zero" }, "final_sigmas_type"],
      ["DPMSolverMultistep", { variance_type: "learned_range" }, "variance_type"],
      ["DPMSolverMultistep", { solver_order: 4 }, "solver_order"],
      ["UniPCMultistep", { solver_p: {} }, "solver_p"],
      ["HeunDiscrete", { beta_schedule: "cosine" }, "beta_schedule"],
    ];
    for (const [name, change, field] of cases) {
      assert.throws(
        () => createScheduler(name, { ...config, ...change }, 8),
        (e: unknown) => e instanceof ModelError && e.field === field,
        `${name} ${JSON.stringify(change)}`,
      );
    }
  });

  test("too many steps, or none, are the request's fault", () => {
    for (const steps of [1001, 0, 2.5]) {
      assert.throws(
        () => createScheduler("DDIM", config, steps),
        (e: unknown) => e instanceof RequestError && e.field === "numInferenceSteps",
      );
    }
  });

  test("multistep schedulers insist on running their steps in order", () => {
    const s = createScheduler("DPMSolverMultistep", config, 4);
    const x = new Float32Array(4);
    const ctx = { randn: (shape: readonly number[]) => new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    s.step(x, 0, x, ctx, [1, 1, 2, 2]);
    assert.throws(() => s.step(x, 2, x, ctx, [1, 1, 2, 2]), /in order/);
  });
});
