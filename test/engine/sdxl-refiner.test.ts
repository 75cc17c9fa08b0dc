/**
 * SDXL's refiner, the expert ensemble's hand-over and SDXL-Turbo's defaults.
 *
 * There are no diffusers references for these in the fixtures, so:
 * - the refiner is made here from tiny-sdxl: its text_encoder_2 / tokenizer_2 / VAE / scheduler,
 *   model_index.json as the real refiner's (StableDiffusionXLImg2ImgPipeline, no first encoder,
 *   requires_aesthetics_score, force_zeros_for_empty_prompt false) and a UNet with random weights
 *   sized for one encoder and five time ids; its conditioning is checked against tiny-sdxl's
 *   golden text_encoder_2 outputs and diffusers' _get_add_time_ids rule;
 * - the hand-over split is checked against diffusers' formula (0.29.2: the base keeps
 *   t ≥ round(T − end·T); the refiner the last n with t < round(T − start·T), n + 1 for a
 *   second-order scheduler when n is even), worked out by hand for the published SDXL schedule;
 * - with Euler (stateless between steps), the base run to denoisingEnd and continued by the same
 *   pipeline from denoisingStart must give diffusers' full golden run: the split loses nothing.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError, RequestError } from "../../src/engine/errors.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { createScheduler } from "../../src/engine/schedulers/index.js";
import { denoisingEndIndex, denoisingStartIndex, roundHalfEven } from "../../src/engine/sdxl.js";
import { familyManifest, familyTensor, GOLDEN_FAMILY, maxAbs, maxAbsDiff, REPO_ROOT } from "../helpers/fixtures.js";
import { writeTinyRefiner } from "../helpers/tiny-refiner.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
const readJsonFile = (file: string) => JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
const ref = (file: string) => familyTensor("sdxl", file.replace(/^ref\/|\.bin$/g, ""));

let tmp: string;
before(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "sdserve-sdxl-refiner-"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("the expert ensemble's split of the schedule (diffusers' formula)", () => {
  const sdxlScheduler = readJsonFile(path.join(REPO_ROOT, "presets/sdxl/scheduler/scheduler_config.json"));

  test("SDXL base's Euler, 40 steps, high_noise_frac 0.8: the base runs 32 steps, the refiner 8", () => {
    const s = createScheduler("EulerDiscreteScheduler", sdxlScheduler, 40);
    // leading spacing, steps_offset 1: 976, 951, …, 1; cutoff round(1000 − 800) = 200.
    assert.equal(s.timesteps[31], 201);
    assert.equal(s.timesteps[32], 176);
    assert.equal(denoisingEndIndex(s.timesteps, 0.8, 1000), 32);
    assert.equal(denoisingStartIndex(s.timesteps, 0.8, 1000, s.order), 32);
  });

  test("Heun (order 2): an even count is made odd, so the refiner starts on the second evaluation", () => {
    const s = createScheduler("HeunDiscreteScheduler", sdxlScheduler, 40);
    // 79 timesteps: t0, then t1..t39 twice. t < 200 are t32..t39: 16 entries, even → 17.
    assert.equal(s.timesteps.length, 79);
    assert.equal(denoisingEndIndex(s.timesteps, 0.8, 1000), 63);
    assert.equal(denoisingStartIndex(s.timesteps, 0.8, 1000, s.order), 79 - 17);
  });

  test("the cutoff rounds as Python's round(): halves to even", () => {
    assert.equal(roundHalfEven(500.5), 500);
    assert.equal(roundHalfEven(501.5), 502);
    assert.equal(roundHalfEven(200.4), 200);
    // T = 1001, fraction 0.5: 1001 − 500.5 = 500.5 → 500 (JS's Math.round would say 501).
    assert.equal(denoisingEndIndex([501, 500, 499], 0.5, 1001), 2);
    assert.equal(denoisingStartIndex([501, 500, 499], 0.5, 1001, 1), 2);
  });
});

describe("hand-over on the tiny SDXL", () => {
  const m = familyManifest("sdxl");
  const run = (m.runs as { id: string }[]).find((r) => r.id === "euler_g5p0") as unknown as {
    prompt: string;
    negative_prompt: string;
    guidance_scale: number;
    height: number;
    width: number;
    final_latents: string;
    timesteps_used: number[];
  };
  let base: Pipeline;
  before(async () => {
    base = await loadPipeline(BASE, { threads: 2 });
  });
  after(() => base.release());

  const request = {
    prompt: run.prompt,
    negativePrompt: run.negative_prompt,
    guidanceScale: run.guidance_scale,
    numInferenceSteps: 8,
    height: run.height,
    width: run.width,
    seed: 4402,
    scheduler: "EulerDiscreteScheduler",
  };

  test("Euler to 0.5 then from 0.5 is diffusers' whole run", async () => {
    const firstSteps: number[] = [];
    const first = await base.denoise(
      { ...request, latents: ref(m.initial_latents), denoisingEnd: 0.5 },
      { onStep: ({ timestep }) => void firstSteps.push(timestep) },
    );
    const secondSteps: number[] = [];
    const second = await base.generate(
      { ...request, latents: first.latents, denoisingStart: 0.5 },
      { onStep: ({ timestep }) => void secondSteps.push(timestep) },
    );
    // cutoff 500: 876, 751, 626, 501 | 376, 251, 126, 1.
    assert.deepEqual(firstSteps, [876, 751, 626, 501]);
    assert.deepEqual(secondSteps, [376, 251, 126, 1]);
    const expected = ref(run.final_latents);
    const err = maxAbsDiff(second.latents.data, expected.data) / maxAbs(expected.data);
    assert.ok(err <= 1e-4, `final latents: relative error ${err}`);
  });

  test("a multistep scheduler starts afresh at the hand-over (set_begin_index), as diffusers' refiner does", async () => {
    const steps: number[] = [];
    const handed = await base.denoise({
      ...request,
      scheduler: "DPMSolverMultistep",
      latents: ref(m.initial_latents),
      denoisingEnd: 0.5,
    });
    const result = await base.generate(
      { ...request, scheduler: "DPMSolverMultistep", latents: handed.latents, denoisingStart: 0.5 },
      { onStep: ({ timestep }) => void steps.push(timestep) },
    );
    // DPM++ 2M, 8 leading steps: 889, 778, 667, 556 | 445, 334, 223, 112.
    assert.deepEqual(steps, [445, 334, 223, 112]);
    assert.ok(result.latents.data.every(Number.isFinite));
  });

  test("denoisingStart needs latents; the fractions are checked", async () => {
    const bad = async (extra: Record<string, unknown>, field: string) =>
      assert.rejects(
        () => base.generate({ ...request, numInferenceSteps: 2, ...extra }),
        (err: unknown) => err instanceof RequestError && err.field === field,
      );
    await bad({ denoisingStart: 0.5 }, "latents");
    await bad({ denoisingEnd: 1 }, "denoisingEnd");
    await bad({ denoisingEnd: Number.NaN }, "denoisingEnd");
    await bad({ denoisingStart: -0.1, latents: ref(m.initial_latents) }, "denoisingStart");
    await bad({ denoisingStart: 0.6, denoisingEnd: 0.5, latents: ref(m.initial_latents) }, "denoisingStart");
    // 2 leading steps are 501 and 1: ending at 0.1 (cutoff 900) leaves no step, and diffusers'
    // loop runs none: the starting latents (× init_noise_sigma) are handed on as they are.
    const steps: number[] = [];
    const none = await base.denoise(
      { ...request, numInferenceSteps: 2, latents: ref(m.initial_latents), denoisingEnd: 0.1 },
      { onStep: ({ timestep }) => void steps.push(timestep) },
    );
    assert.deepEqual(steps, []);
    const config = readJsonFile(path.join(BASE, "scheduler/scheduler_config.json"));
    const sigma = createScheduler("EulerDiscreteScheduler", config, 2).initNoiseSigma;
    const start = ref(m.initial_latents).data;
    assert.ok(
      maxAbsDiff(
        none.latents.data,
        start.map((v) => Math.fround(v * sigma)),
      ) <= 1e-6,
    );
    await bad(
      {
        denoisingStart: 0.5,
        latents: ref(m.initial_latents),
        image: { width: 96, height: 64, data: new Uint8Array(96 * 64 * 3) },
      },
      "denoisingStart",
    );
  });

  test("the refiner: text_encoder_2 only, aesthetic-score time ids, the base's latents finished", async () => {
    const refiner = await loadPipeline(await writeTinyRefiner(path.join(tmp, "refiner")), { threads: 2 });
    try {
      assert.equal(refiner.info.family, "sdxl");
      const sdxl = refiner.sdxl;
      assert.ok(sdxl);
      assert.equal(sdxl.encoders.length, 1);
      assert.deepEqual(sdxl.settings, { forceZerosForEmptyPrompt: false, requiresAestheticsScore: true });

      // force_zeros_for_empty_prompt is false: an absent negative is encoded as "".
      const { context, added } = await sdxl.conditioning(
        { prompt: run.prompt, negativePrompt: undefined, width: 96, height: 64 },
        1,
        true,
      );
      const texts = m.text_encoders as { prompt: string; te2_hidden_states_minus2: string; te2_text_embeds: string }[];
      const te = (prompt: string) => texts.find((t) => t.prompt === prompt) as (typeof texts)[number];
      const half = 77 * 32;
      assert.ok(maxAbsDiff(context.data.subarray(0, half), ref(te("").te2_hidden_states_minus2).data) <= 1e-4);
      assert.ok(maxAbsDiff(context.data.subarray(half), ref(te(run.prompt).te2_hidden_states_minus2).data) <= 1e-4);
      assert.ok(maxAbsDiff(added.textEmbeds.data.subarray(32), ref(te(run.prompt).te2_text_embeds).data) <= 1e-4);
      // [orig h, orig w, crop top, crop left, score]: 2.5 for the negative, 6 for the prompt.
      assert.deepEqual(Array.from(added.timeIds.data), [64, 96, 0, 0, 2.5, 64, 96, 0, 0, 6]);
      const custom = sdxl.timeIds({
        width: 96,
        height: 64,
        aestheticScore: 7,
        originalSize: [128, 192],
        cropsCoordsTopLeft: [8, 0],
      });
      assert.deepEqual(Array.from(custom.positive), [128, 192, 8, 0, 7]);
      // The aesthetic form's negative takes its own crop, (0, 0) by default, and the prompt's size.
      assert.deepEqual(Array.from(custom.negative), [128, 192, 0, 0, 2.5]);
      assert.throws(
        () => sdxl.timeIds({ width: 96, height: 64, aestheticScore: Number.POSITIVE_INFINITY }),
        RequestError,
      );

      // The ensemble: the base to 0.75, the refiner from 0.75 (diffusers' denoising_end / _start).
      const handed = await base.denoise({ ...request, latents: ref(m.initial_latents), denoisingEnd: 0.75 });
      const steps: number[] = [];
      const result = await refiner.generate(
        { ...request, latents: handed.latents, denoisingStart: 0.75 },
        { onStep: ({ timestep }) => void steps.push(timestep) },
      );
      assert.deepEqual(steps, [126, 1]);
      assert.equal(result.images.length, 1);
      assert.ok(result.latents.data.every(Number.isFinite));

      // The refiner as img2img over a picture (Replicate's base_image_refiner hands it latents: sdxl-refine-modes.test.ts).
      const polished: number[] = [];
      const refined = await refiner.generate(
        { ...request, image: result.images[0], strength: 0.3 },
        { onStep: ({ timestep }) => void polished.push(timestep) },
      );
      assert.deepEqual(polished, [126, 1]);
      assert.deepEqual([refined.images[0]?.width, refined.images[0]?.height], [96, 64]);
    } finally {
      await refiner.release();
    }
  });
});

describe("SDXL-Turbo", () => {
  test("trailing timesteps: one step at t = 999 without guidance by default", async () => {
    const dir = path.join(tmp, "turbo");
    mkdirSync(path.join(dir, "scheduler"), { recursive: true });
    for (const entry of ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae"]) {
      symlinkSync(path.join(BASE, entry), path.join(dir, entry));
    }
    for (const file of ["model_index.json", "scheduler/scheduler_config.json"]) {
      writeFileSync(path.join(dir, file), readFileSync(path.join(REPO_ROOT, "presets/sdxl-turbo", file)));
    }
    const turbo = await loadPipeline(dir, { threads: 2 });
    try {
      assert.deepEqual(turbo.info.defaults, {
        numInferenceSteps: 1,
        guidanceScale: 0,
        scheduler: "EulerAncestralDiscreteScheduler",
      });
      const batches: number[] = [];
      const unetRun = turbo.unet.run.bind(turbo.unet);
      turbo.unet.run = (sample, t, context, cond, adapters, added) => {
        batches.push(sample.shape[0] as number);
        return unetRun(sample, t, context, cond, adapters, added);
      };
      const steps: number[] = [];
      await turbo.generate(
        { prompt: "a lion", width: 96, height: 64, seed: 1 },
        { onStep: ({ timestep }) => void steps.push(timestep) },
      );
      assert.deepEqual(steps, [999]);
      assert.deepEqual(batches, [1]);
    } finally {
      await turbo.release();
    }
  });
});

describe("malformed SDXL folders are ModelErrors naming the file and key", () => {
  /** tiny-sdxl with model_index.json and the UNet config patched. */
  function variant(name: string, index: Record<string, unknown>, unet: Record<string, unknown> = {}): string {
    const dir = path.join(tmp, name);
    mkdirSync(path.join(dir, "unet"), { recursive: true });
    for (const entry of ["scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"]) {
      symlinkSync(path.join(BASE, entry), path.join(dir, entry));
    }
    symlinkSync(
      path.join(BASE, "unet/diffusion_pytorch_model.safetensors"),
      path.join(dir, "unet/diffusion_pytorch_model.safetensors"),
    );
    const config = readJsonFile(path.join(BASE, "unet/config.json"));
    writeFileSync(path.join(dir, "unet/config.json"), JSON.stringify({ ...config, ...unet }));
    const base = readJsonFile(path.join(BASE, "model_index.json"));
    writeFileSync(path.join(dir, "model_index.json"), JSON.stringify({ ...base, ...index }));
    return dir;
  }
  const refused = (dir: string, ...parts: string[]) =>
    assert.rejects(
      () => loadPipeline(dir, { threads: 1 }),
      (err: unknown) => {
        assert.ok(err instanceof ModelError, String(err));
        for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should mention ${p}`);
        return true;
      },
    );

  test("LoRAs are refused on the refiner (its one encoder is SDXL's second), saying so", async () =>
    assert.rejects(
      async () =>
        loadPipeline(await writeTinyRefiner(path.join(tmp, "refiner-lora")), { threads: 1, loraSupport: true }),
      (err: unknown) =>
        err instanceof ModelError && /LoRAs apply to SDXL base models, not to the refiner/.test(err.message),
    ));
  test("a flag that is not a boolean", () =>
    refused(variant("bad-flag", { force_zeros_for_empty_prompt: "yes" }), "model_index.json", "force_zeros"));
  test("the aesthetic-score form on a UNet sized for target sizes", () =>
    refused(
      variant("bad-aesthetic", { requires_aesthetics_score: true }),
      "unet/config.json",
      "projection_class_embeddings_input_dim",
      "requires_aesthetics_score is true",
    ));
  test("an added-embedding width that no count of time ids fits", () =>
    refused(variant("bad-width", {}, { projection_class_embeddings_input_dim: 81 }), "add_embedding.linear_1", "81"));
  test("an odd time-id embedding", () =>
    refused(variant("bad-odd", {}, { addition_time_embed_dim: 7 }), "addition_time_embed_dim"));
  test("another added embedding type", () =>
    refused(variant("bad-type", {}, { addition_embed_type: "image" }), "addition_embed_type"));
  test("a UNet whose context is not the encoders' widths added up", () =>
    refused(variant("bad-cross", {}, { cross_attention_dim: 32 }), "attn2.to_k.weight", "[64, 32]"));
});
