/**
 * Every scheduler's step arithmetic against diffusers itself, on a stand-in model.
 *
 * The golden fixtures hold full pipeline runs, which need the UNet; these references need none.
 * They were made with diffusers 0.29.2 on torch 1.13.1 / numpy 1.24.2 / scipy 1.10.1 (the
 * fixtures' versions) by running, for each fixture model's scheduler_config.json and each case
 * below, `Class.from_config(config, **overrides)`, `set_timesteps(steps)`, and then the
 * pipeline's loop on latents of shape [1, 4, 2, 3] with a deterministic stand-in for the UNet:
 *
 *   latents = init * init_noise_sigma,        init[j] = ((5j mod 11) − 5) / 4
 *   for i, t in enumerate(timesteps):
 *     x = scale_model_input(latents, t)
 *     out = 0.5 * x + c_i,                    c_i[j] = ((7j + 13i mod 17) − 8) / 8
 *     latents = step(out, t, latents, generator=...).prev_sample
 *
 * with diffusers' `randn_tensor` replaced by the k-th draw noise_k[j] = ((3j + 5k mod 13) − 6) / 4
 * (all exact in float32, so both sides feed identical numbers). Recorded: the timesteps, how many
 * noise draws the scheduler made, the float64 sum of the latents after every step, and the final
 * latents (float32, little-endian, base64).
 *
 * The cases cover what the fixtures do not: PRK warm-up, v / sample prediction, clipping, Karras
 * sigmas for LMS / Euler / Heun, leading and trailing spacing, zero terminal SNR, third order,
 * the SDE and noise-prediction DPM-Solver variants, Lu lambdas, UniPC bh1 / order 3 / disabled
 * corrector, and 1-step schedules.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { createScheduler } from "../../src/engine/schedulers/index.js";
import { FIXTURE_MODELS, modelDir } from "../helpers/fixtures.js";

interface ReferenceCase {
  scheduler: string;
  overrides: Record<string, unknown>;
  steps: number;
  timesteps: number[];
  noiseDraws: number;
  stepSums: number[];
  final: string;
}

const SHAPE = [1, 4, 2, 3] as const;
const SIZE = 24;
const init = Float32Array.from({ length: SIZE }, (_, j) => (((5 * j) % 11) - 5) / 4);
const offsets = (i: number) => Float32Array.from({ length: SIZE }, (_, j) => (((7 * j + 13 * i) % 17) - 8) / 8);
const noise = (k: number) => Float32Array.from({ length: SIZE }, (_, j) => (((3 * j + 5 * k) % 13) - 6) / 4);

function decode(b64: string): Float32Array {
  const bytes = Buffer.from(b64, "base64");
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(4 * i);
  return out;
}

for (const model of FIXTURE_MODELS) {
  describe(`scheduler steps match diffusers on a stand-in model: ${model}`, () => {
    const config = JSON.parse(readFileSync(path.join(modelDir(model), "scheduler/scheduler_config.json"), "utf8"));
    for (const [id, c] of Object.entries(reference()[model])) {
      test(`${id}: ${c.scheduler} ${JSON.stringify(c.overrides)}, ${c.steps} steps`, (t) => {
        const s = createScheduler(c.scheduler, { ...config, ...c.overrides }, c.steps);
        assert.deepEqual([...s.timesteps], c.timesteps, "timesteps");
        let draws = 0;
        const ctx = {
          randn: (shape: readonly number[]) => {
            assert.deepEqual(shape, SHAPE, "noise is drawn in the latents' shape");
            return noise(draws++);
          },
        };
        let latents: Float32Array = init.map((v) => v * s.initNoiseSigma);
        let worstSum = 0;
        for (let i = 0; i < s.timesteps.length; i++) {
          const x = s.scaleModelInput(latents, i);
          const c_i = offsets(i);
          const out = x.map((v, j) => Math.fround(0.5 * v) + (c_i[j] as number));
          latents = s.step(out, i, latents, ctx, SHAPE);
          let sum = 0;
          for (const v of latents) sum += v;
          const expected = c.stepSums[i] as number;
          const err = Math.abs(sum - expected) / Math.max(1, Math.abs(expected));
          worstSum = Math.max(worstSum, err);
          assert.ok(err <= 1e-5, `step ${i}: sum ${sum} vs ${expected}`);
        }
        assert.equal(draws, c.noiseDraws, "noise draws");
        const final = decode(c.final);
        let diff = 0;
        let scale = 0;
        for (let j = 0; j < SIZE; j++) {
          diff = Math.max(diff, Math.abs((latents[j] as number) - (final[j] as number)));
          scale = Math.max(scale, Math.abs(final[j] as number));
        }
        const rel = diff / scale;
        t.diagnostic(
          `final latents: ${rel.toExponential(2)} relative to max |value|; step sums ${worstSum.toExponential(2)}`,
        );
        assert.ok(rel <= 1e-5, `final latents off by ${rel} relative to max |value|`);
      });
    }
  });
}

/** Generated from diffusers as described at the top of this file. */
function reference(): Record<(typeof FIXTURE_MODELS)[number], Record<string, ReferenceCase>> {
  return {
    "tiny-sd1": {
      ddim: {
        scheduler: "DDIMScheduler",
        overrides: {},
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -0.6583172977, -0.4649899602, -0.6090251952, -1.003296047, -0.8981818855, -0.9617030798, -0.45663248,
          -0.4495028555,
        ],
        final:
          "OL3xv6O+2D7Bd9g/mpv8Pjue5D82BD6/r+clQIM/QsD+4dE/NwANwPzjzj6wkwjAxx2nv4pOMkBSRYe/xIsEQJLYfL9aeRhAT9KWv4Jctz0R242/L+I8PgkCFsDPmn0/",
      },
      ddim_1: {
        scheduler: "DDIMScheduler",
        overrides: {},
        steps: 1,
        timesteps: [1],
        noiseDraws: 0,
        stepSums: [-1.226250853],
        final:
          "/Yqdv1buxjp07p0/t1Z4vsRjfT+lHfm+n+o+P+KiQb96cQA/Aw6Av6zwgz6USp+/Vu5GvFF8nz+8KYO+vz+APwMOAL9XBkI/KIc+v5Tk+T5NAH2/lOR5Prm8nb8AAAAA",
      },
      ddim_sample_clip: {
        scheduler: "DDIMScheduler",
        overrides: { prediction_type: "sample", clip_sample: true, set_alpha_to_one: true },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -1.227720162, -1.261338338, -1.17335245, -0.9578592628, -0.7687127665, -0.2532334328, -0.9462843388,
          -0.5379772261,
        ],
        final:
          "29WUvrqfMz4y3da+NDfXPgAAgL/05p+8plTyPpGkDb9K60k/AACAv4m+sj5x7cY+ySCcvmardz9pl2G/7P75Pp6yIT+YkiA9whkhPqgnAb+/fLY+AACAv6Cg173FWpw+",
      },
      ddim_trailing_zsnr: {
        scheduler: "DDIMScheduler",
        overrides: { timestep_spacing: "trailing", rescale_betas_zero_snr: true, prediction_type: "v_prediction" },
        steps: 7,
        timesteps: [999, 856, 713, 570, 428, 285, 142],
        noiseDraws: 0,
        stepSums: [
          -1.075196835, -0.9086786807, -0.8331435025, -0.9135824069, -0.6532207355, -0.6106433198, -0.007406659424,
        ],
        final:
          "SIgEvwy9wz4Mc7U+jOkcvqJczj7768K+n0sxP+eP8b6wAoW8nqo6vsOOeb5v1wi+wQGpvKtR9z2ghTm9ZL6XPihxXDuvLzs+lPf0PZPPuz3q89S+87oPPpG1JL8VGNw+",
      },
      ddim_linspace_linear: {
        scheduler: "DDIMScheduler",
        overrides: { timestep_spacing: "linspace", beta_schedule: "linear" },
        steps: 9,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125, 0],
        noiseDraws: 0,
        stepSums: [
          -0.5812870413, -0.3279393166, -0.5051095188, -1.077993989, -1.039214637, -1.229670446, -0.8884178475,
          -0.6913738847, -0.6913738847,
        ],
        final:
          "eA5EwASLXj4A5URAO9+VPy/VVUApWIa/LIWGQCf/rMAH0ktAvBV0wErZdj987IjA5z4cwDhapkCnZua/ychtQJT2EMCnQJJAPU0pwD7xWj6jjNi/Jfr0PgNiesDRqKs/",
      },
      pndm: {
        scheduler: "PNDMScheduler",
        overrides: {},
        steps: 8,
        timesteps: [876, 751, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -0.6583178788, -1.060116112, -1.894833446, -2.484563142, -1.849928215, -3.087544262, -1.538717866,
          -2.937593907, -2.895690273,
        ],
        final:
          "l9MuwJ5lmL9yZDZA1U/XPpuTF0BiPte/rbGxP2DmqL/EPLw/fJwwvyerIb+MxzXAbjrZvchSIUA3arg+K0wFQEwm5b/evI0/klUowFyDtD+QcYK/aMNtP/LBR8BHe1K9",
      },
      pndm_1: {
        scheduler: "PNDMScheduler",
        overrides: {},
        steps: 1,
        timesteps: [1],
        noiseDraws: 0,
        stepSums: [-1.226250864],
        final:
          "/Yqdv1Luxjp17p0/t1Z4vsRjfT+lHfm+n+o+P+GiQb96cQA/Aw6Av6vwgz6WSp+/Uu5GvFF8nz+8KYO+vz+APwMOAL9YBkI/J4c+v5Pk+T5NAH2/k+R5Prm8nb8AAAAA",
      },
      pndm_prk: {
        scheduler: "PNDMScheduler",
        overrides: { skip_prk_steps: false },
        steps: 8,
        timesteps: [876, 813, 813, 751, 751, 688, 688, 626, 626, 563, 563, 501, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -0.9849081971, -1.29132589, -1.79500157, -1.516497053, -1.572826013, -1.776790485, -1.180825099, -1.651881963,
          -1.886972226, -2.033652321, -1.751832083, -2.108805332, -1.058804095, -2.210166782, -1.869951367,
          -2.700131416, -2.6445788,
        ],
        final:
          "dFlPwGDeI78M8xdAqSpqPjJIHUCfFwS/wH6GP5GpHMCWXbs+Et61vzBoVT94Uca/UbHuvrjo2j9Iqpq+HvYXQLJHqL53syI/9/kFwL7Caz9tv5y/pYuAP5AQ/L//F86+",
      },
      pndm_prk_linspace: {
        scheduler: "PNDMScheduler",
        overrides: { skip_prk_steps: false, timestep_spacing: "linspace" },
        steps: 6,
        timesteps: [999, 882, 882, 799, 799, 682, 682, 599, 599, 483, 483, 400, 400, 200, 0],
        noiseDraws: 0,
        stepSums: [
          -0.7939481214, -1.453486696, -2.425847933, -1.82108359, -1.971170798, -2.447475225, -1.142005399, -2.19111602,
          -2.546089545, -2.921029195, -2.310185432, -2.934537679, -1.627909914, -3.00371173, -3.00371173,
        ],
        final:
          "cZacwH5nCT+8DyFAsDnBPndYQECCAsG/zHpPQOjCbsAryvI/yIADwO/D5T5yjDrAlpiYv78odkCiCwm/nIwyQMoAkb+mcjA/a0PHv2ih2D65qNu/hnNpP9N8ZsBv/pI/",
      },
      lms: {
        scheduler: "LMSDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -2.406624675, -0.6217979789, -1.012081444, -1.679642659, -0.7124687284, -1.083141044, 0.7834269777,
          0.7770259548,
        ],
        final:
          "EnLcvzRsPz/Z9AlA8UqNPHJfKEAhIhi+b450QGCtj8D2oss/E+9OwIhptj8pwTTAYM+6v2SISkBkcNS/rrb9P4UUoL+qK4hAKDa/v1wpsL2MWw7AhUrHPkb4GMCYMMo/",
      },
      lms_20: {
        scheduler: "LMSDiscreteScheduler",
        overrides: {},
        steps: 20,
        timesteps: [
          999, 946.4210815429688, 893.8421020507812, 841.26318359375, 788.6842041015625, 736.1052856445312,
          683.5263061523438, 630.9473876953125, 578.368408203125, 525.7894897460938, 473.2105407714844,
          420.631591796875, 368.0526428222656, 315.47369384765625, 262.8947448730469, 210.3157958984375,
          157.73684692382812, 105.15789794921875, 52.578948974609375, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -10.53835166, -8.384402514, -8.175635338, -8.817454219, -6.072681487, -6.678475976, -4.458934009,
          -4.629216433, -4.377613097, -4.500629485, -3.743838549, -3.962293148, -3.196565837, -3.313588843,
          -3.178681105, -3.239866287, -2.802568682, -2.499978222, -3.019891262, -2.972782984,
        ],
        final:
          "+/CBwDqTtD54RYBA1neUPhLCCUBwwRvA5E05QInz2L+xDQZAwRdAwDdYI7/lYGLA5TMIPyiEdkBD5XA+yX66P52e6L+6Frc/J23av92D+T8DdOK/8CK/PTjFj8ChE1Y/",
      },
      lms_karras: {
        scheduler: "LMSDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.5463699698448, 745.8676545023918, 549.0169112682343, 298.65797036886215, 89.94244301319122,
          12.001061176648363, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -4.854690433, -2.447591662, -2.568627715, -2.998627663, -1.756060183, -1.736717984, -1.546855815,
          -1.521563444,
        ],
        final:
          "vOcqwCUGd744DitAL3FPP04BD0CEsJC/zFdZQGsbdsDEaxZAjrcmwLG50T7Z0UfAX4Kevzr7eEAsUIi/SgEeQMSEyr+NKkxAOhccwAA78z4dlbG/E50WPRv/VMDpYZk/",
      },
      lms_leading: {
        scheduler: "LMSDiscreteScheduler",
        overrides: { timestep_spacing: "leading" },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -2.788907528, -1.670965225, -1.724500239, -2.078717038, -1.181244105, -1.511008799, 0.3833097368,
          0.3760964349,
        ],
        final:
          "5wubv4EnBD+Fj9k/1IQMv/W0+z/5p+e9rmIoQPPwMcD2nQw/ICcBwNMtfD8NrOy/Yb2Rvmjg0j+zeWu/1+F8P0g1QL/8HTZAMaeAv4GkNj6tfgTAEejjPnM10b9qCo4/",
      },
      euler: {
        scheduler: "EulerDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -2.406624675, 0.1282460988, -0.08002585173, -0.7521670461, -0.3967819959, -0.4299808145, 0.1126205176,
          0.1219166368,
        ],
        final:
          "ckoTwI9pJj8QTwVAA6eWP1mCH0CKDiW/mEd0QN8EoMBRWjVAAk1nwFmGgT8zEVHA83IowJCwj0BjjPq/Kg5RQMYUzr9dw4FAF+jdvxH7mb7edZq/Sn3ePRTSQcBScrc/",
      },
      euler_1: {
        scheduler: "EulerDiscreteScheduler",
        overrides: {},
        steps: 1,
        timesteps: [0],
        noiseDraws: 1,
        stepSums: [0.004177433439],
        final:
          "SIbdu8DwbjuEO2Y8cmzyO8fakTxAsDY8y5ewPDrVQL3QVM88uHYxvdQR7jw1GCK9wPDuvEEHMT28M9C8xGVAPbh2sbxGxE89s7mSvCDo9bte+We8IOh1u1R/KrwAAAAA",
      },
      euler_karras: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.54638671875, 745.86767578125, 549.0169067382812, 298.657958984375, 89.94244384765625,
          12.00106143951416, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -4.854690433, -1.251860857, -1.197178125, -1.843255997, -1.229097515, -1.157408058, -1.024721913,
          -0.9988463968,
        ],
        final:
          "hs8swFlTA77FXilAlNSRP8BHIEBSwYC/6OR3QAu0k8AmWTVAb9NLwNM4MD/z4VjAHDoAwAHkkEAjyb6/sQs0QCnm2L+4EXRArYkkwLekUD5d1Ka/HNJ8PR+1XMDeILc/",
      },
      euler_trailing_zsnr: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { timestep_spacing: "trailing", rescale_betas_zero_snr: true },
        steps: 4,
        timesteps: [999, 749, 499, 249],
        noiseDraws: 4,
        stepSums: [3061.202271, 2051.356213, 1525.569947, 1076.372375],
        final:
          "hPAFRHjOM0PjFjHDbgEHROKUNUP6C2BECHMHREPX4MTkHGFEXNCzxLkTnUTj+obEh8mzxCycnUSgwobEciHKRFLaM8RcKPdE6WC0w8ppM8R4lAq/t32zw8/PsUO06Z0/",
      },
      euler_leading_sample: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { timestep_spacing: "leading", prediction_type: "sample" },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 8,
        stepSums: [
          -6.076130394, -4.229568243, -2.967372268, -1.933795899, -1.661607385, -1.139781833, -1.600934386,
          -1.174785465,
        ],
        final:
          "vLnWvhguKD420aG+7XXKPrsqbr9QkdW8pFTyPpKkDb9K60k/wiejv5AHvD5ouXE+yiCcvs5Nlz8xn2G/nuQGP7AeIT+AkiA9AF79u7zd+b7Q0mQ+fhiNvzbLSr4gSJo+",
      },
      euler_a: {
        scheduler: "EulerAncestralDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -2.583882332, -0.1450097561, 0.02909457684, -3.344669044, -1.053682387, -1.23860541, -0.4979937971,
          -0.4797965661,
        ],
        final:
          "Nnaxv9GxOL+VZYU+FEfBPx/P7j+MVcC+5DY5QEb6asAA/vY/phYXwB4Zir5GKwq97YZIvybsfz8WTxDANgCsPwQM3r5BElNAhb8yv9imnb58t1u+RF1EPc5gDMCUwYk/",
      },
      euler_a_leading: {
        scheduler: "EulerAncestralDiscreteScheduler",
        overrides: { timestep_spacing: "leading" },
        steps: 5,
        timesteps: [801, 601, 401, 201, 1],
        noiseDraws: 5,
        stepSums: [-0.8820033073, -0.02428942919, -0.003066077828, -0.5947156399, -0.5617835354],
        final:
          "L1ibv0neg7/GX4Q/nyZKPwNnxD/AiDG87a/HP6QxIMCYPu4/HaS0v1wMrrvG64a+WzGbv+jlQD8W77O/FUeZPwI8Rr9rtzhA7PeIv7bPT76uGeW+GjWYPs68n7/HWKU+",
      },
      dpmpp_2m: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {},
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -0.4991399422, -0.5658297688, -1.065105326, -1.82098192, -1.559984498, -1.795325354, -1.237966869,
          -0.9357474372,
        ],
        final:
          "BKo3wFxFUj6Ory5An+8BPxWmOUARh7W/XVBMQMoWWMDExPo/uwYPwLK8CD37dTrAo+Oev9xIWkD6gEi/lwYDQP8eu79+GShA+4ntv/IYKz/Q2sa/EvNWP9isXsAYzpA/",
      },
      dpmpp_2m_20: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {},
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -0.9945403822, -1.080162153, -1.377867006, -1.86805135, -1.790526882, -2.090861216, -1.915474515,
          -2.058072295, -2.322596774, -2.676733345, -2.660827577, -2.872370161, -2.755300175, -2.838305272,
          -2.988532245, -3.192419618, -3.093980983, -2.804618085, -2.709447801, -2.500126909,
        ],
        final:
          "U7NUwML8uL2P6D5AehzQvJKAMECHhNW/pTA9QBYLKMBKR84/J8UUwPPmvD1OhjfAw27avq99VkCjWTm/H4EKQMr5lL/JvAVA8bEHwBT6cz9EigPADlo6P1WsbMBpGm0/",
      },
      dpmpp_2m_karras: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [999, 890, 746, 549, 299, 90, 12, 0],
        noiseDraws: 0,
        stepSums: [
          -0.6135631651, -0.8544523716, -1.995920986, -3.635608166, -2.955604386, -2.790547654, -2.533829285,
          -2.487016041,
        ],
        final:
          "EfZAwIxBvb5yJjRAKpmgPs7KAUCySNu/4Dc6QDNDI8C0yc4/Nr3NvzGV0r7CMR3ADuevPI22OkBAZ5y++NLIPxbAk79Ix+o/1QkMwDkTfz/7nMC/k5JWPv0FYsB6rIs/",
      },
      dpmpp_2m_heun: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { solver_type: "heun" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -0.4991399422, -0.6005137563, -1.136471361, -1.919213906, -1.650720239, -1.892634541, -1.312976569,
          -1.001533609,
        ],
        final:
          "4Lk7wA0dVz4QpzBA21btPjKUOkAzt7+/iwxMQP9AUcBGEvM/3GIJwJdUf72F2zXAvSeUv2pnVUBLEja/1IP3P3r6s78avx9AG7fpv9JmOT8ERcm/TBthP/coYsBdfpM/",
      },
      dpmpp_3m_20: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { solver_order: 3 },
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -0.9945403822, -1.080162153, -1.361687958, -1.828403588, -1.564499924, -1.989988692, -1.68781057,
          -1.934941396, -2.205580074, -2.543870635, -2.40831542, -2.711266905, -2.506684452, -2.674464934, -2.835687608,
          -3.027387708, -2.814636767, -2.523665242, -2.706961051, -2.497857377,
        ],
        final:
          "AfxIwPN/N76lhTtAtukSvkAhMEAFOry/KiI4QDy5LMCRV8Q/YhoXwHmJmD7f3TnABkj6vtAWUkDa50y/1V8YQGf6l7/7XhNAGRoOwBSOYz+50AvAffw1PyW/YMAzAFY/",
      },
      dpmpp_2m_sde: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver++" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -0.5800427496, -0.9096490145, -1.409118533, -3.805029929, -2.334521562, -2.440616712, -1.309431896,
          -0.9984247535,
        ],
        final:
          "8FSbvyhsU7/lNAU/wmuLPh8Q6T+iVnO/T80TQAgMur97b5A+8eZiv6GLhL8MtSk/NCrsPtHZQ76Bp3i/VHWZPWUe6L6nerI/zwGpvouZWj8NRo2+nBPQPkNbF8DWHmU/",
      },
      dpmpp_2m_sde_heun: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver++", solver_type: "heun" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -0.5800427496, -1.019948363, -1.634886086, -4.084177703, -2.584975481, -2.625178874, -1.365312159,
          -1.047433347,
        ],
        final:
          "3tSZv0W5Rr9pA/A+ZDIvPoEH5T+X9oa/xAwRQIGtnL+YWMw90Ic1vx0Cl79bkkk/rx0jP+p0qb7WnlW/2hEVvq9lqr5cRY4/FiFUvljncz9PxJy+fEXkPlx2GcDPRmw/",
      },
      dpm_2m_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "dpmsolver", final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -0.4991401285, -0.5658295751, -0.9719566107, -1.661027893, -1.354844205, -1.645462066, -1.059100896,
          -0.8049162775,
        ],
        final:
          "rRMywEZ0YT6l9i1As/EMPz6FOUDkn6K/2thSQBCQaMAoAARAq9McwKk8dz7hrUPAJNOyv+PDZEC/P3C/jbkOQEbUxb/s8ztAJ1f2vzLPEj/bDMy/lAlBP8qSWsD6K5M/",
      },
      dpm_3m_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {
          algorithm_type: "dpmsolver",
          final_sigmas_type: "sigma_min",
          solver_order: 3,
          solver_type: "heun",
        },
        steps: 10,
        timesteps: [999, 899, 799, 699, 599, 500, 400, 300, 200, 100],
        noiseDraws: 0,
        stepSums: [
          -0.6800757721, -0.7538131624, -1.123147041, -1.791115612, -1.408508211, -1.94703804, -1.35600087,
          -1.640802175, -1.772237554, -1.948489875,
        ],
        final:
          "Y0ApwPATfr0r/A1AlKhOP++cEkAJVZK/f2c9QH/tWcADwBNAFi46wAtrgz/PJ1XApqySv9jVc0BnMLS/t4VKQOAj6r9IZkFA0vYLwE61vz26qKi/4+YpPgQpUcD/o1U/",
      },
      sde_dpm_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver", final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -0.6611682475, -1.084676147, -1.172865331, -4.447390556, -1.227948427, -2.522793055, -0.8319115639,
          -0.01020306349,
        ],
        final:
          "1k0Nv8K7iL6ktAI/BNDqvq06/T9IS2o9G2uYPzCWcr9AiVW+pIz6PVkHmL8CaX4+qz2MPmD8Dr/sgDE+9VW/vqkfjb8bTMI/5KynPf5oCD8VWAC/vAw5P/dhmb9Yk4S9",
      },
      dpmpp_cosine_clipped: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { beta_schedule: "squaredcos_cap_v2", lambda_min_clipped: -5.1, timestep_spacing: "leading" },
        steps: 8,
        timesteps: [881, 771, 661, 551, 441, 331, 221, 111],
        noiseDraws: 0,
        stepSums: [
          -0.5123410374, -0.486736387, -0.7164319903, -1.089764334, -0.8308354951, -0.935380172, -0.5182632208,
          -0.4077035636,
        ],
        final:
          "w/PGv5Kciz4xn8U/rX90PrwG1z8nohy/gC3wP75GDsCnMpc/SA3Qv3tGqT4z//G/UX9uv63qB0A21S6/dw7TP/+4cr+AdO8/9X+Bv1nghD4n14W/hn7KPi+48r/JjBc/",
      },
      dpmpp_lu_sample: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { use_lu_lambdas: true, prediction_type: "sample", euler_at_final: true },
        steps: 8,
        timesteps: [999, 835, 622, 359, 133, 31, 5, 0],
        noiseDraws: 0,
        stepSums: [
          -1.429059881, -1.565730184, -1.335461438, -0.3758126944, -0.8238062561, -0.2837226689, -1.187320944,
          -0.9686605334,
        ],
        final:
          "m0F8vkLFBz4e5se+TGOkPhhkfL/UTa09+afHPp8Lyr7H6yY/3maSv7XH1D56gsU+esqsvuelez+cE1C/4FuFPl57Nz+A8im7QK4oPfey9r7rLGs+QeWJv4BY3rsh25g+",
      },
      heun: {
        scheduler: "HeunDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 856.2857055664062, 713.5714111328125, 713.5714111328125, 570.8571166992188,
          570.8571166992188, 428.1428527832031, 428.1428527832031, 285.4285583496094, 285.4285583496094,
          142.7142791748047, 142.7142791748047, 0, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -2.406624675, -7.150104046, -5.873701334, -6.626875982, -4.573585406, -5.053370923, -3.30694133, -3.633639157,
          -3.271774411, -3.414379984, -2.85577482, -2.993187115, -2.071604893, -2.294231996, -2.279017713,
        ],
        final:
          "ejRcwPl/vj7bSzNAoV8wP1wpDkCbPtS/mbEbQBYPIcDBogZAZT8JwLFaYT1jVkvALu4nv895bUAksEq/xdIJQI/Bwr/Svs8/6W7Dv6cRZz8V35q/Lg+lPsGmY8CTqAg/",
      },
      heun_1: {
        scheduler: "HeunDiscreteScheduler",
        overrides: {},
        steps: 1,
        timesteps: [0],
        noiseDraws: 0,
        stepSums: [0.004177433439],
        final:
          "SIbdu8DwbjuEO2Y8cmzyO8fakTxAsDY8y5ewPDrVQL3QVM88uHYxvdQR7jw1GCK9wPDuvEEHMT28M9C8xGVAPbh2sbxGxE89s7mSvCDo9bte+We8IOh1u1R/KrwAAAAA",
      },
      heun_karras: {
        scheduler: "HeunDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.5463699698448, 889.5463699698448, 745.8676545023918, 745.8676545023918, 549.0169112682343,
          549.0169112682343, 298.65797036886215, 298.65797036886215, 89.94244301319122, 89.94244301319122,
          12.001061176648363, 12.001061176648363, 0, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -4.854690433, -8.441516399, -6.872644186, -7.748101115, -4.712833196, -5.338179052, -2.782801032,
          -3.278435856, -2.828037441, -2.997052401, -2.638354346, -2.730887033, -2.556667821, -2.589045875,
          -2.569533419,
        ],
        final:
          "jMlOwKb/Vj655DNA9gf6PrCuFEDR3eW/SfETQOHtG8AesfM/4WPvv7olmDw1P1LAz1IEv/PKXEB9RwS/FPoeQN6q27+2bek/WsDXv0hSaj9QHrS/RPTaPg4/bMANCdU+",
      },
      heun_sample_clip: {
        scheduler: "HeunDiscreteScheduler",
        overrides: { prediction_type: "sample", clip_sample: true, clip_sample_range: 0.5 },
        steps: 4,
        timesteps: [999, 666, 666, 333, 333, 0, 0],
        noiseDraws: 0,
        stepSums: [-4.148318417, -3.951781482, -1.194041863, 0.08497494459, 0.4068394639, 15.85506478, -0.9549711943],
        final:
          "AAAAPwAAAL+GFwc+AAAAPwAAAL8AAAA/AAAAv3wJZT4AAAC/iAdTPgAAAD8AAAC/AAAAPwAAAL94Mfi9AAAAvwQAAL8AAAA/AAAAvwQc8T0kP/k+AAAAvwAAAD8AAAC/",
      },
      unipc: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {},
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -0.4991399422, -0.8394784927, -1.394750472, -2.075777397, -1.51412268, -1.911656991, -1.305008106,
          -0.9945445955,
        ],
        final:
          "E249wNhdYD5ufjRA0AbHPtGHPEBRXcO/6LhNQDCnTMCKQOk/URAFwLznvb23bDPAn1yUv65fUECeQyW/ByPsP5har78KZx1AGBTovwu6ST8iXtK/n99pP5K+Y8D3UZc/",
      },
      unipc_20: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {},
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -0.9945403486, -1.190783247, -1.498224378, -1.971855752, -1.692790825, -2.155635267, -1.849760808,
          -2.128290519, -2.414945487, -2.761943474, -2.628786214, -2.94474797, -2.746594232, -2.914459273, -3.076877147,
          -3.271900021, -3.096409323, -2.804577623, -2.783493787, -2.56768187,
        ],
        final:
          "SrVbwPvkcr2xEUBAGEYYvFwvM0BOYOO/BtM+QJbrJcD1FtE/0PcQwGaS/rupVTTAw9zKvoSVV0AdHTO/DPkDQOS2jr90ePs/I1YFwI8cej/TIgLAKZNGP7c6c8DYIXU/",
      },
      unipc_karras: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [999, 890, 746, 549, 299, 90, 12, 0],
        noiseDraws: 0,
        stepSums: [
          -0.6135631651, -1.092511535, -2.261953235, -3.62301147, -2.523002088, -2.347535774, -2.110843144,
          -2.070018753,
        ],
        final:
          "H5M4wAukHb7WCydAkGQOP7m6AkAr8MO/gC4+QCfMPsBYaPQ/usH+v/jQNb5+qSfAJ4m/vjjPUEBcFyO/6GjyP+8cor9BqQpA5hADwMRUNz/+Oqu/IkEYPrsuW8C274k/",
      },
      unipc_3_20: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { solver_order: 3 },
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -0.9945403486, -1.190783247, -1.483453721, -1.935847163, -1.477225523, -2.274376772, -1.737043679,
          -2.200603589, -2.433473222, -2.720338136, -2.473220319, -3.016100883, -2.649872832, -2.957012761,
          -3.088816091, -3.225710586, -2.926461436, -2.7306021, -2.730236135, -2.519093089,
        ],
        final:
          "cvRVwLocir2zfjhAENiyvWSjNkAk2Ni/5eZAQBabLcAzBNA/8McNwGP7lT0HlzHAMYQDv1ZOV0DLVk+/ZE0JQB1LiL8IzQNAcPkFwJ5YWz9MPwfAXutTP54UbsBs+Xw/",
      },
      unipc_bh1_noise: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { solver_type: "bh1", predict_x0: false, final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -0.4991401285, -1.149897799, -1.476371124, -2.335722962, -1.636159718, -2.375035293, -1.46345818,
          -1.479624242,
        ],
        final:
          "bOVCwE5Zyb3rkjtAJCD5Pg7tOkCwnc6/hdQ/QEaoQsAwdfU/3qb5v3uEO76xZj7AxxhVvydRVkB08wS/fPfvPzqgxb8gsxVA/oMHwM1maT9fKsS/aM9mPw6IaMAzbXo/",
      },
      unipc_3_bh1_noise: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {
          solver_order: 3,
          solver_type: "bh1",
          predict_x0: false,
          lower_order_final: false,
          final_sigmas_type: "sigma_min",
        },
        steps: 12,
        timesteps: [999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83],
        noiseDraws: 0,
        stepSums: [
          -0.7939489037, -1.20586285, -1.51530087, -2.297751687, -1.547867641, -2.84914723, -1.632714003, -2.675810277,
          -2.372125283, -2.872969493, -2.029496044, -6.038039029,
        ],
        final:
          "wAiMwDFvT8DGvm1ABRBpQGSyZ0CIwTnAuL+IvlNMaMD+r6NAz3unv08+R0Cs+MzA2yLAv0SwUT/8ICk+aeCwQF1bsr8+dpQ/9iWqwBDE0T+QZsg/UavFPyNPn8Cv9BXA",
      },
      unipc_disable_corr: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { disable_corrector: [0, 3], timestep_spacing: "trailing" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 499, 374, 249, 124],
        noiseDraws: 0,
        stepSums: [
          -0.4991399422, -0.5658296198, -0.983104676, -1.624776691, -1.3325385, -1.787626974, -1.175734311,
          -0.8823459111,
        ],
        final:
          "7xsJwO9IUL38ZjlA0hUkPuZWHECYPiu/34EwQGRjU8BIG9E/fCAJwITyTT+DSFzAZey/v+zZRkDSUCu/Yf8xQHn4+7/SC1xADDAJwFDgTT8UW/e/6z+zPpC+MMDbSyo/",
      },
    },
    "tiny-sd2v": {
      ddim: {
        scheduler: "DDIMScheduler",
        overrides: {},
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -1.03674504, -0.8661478907, -0.8001836389, -0.8775908351, -0.6600149907, -0.6250236891, -0.1080911253,
          -0.1028783461,
        ],
        final:
          "gCQNv0UsoD5BBdY+ucEFvreU4T7oG7++34otP5IPAL/aYUI9VtZyvqbdR74/HXa+bMnLvK3yZj6T8HG9jQ+0PlIMf72H5Hs+rcFiPBe88z0T99u+/fwQPhIZLL+J/8E+",
      },
      ddim_1: {
        scheduler: "DDIMScheduler",
        overrides: {},
        steps: 1,
        timesteps: [1],
        noiseDraws: 0,
        stepSums: [-1.225645004],
        final:
          "A3edv+zCxjpk2p0/kDd4voRDfT9T/vi+PdI+P+iJQb/4YAA/Lft/v2Xfgz45Np+/7MJGvOtnnz+jGIO+Ry+APy37/75J7UE/3G4+vxfF+T4i4Hy/F8V5PrOonb8AAAAA",
      },
      ddim_sample_clip: {
        scheduler: "DDIMScheduler",
        overrides: { prediction_type: "sample", clip_sample: true, set_alpha_to_one: true },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -1.227720162, -1.261338338, -1.17335245, -0.9578592628, -0.7687127665, -0.2532334328, -0.9462843388,
          -0.5379772261,
        ],
        final:
          "29WUvrqfMz4y3da+NDfXPgAAgL/05p+8plTyPpGkDb9K60k/AACAv4m+sj5x7cY+ySCcvmardz9pl2G/7P75Pp6yIT+YkiA9whkhPqgnAb+/fLY+AACAv6Cg173FWpw+",
      },
      ddim_trailing_zsnr: {
        scheduler: "DDIMScheduler",
        overrides: { timestep_spacing: "trailing", rescale_betas_zero_snr: true, prediction_type: "v_prediction" },
        steps: 7,
        timesteps: [999, 856, 713, 570, 428, 285, 142],
        noiseDraws: 0,
        stepSums: [
          -1.075196835, -0.9086786807, -0.8331435025, -0.9135824069, -0.6532207355, -0.6106433198, -0.007406659424,
        ],
        final:
          "SIgEvwy9wz4Mc7U+jOkcvqJczj7768K+n0sxP+eP8b6wAoW8nqo6vsOOeb5v1wi+wQGpvKtR9z2ghTm9ZL6XPihxXDuvLzs+lPf0PZPPuz3q89S+87oPPpG1JL8VGNw+",
      },
      ddim_linspace_linear: {
        scheduler: "DDIMScheduler",
        overrides: { timestep_spacing: "linspace", beta_schedule: "linear" },
        steps: 9,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125, 0],
        noiseDraws: 0,
        stepSums: [
          -1.178536047, -1.102677442, -1.057495285, -1.09431392, -0.8953887895, -0.8332712837, -0.4291615039,
          -0.2241803855, -0.2241805126,
        ],
        final:
          "YWcEv1g9Izy+ays/HrYwvjSIQD9G2Zq+oAWlPncspL6I0yw9EV61vR+Ps70p/yq/dx3jPe2Pgz7sOwE+iPHbPtUI6L6m5rc+HCqjvnaTrj6KTwC/X8zYPquOIb+Rmc+7",
      },
      pndm: {
        scheduler: "PNDMScheduler",
        overrides: {},
        steps: 8,
        timesteps: [876, 751, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -1.036745144, -1.080983289, -1.123138428, -1.161698997, -0.5257695317, -1.202431291, 0.114411056,
          -1.197185695, -1.168133069,
        ],
        final:
          "aIA0v6FcSr+/92c/RskEP9joUj9lQQK/L9/xvrxhTTxKCDc/vAhNPsUEoL6/aLa/WHBDvUpHaT9mAss+GTuOPz5Jnb/powU+FEqNvzfAFz/+RlI+UrECP+t4Ur8ZJ0m/",
      },
      pndm_1: {
        scheduler: "PNDMScheduler",
        overrides: {},
        steps: 1,
        timesteps: [1],
        noiseDraws: 0,
        stepSums: [-1.225645375],
        final:
          "A3edv+rCxjpk2p0/kDd4voNDfT9T/vi+PdI+P+eJQb/4YAA/Lft/v2Xfgz46Np+/6sJGvOpnnz+iGIO+Ry+APy37/75J7UE/3G4+vxbF+T4i4Hy/FsV5PrSonb8AAAAA",
      },
      pndm_prk: {
        scheduler: "PNDMScheduler",
        overrides: { skip_prk_steps: false },
        steps: 8,
        timesteps: [876, 813, 813, 751, 751, 688, 688, 626, 626, 563, 563, 501, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -1.155515494, -1.191596085, -1.194688429, -1.156048389, -1.083214883, -1.134134356, -0.9073208272,
          -1.00732331, -0.9933443107, -1.056299686, -0.8583294339, -0.9820291772, -0.2345878929, -0.8634537756,
          -0.611664325, -1.283576727, -1.238470994,
        ],
        final:
          "oGptv/sKTr9F6LE+Yc/IPli0Rj8KF/4+9hUUv0S9IL+bqvK+SbUkvoGhQT8osEU82E1nvogyW76Md8E9yyaAP6hcdz43Uby9lR+Pvwz/Cz0nnKE9UgDtPkpdOz4mSmS/",
      },
      pndm_prk_linspace: {
        scheduler: "PNDMScheduler",
        overrides: { skip_prk_steps: false, timestep_spacing: "linspace" },
        steps: 6,
        timesteps: [999, 882, 882, 799, 799, 682, 682, 599, 599, 483, 483, 400, 400, 200, 0],
        noiseDraws: 0,
        stepSums: [
          -1.166430898, -1.172110295, -1.182299445, -1.134463653, -1.045571901, -1.094669566, -0.7424954548,
          -0.8998721093, -0.8851669878, -0.9998446405, -0.6422924548, -0.859308973, 0.2022539377, -0.9527416974,
          -0.9527416974,
        ],
        final:
          "1iXEv9iCvj78iSO//m63PgZKCT96Up0+SCUhP7p8o7908RM/xVLbvo53LD9ClrW+MlxFvwHjcT/AvVW+nO95P4igY73WLCi/8F0zPYqVd79AfvU85flUPgBKrLxzM5o+",
      },
      lms: {
        scheduler: "LMSDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -7.310956329, -3.472564161, -2.102363408, -1.705059946, -0.7601418421, -0.9398107529, 0.8500068188,
          0.8418271877,
        ],
        final:
          "A0UGPayk/z66KeQ+wvqEv3ZLPD/NCXk+QtByPyqDGL9YF1S/ARuivj1B6D5HPr69cqUrPy45Hr/Cetm9rSzfvg6z8D1zdHE/JLEhPoZ21T3GrbC/0crJPrIcyb01ahs/",
      },
      lms_20: {
        scheduler: "LMSDiscreteScheduler",
        overrides: {},
        steps: 20,
        timesteps: [
          999, 946.4210815429688, 893.8421020507812, 841.26318359375, 788.6842041015625, 736.1052856445312,
          683.5263061523438, 630.9473876953125, 578.368408203125, 525.7894897460938, 473.2105407714844,
          420.631591796875, 368.0526428222656, 315.47369384765625, 262.8947448730469, 210.3157958984375,
          157.73684692382812, 105.15789794921875, 52.578948974609375, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -12.92840711, -9.515788525, -7.308344603, -5.899643615, -4.280572236, -3.701589495, -2.508265525,
          -2.260291353, -1.921253577, -1.861290097, -1.340734765, -1.45129104, -0.8981708288, -1.03573161,
          -0.9469973743, -1.073828716, -0.730986461, -0.5434787273, -1.145754427, -1.12574546,
        ],
        final:
          "AzrJv0zMqj4QUd8/XIpJPcKESj21Jaq/CdsnP2+uQj/CICc/OOh6v2QSgr/dq2q/+/SDP4YlfD8n4oA/Orw8vyOCGb8C7yG/9HaZvCA4sj91Mpu+JhObvqU+179JUps+",
      },
      lms_karras: {
        scheduler: "LMSDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.5463699698448, 745.8676545023918, 549.0169112682343, 298.65797036886215, 89.94244301319122,
          12.001061176648363, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -9.002096549, -4.201731354, -2.078292966, -1.519570768, -0.5170483217, -0.6029848307, -0.4531346802,
          -0.4435600676,
        ],
        final:
          "yNa1vpSCEj2odqY+EP4DPq9iLz5E+Ci+OQi/PoW0J7+rWaM+nKu/vu7nzTy9axu/TsSLPihaAj/7oTy+GSs0P9Z81b6O9v0+rhyRvtBpwjvs20K+TncXvh/p97662Vw9",
      },
      lms_leading: {
        scheduler: "LMSDiscreteScheduler",
        overrides: { timestep_spacing: "leading" },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 0,
        stepSums: [
          -4.392081656, -2.432118729, -1.685415, -1.500226736, -0.7027403265, -0.9438746646, 0.8342891484, 0.8159654662,
        ],
        final:
          "bWmCPSuf1z71Cts+FuuAvwjaQj+0DJY+GWRtP23cJr8BHUe/qaLGvoK/BT8+9xu+S5IzP9pjDL+qYCK+n8TIvubanT3kAYI/6FiDPQEIkT1Una6/HOvOPgXxgr2i/xE/",
      },
      euler: {
        scheduler: "EulerDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -7.310956329, -3.386533797, -1.951467574, -1.504324421, -0.8611828089, -0.6896737814, -0.04398269206,
          -0.03237119224,
        ],
        final:
          "6HwFv/7SsD4uuMc+Uowgvi4B4T6Tm7++ul0pPy/M6742/Ry8ybI0vqZ6aL7UkUG+qqb+u7PsDD5Ksu+8MgOfPkZVK71sJ1E+t/eVPXKM8T06m9u+OVgrPlJ4Jb9hZsc+",
      },
      euler_1: {
        scheduler: "EulerDiscreteScheduler",
        overrides: {},
        steps: 1,
        timesteps: [0],
        noiseDraws: 1,
        stepSums: [0.004191150423],
        final:
          "OOzcu77Wbjt64WU8DmzyO+qwkTxctjY8FHGwPH22QL1AMc88aFYxvWrx7TxS9iG9vtbuvL7jMD2TFtC81ENAPWhWsbzpo089PJaSvFgB9rsjrGe8WAF2u8wrKrwAAAAA",
      },
      euler_karras: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.54638671875, 745.86767578125, 549.0169067382812, 298.657958984375, 89.94244384765625,
          12.00106143951416, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -9.002096549, -4.078575328, -1.872028083, -1.261316784, -0.561387144, -0.5229137372, -0.4111334458,
          -0.3938599098,
        ],
        final:
          "nGV/vqDpJb2K4Jc+xVS6PZfQrz14Bu+9AKuiPielBb+/DGU+17Vpvsn4gjzqPwC/fj2IPpB3tj71psO9ygsOP6SOvL4dkOI+SZaZvnQ7GD3Jhyy+4skxvrmawL5Rj249",
      },
      euler_trailing_zsnr: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { timestep_spacing: "trailing", rescale_betas_zero_snr: true },
        steps: 4,
        timesteps: [999, 749, 499, 249],
        noiseDraws: 4,
        stepSums: [-4.751288176, -0.9626409411, -0.4758407325, -0.7126773149],
        final:
          "tJsTvk/Q2r4OAT4/VI4BviiKU76khpu9sBXBPWhq7D3A6269cCPVPsAY/rvfUQi/7Ak8PkBtITySDfg+RId3PWa47b7C+bg+Ou0dv217DT/yz6G+sM7Kvhjsh75YF8O9",
      },
      euler_leading_sample: {
        scheduler: "EulerDiscreteScheduler",
        overrides: { timestep_spacing: "leading", prediction_type: "sample" },
        steps: 8,
        timesteps: [876, 751, 626, 501, 376, 251, 126, 1],
        noiseDraws: 8,
        stepSums: [
          -6.076130394, -4.229568243, -2.967372268, -1.933795899, -1.661607385, -1.139781833, -1.600934386,
          -1.174785465,
        ],
        final:
          "vLnWvhguKD420aG+7XXKPrsqbr9QkdW8pFTyPpKkDb9K60k/wiejv5AHvD5ouXE+yiCcvs5Nlz8xn2G/nuQGP7AeIT+AkiA9AF79u7zd+b7Q0mQ+fhiNvzbLSr4gSJo+",
      },
      euler_a: {
        scheduler: "EulerAncestralDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094,
          142.7142791748047, 0,
        ],
        noiseDraws: 8,
        stepSums: [
          -9.729202986, -3.396058619, -0.6969751716, -3.004985511, -0.07923476398, -0.4262108207, 0.1715017036,
          0.1797900703,
        ],
        final:
          "xWQQPsB0cT7Qk8i+6CJAPZxbcT7gV6G+xTciP1a9nr5crky+2IoWvnBft7494C8+8A6RPmJ1lDzymUK+XgJJviq6SD5OezY9pri6Pgp29j0sBK29qkE3PNIlCr/Ie9E+",
      },
      euler_a_leading: {
        scheduler: "EulerAncestralDiscreteScheduler",
        overrides: { timestep_spacing: "leading" },
        steps: 5,
        timesteps: [801, 601, 401, 201, 1],
        noiseDraws: 5,
        stepSums: [-2.488031805, -0.681206882, -0.2024042159, -0.635108076, -0.6002891492],
        final:
          "BvnkPbEmVr/tgus+l9VcvgXgob0omqE+snpHPMbGsb1TMRK+lKw6P7YqrL6N/eE9Q6dRPuUChL4WUZ49m50HvuNcqb4GCrc+rH4jvi/wjz6K/cm+vgqEvtwODD7PrSq+",
      },
      dpmpp_2m: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {},
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -1.111486895, -1.021892078, -1.011962127, -1.128885686, -0.7858322971, -0.8507454842, -0.3230905756,
          -0.1007234678,
        ],
        final:
          "k1cBv1Av1TwBGz0/1iqTvjq/Wz+zOZ++mbitPnp6db6Z1b69kLr4PAoR771QnSO/AXoIPiwAzz05AmY+tZWVPjLF474T+rE+fmyWvo121j4ldRu/gN8JP5R8Ib9gkp88",
      },
      dpmpp_2m_20: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {},
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -1.203402513, -1.178665454, -1.174793998, -1.200194023, -1.119318499, -1.12209217, -0.9866832718,
          -0.9556727707, -0.9737360775, -1.044301912, -0.9319548756, -0.9650918469, -0.7968339678, -0.7869469076,
          -0.8434817195, -0.9654877037, -0.8498922661, -0.5891435668, -0.5433391966, -0.4977457821,
        ],
        final:
          "/jAtv2SS9L2vUxg/MsrsvY+ZGz9MdrK+3DAYP3wMwb5BDF8+DALPvubuXb2wM6u+/wHwvfqEBj80GJK9/j5aPthRpbyARXk+XsbtvpkFgD5U1Ou+WpGGPgqMMb/ef38+",
      },
      dpmpp_2m_karras: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [999, 890, 746, 549, 299, 90, 12, 0],
        noiseDraws: 0,
        stepSums: [
          -1.13289798, -1.041787468, -1.040831145, -1.323909432, -0.6244039983, -0.7129452974, -0.5853242725,
          -0.565609619,
        ],
        final:
          "HjcNv5zJHz6qgco+40YePqfBmj4kEoi+O7L+PljzWb+Kf+E+yB4Yv6mfpDwN2z+/aKaTPtXtOT944Z2+Q1JxP/9Z7b6aJxA/OSKGvvFVuLyZ44a+fBXtvZMML7/WrKI9",
      },
      dpmpp_2m_heun: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { solver_type: "heun" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -1.111486895, -1.025655463, -1.019831013, -1.140914321, -0.7889538705, -0.8615347333, -0.3193645254,
          -0.09795610607,
        ],
        final:
          "OucDvxBfDD1EFEA/+CeavqHvXj9QhaK+CpezPiSac748e9O9YJf/PKTw9L1ILyO/nYYIPlypwT1ChWo+jveRPmoV4b6K07E+3xCUvsqL2j5d4h+/PyEMPwgRJL+QpN88",
      },
      dpmpp_3m_20: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { solver_order: 3 },
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -1.203402513, -1.178665454, -1.175842941, -1.202388561, -1.090888064, -1.129179517, -0.9540422829,
          -0.9674541168, -0.9853840759, -1.056299571, -0.8879880849, -0.9833986089, -0.7524225358, -0.8110847939,
          -0.8688173238, -0.9833920561, -0.7706303913, -0.5113229882, -0.7043482512, -0.637092907,
        ],
        final:
          "c0ZSv/T13L3KhSY/pYr8vWQgLj//ovu+GWUaP/6Dn75K62g+dVmmvol9TL5dhoK+ublfvS9TCD+Q5l28RJKEPThdcT2rA7s9rXrmvmfOnT7bX+6+lwOtPhVwVb8BjYU+",
      },
      dpmpp_2m_sde: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver++" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -1.498146132, -1.086177036, -0.5157209784, -2.116730183, 0.0119009912, -0.5030759946, 0.2636775225,
          0.3351244703,
        ],
        final:
          "RVYqPuhcMz0EEgY+siYAvx7xKz/0krm+poICPx9/nD5SVhG/sD/0POYehb7yniM+SqPvPSaXfL4ZcAc+X5x3vg3mrr4ngUI9cD6wPXB0ET8dZG69eMnCPtxVJ78Q2V8+",
      },
      dpmpp_2m_sde_heun: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver++", solver_type: "heun" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -1.498146132, -1.095920622, -0.536767751, -2.146019608, 0.01722814143, -0.5122170374, 0.293866232,
          0.3575482443,
        ],
        final:
          "8D8oPojUgz0O7Ao+FG8Hv4yuNj90kce+qLAKP98/oT5aqRe/QEraPHLxj74q2zk+IkbpPWvJhb5OiQo+cdSPvkKQn75aGDw9EL7bPRUZFj+aXsK99QnUPkpyML9YHHg+",
      },
      dpm_2m_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "dpmsolver", final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -1.111487595, -1.021893352, -1.00185623, -1.11022255, -0.7567282394, -0.8521740958, -0.2839101553,
          -0.08865825087,
        ],
        final:
          "KSv2vkiZEz2Tmzg/lY2ZvqZdUz+XopC+ZL64PoGwh74FFNC9AJDBOhhorL2iFCC/WvAbPjgOxj1IlEw+3GqPPq6g2r6i4MI+QvGSvrbSyz4BeR+/cKsAP4IDG7/Azxo9",
      },
      dpm_3m_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: {
          algorithm_type: "dpmsolver",
          final_sigmas_type: "sigma_min",
          solver_order: 3,
          solver_type: "heun",
        },
        steps: 10,
        timesteps: [999, 899, 799, 699, 599, 500, 400, 300, 200, 100],
        noiseDraws: 0,
        stepSums: [
          -1.145293909, -1.078833353, -1.068525411, -1.14856446, -0.838595286, -0.9935447648, -0.453769654,
          -0.6388291828, -0.7024275661, -0.9008383863,
        ],
        final:
          "U8wdvwoRQj1oZ0M+GrpePiCMqT7eZtC+ElyvPjTKn77ajto+/EAQvwCA3j42ui2/APECPVHgIj8sULW+JJhaP6VC8L6Ll44+84+TvsE8FL4Y1PG9SH2Ru3ocPr8Af+I7",
      },
      sde_dpm_sigmamin: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { algorithm_type: "sde-dpmsolver", final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 8,
        stepSums: [
          -1.88586247, -0.3933543563, -0.6873144805, -2.791625291, 1.373536423, -1.496315509, 1.039888933, 1.032519251,
        ],
        final:
          "XkvwPqDR1D5ARxi9qT1gv9ccgz/qKyE/P5bYvn4Tsj6fBya/2EZ7P6b8C794Dwq/OoYpPqEP5b4u8Iw/2Hc9v6sucL9iZc4+o/vbPopAWD6W6rm+X3ZAPzbRtj5xDjK/",
      },
      dpmpp_cosine_clipped: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { beta_schedule: "squaredcos_cap_v2", lambda_min_clipped: -5.1, timestep_spacing: "leading" },
        steps: 8,
        timesteps: [881, 771, 661, 551, 441, 331, 221, 111],
        noiseDraws: 0,
        stepSums: [
          -0.8904925864, -0.7566606328, -0.7712088302, -0.9176061712, -0.6298800297, -0.6979171038, -0.2965589911,
          -0.194339253,
        ],
        final:
          "1cofvwNqCj7BLSw/W1s/vinsOD8wL8G+RoITP4NG4b5ixnU9b4pEvmqRBb6+Tgm/ALNsu0ofnT4UCmE9xVTAPgQ3lL4Sn7o+ij1xvr6Hmj66wA6/iwS0PnuBP7+FYVI+",
      },
      dpmpp_lu_sample: {
        scheduler: "DPMSolverMultistepScheduler",
        overrides: { use_lu_lambdas: true, prediction_type: "sample", euler_at_final: true },
        steps: 8,
        timesteps: [999, 835, 622, 359, 133, 31, 5, 0],
        noiseDraws: 0,
        stepSums: [
          -1.429059881, -1.565730184, -1.335461438, -0.3758126944, -0.8238062561, -0.2837226689, -1.187320944,
          -0.9686605334,
        ],
        final:
          "m0F8vkLFBz4e5se+TGOkPhhkfL/UTa09+afHPp8Lyr7H6yY/3maSv7XH1D56gsU+esqsvuelez+cE1C/4FuFPl57Nz+A8im7QK4oPfey9r7rLGs+QeWJv4BY3rsh25g+",
      },
      heun: {
        scheduler: "HeunDiscreteScheduler",
        overrides: {},
        steps: 8,
        timesteps: [
          999, 856.2857055664062, 856.2857055664062, 713.5714111328125, 713.5714111328125, 570.8571166992188,
          570.8571166992188, 428.1428527832031, 428.1428527832031, 285.4285583496094, 285.4285583496094,
          142.7142791748047, 142.7142791748047, 0, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -7.310956329, -7.855037346, -4.010830395, -4.411077186, -2.277286038, -2.611737192, -1.227584839,
          -1.504051812, -1.122973993, -1.311203085, -0.8761899546, -1.052869329, -0.3837222457, -0.6510091182,
          -0.6591917425,
        ],
        final:
          "6cdev+D+Uz387Ck/MPYSPSnp+z5E6ke+4V+aPjaKvb6q668+L90Dv3uJkD7oK1i/edG9vTW4Pz/35Ym+RYA0Pzilrr4CTxE+5NSnvj2FkT769a++mVHmPe4kE79a05+9",
      },
      heun_1: {
        scheduler: "HeunDiscreteScheduler",
        overrides: {},
        steps: 1,
        timesteps: [0],
        noiseDraws: 0,
        stepSums: [0.004191150423],
        final:
          "OOzcu77Wbjt64WU8DmzyO+qwkTxctjY8FHGwPH22QL1AMc88aFYxvWrx7TxS9iG9vtbuvL7jMD2TFtC81ENAPWhWsbzpo089PJaSvFgB9rsjrGe8WAF2u8wrKrwAAAAA",
      },
      heun_karras: {
        scheduler: "HeunDiscreteScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [
          999, 889.5463699698448, 889.5463699698448, 745.8676545023918, 745.8676545023918, 549.0169112682343,
          549.0169112682343, 298.65797036886215, 298.65797036886215, 89.94244301319122, 89.94244301319122,
          12.001061176648363, 12.001061176648363, 0, 0,
        ],
        noiseDraws: 0,
        stepSums: [
          -9.002096549, -9.371522531, -4.623281159, -5.050910667, -1.984235238, -2.5512885, -0.5566288084, -1.160743363,
          -0.8430941254, -1.11452768, -0.8861351088, -0.9966097074, -0.8820369933, -0.9162533754, -0.9203453101,
        ],
        final:
          "6Ntiv2/ihTzqqi8/UPSLumq0Oz9WUge/4vSUPqPYqb7MeKw+cjq1viioKj6VGnC/QpCSvcpgSj/vuJ+9+AhBP1Lk5b5sPFU+HMLJvpM1jT4zrNK+k0ilPnpicL+CrfS9",
      },
      heun_sample_clip: {
        scheduler: "HeunDiscreteScheduler",
        overrides: { prediction_type: "sample", clip_sample: true, clip_sample_range: 0.5 },
        steps: 4,
        timesteps: [999, 666, 666, 333, 333, 0, 0],
        noiseDraws: 0,
        stepSums: [-4.148318417, -3.951781482, -1.194041863, 0.08497494459, 0.4068394639, 15.85506478, -0.9549711943],
        final:
          "AAAAPwAAAL+GFwc+AAAAPwAAAL8AAAA/AAAAv3wJZT4AAAC/iAdTPgAAAD8AAAC/AAAAPwAAAL94Mfi9AAAAvwQAAL8AAAA/AAAAvwQc8T0kP/k+AAAAvwAAAD8AAAC/",
      },
      unipc: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {},
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -1.111486895, -1.051583722, -1.048776865, -1.173062492, -0.7011861764, -0.9035131633, -0.276570268,
          -0.06616856158,
        ],
        final:
          "0DMAvwh3Kj3FbUY/BUuyvvQ6YT/GIJu+RpW4PppCW75aCBq+iGZkPbBn173E8yC/NrQOPmwVQj2t04E+/NBxPrKg3L4Nm7k+H3KQvoUa5z4DBiy/dFoOP+RwIL9AohY9",
      },
      unipc_20: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {},
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -1.203402515, -1.187892567, -1.184849532, -1.211338108, -1.094733329, -1.13896817, -0.9566182494,
          -0.9774094447, -0.9948373726, -1.065447614, -0.8931725966, -0.9913556762, -0.7594466554, -0.8145247344,
          -0.8717037905, -0.9873371646, -0.8064494468, -0.5469890703, -0.5680201352, -0.5191060156,
        ],
        final:
          "fms3vwq22b27Yxg/qkbevXEJIT9Ry8W+YlEbP4ZjwL6ZWmw+pBHDvtQJt715xJ++WjvvvbiFCT88CpK9K1E1PsCyJjspIE4+JKTmvtiQgD5PyOe+PNyRPvsAO78hbIY+",
      },
      unipc_karras: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { use_karras_sigmas: true },
        steps: 8,
        timesteps: [999, 890, 746, 549, 299, 90, 12, 0],
        noiseDraws: 0,
        stepSums: [
          -1.13289798, -1.066326663, -1.06399411, -1.348148435, -0.5042720884, -0.6339823902, -0.5022873208,
          -0.4838185273,
        ],
        final:
          "8LoYvyvfUD50srE+uN4/PmMHvD6QSaG+W04RP4nBZL+sG/A+mZohvwHqCL1pTCy/8YJVPgAkQD/mCLO+cNFrP4FsyL57rgI/8T5YvlByi71kP2m+Zj1EvU7sOr9XGxw+",
      },
      unipc_3_20: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { solver_order: 3 },
        steps: 20,
        timesteps: [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
        noiseDraws: 0,
        stepSums: [
          -1.203402515, -1.187892567, -1.185973996, -1.212660652, -1.060326098, -1.178930135, -0.9111692607,
          -1.027729698, -0.9944893196, -1.066836905, -0.8296908736, -1.057688143, -0.6929151565, -0.883031562,
          -0.8862321451, -0.9762731902, -0.6914893538, -0.5130053982, -0.5480609015, -0.5018321797,
        ],
        final:
          "aIg2v8y+pr3iNgU/iKf4vdogLz9znMi+atAhP6yQ5b4LmYI+IhemvntYxL2TroO+LZxCvr6jDz+yBxO+IQcuPjSecT0HDFA+QJjZvmAKNT5vEu6+KFmuPn1CPL9FuJM+",
      },
      unipc_bh1_noise: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { solver_type: "bh1", predict_x0: false, final_sigmas_type: "sigma_min" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 500, 375, 250, 125],
        noiseDraws: 0,
        stepSums: [
          -1.111487595, -1.085265592, -1.049453057, -1.21909678, -0.6359961927, -1.04966531, -0.1415880844,
          -0.2917434648,
        ],
        final:
          "el0AvzLWF75HFUY/qnEXvv00Wj8gx5W+tAI0Pvy9eb4C2Hk9cNyvPDRNq70YhFe/hKkpPtguij4242s+FEjoPi0KIr9O/cc+NTD3vm/l4D7u/fa+cJIEPx6GIL9/hyK+",
      },
      unipc_3_bh1_noise: {
        scheduler: "UniPCMultistepScheduler",
        overrides: {
          solver_order: 3,
          solver_type: "bh1",
          predict_x0: false,
          lower_order_final: false,
          final_sigmas_type: "sigma_min",
        },
        steps: 12,
        timesteps: [999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83],
        noiseDraws: 0,
        stepSums: [
          -1.166431389, -1.145631939, -1.131622465, -1.216153301, -0.830976814, -1.236863449, -0.376482293,
          -1.048529021, -0.5454883724, -1.143095039, -0.1324182898, -4.966648042,
        ],
        final:
          "djYkwO4nUcBIQQ1Al85zQH7J4T9c3RXAXSZgwLNwnb/YE4FAIH6zPxjOK0BVuZLA7MXXv06qqb9SMNA/glCCQPcKer8sws6/8vdnwIbi7D+U/lxAdym0P2KtLMBg9nbA",
      },
      unipc_disable_corr: {
        scheduler: "UniPCMultistepScheduler",
        overrides: { disable_corrector: [0, 3], timestep_spacing: "trailing" },
        steps: 8,
        timesteps: [999, 874, 749, 624, 499, 374, 249, 124],
        noiseDraws: 0,
        stepSums: [
          -1.111486895, -1.021892078, -1.022272423, -1.149552055, -0.8051478788, -1.002236385, -0.3651779816,
          -0.1332458779,
        ],
        final:
          "tUfzvrgTGD07mVg/QGG1vpFPST+W8I6+OQmLPoSrDb5BFCK+GGAHPuVlqr19fza/tpQEPshnGj0qB6g+U3+DPvBTBL9xQ8Q+uNGRviQvBj+3Gi2/8srtPmLiGb+YV069",
      },
    },
  };
}
