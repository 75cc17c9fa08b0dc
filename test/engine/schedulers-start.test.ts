/**
 * img2img's two scheduler hooks for every scheduler class, beyond the three the golden runs
 * cover (DDIM, Euler a, DPM++ 2M, in img2img-golden.test.ts): add_noise and a late start.
 *
 * add_noise is cross-checked between parameterisations: at an integer timestep t, every
 * scheduler's noised sample, as the UNet sees it (after scaleModelInput), must equal the
 * variance-preserving √ᾱ_t x₀ + √(1 − ᾱ_t) ε computed from the training schedule, whether the
 * scheduler keeps x₀ + σ ε (Euler, Heun, LMS), α_t x₀ + σ_t ε (DPM-Solver, UniPC) or ᾱ-indexed
 * values (DDIM, PNDM).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { createScheduler, DIFFUSERS_SCHEDULERS, noiseSchedule } from "../../src/engine/schedulers/index.js";
import { FIXTURE_MODELS, maxAbs, maxAbsDiff, modelDir } from "../helpers/fixtures.js";

const SIZE = 24;
const SHAPE = [1, 4, 2, 3];
const x0 = Float32Array.from({ length: SIZE }, (_, j) => (((5 * j) % 11) - 5) / 4);
const eps = Float32Array.from({ length: SIZE }, (_, j) => (((3 * j) % 13) - 6) / 4);

for (const model of FIXTURE_MODELS) {
  const config = JSON.parse(readFileSync(path.join(modelDir(model), "scheduler/scheduler_config.json"), "utf8"));
  const { alphasCumprod } = noiseSchedule({ trained_betas: null, ...config });

  test(`${model}: every scheduler's add_noise agrees with the variance-preserving form at integer timesteps`, () => {
    for (const name of Object.keys(DIFFUSERS_SCHEDULERS)) {
      // "leading" spacing gives whole timesteps for every class.
      const s = createScheduler(name, { ...config, timestep_spacing: "leading", steps_offset: 1 }, 10);
      let compared = 0;
      for (let i = 0; i < s.timesteps.length; i++) {
        const t = s.timesteps[i] as number;
        if (!Number.isInteger(t)) continue;
        const abar = alphasCumprod[t] as number;
        const expected = x0.map((x, j) => Math.sqrt(abar) * x + Math.sqrt(1 - abar) * (eps[j] as number));
        const seen = s.scaleModelInput(s.addNoise(x0, eps, i), i);
        const err = maxAbsDiff(seen, expected) / maxAbs(expected);
        assert.ok(err <= 2e-6, `${name} step ${i} (t = ${t}): off by ${err} relative`);
        compared++;
      }
      assert.ok(compared >= 9, `${name}: ${compared} integer timesteps`);
    }
  });

  test(`${model}: every scheduler runs from a late start to the end, and refuses a start out of range`, () => {
    const ctx = { randn: () => eps };
    for (const name of Object.keys(DIFFUSERS_SCHEDULERS)) {
      const s = createScheduler(name, config, 8);
      // strength 0.5: t_start = 4, times the scheduler's order.
      const begin = 4 * s.order;
      s.startAt(begin);
      let latents = s.addNoise(x0, eps, begin);
      for (let i = begin; i < s.timesteps.length; i++) {
        const out = s.scaleModelInput(latents, i).map((v, j) => 0.5 * v + (eps[j] as number) / 8);
        latents = s.step(out, i, latents, ctx, SHAPE);
      }
      assert.ok(
        latents.every((v) => Number.isFinite(v)),
        `${name}: finite`,
      );
      assert.throws(() => createScheduler(name, config, 8).startAt(s.timesteps.length), RangeError, name);
      assert.throws(() => createScheduler(name, config, 8).startAt(-1), RangeError, name);
    }
  });
}

test("a multistep scheduler refuses to step before its start, or to move its start after a step", () => {
  const config = JSON.parse(readFileSync(path.join(modelDir("tiny-sd1"), "scheduler/scheduler_config.json"), "utf8"));
  const s = createScheduler("DPMSolverMultistepScheduler", config, 8);
  s.startAt(3);
  assert.throws(() => s.step(x0, 0, x0, { randn: () => eps }, SHAPE), /expected step 3/);
  s.step(x0, 3, x0, { randn: () => eps }, SHAPE);
  assert.throws(() => s.startAt(5), /after the first step/);
});
