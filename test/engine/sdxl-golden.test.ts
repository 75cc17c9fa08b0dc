/**
 * SDXL against diffusers' StableDiffusionXLPipeline on the tiny random SDXL of
 * `golden-family/sdxl` (README-sdxl.md): both tokenizers' ids, both text encoders (penultimate
 * states, final states, te2's projected pooled output), encode_prompt, the UNet with its added
 * conditions (text_embeds, time_ids), and six full runs (every step's latents, the final
 * latents, the image).
 *
 * Tolerances: the fixture README's for the networks (text encoders and UNet 1e-4 abs; measured
 * ≤ 1.3e-6); for the runs ten times tighter than its starting points, as the SD runs' (latents
 * 1e-4 relative to the tensor's max |value|, measured ≤ 1.3e-6; images 1e-4 abs, measured ≤ 1.4e-6).
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { decodedToFloatImages } from "../../src/engine/image.js";
import type { TensorF32 } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { familyManifest, familyTensor, GOLDEN_FAMILY, maxAbs, maxAbsDiff } from "../helpers/fixtures.js";

const SECTION = "sdxl";
const MODEL = path.join(GOLDEN_FAMILY, SECTION, "tiny-sdxl");
const NET_TOL = 1e-4;
const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;

const ref = (file: string) => familyTensor(SECTION, file.replace(/^ref\/|\.bin$/g, ""));
const relErr = (a: Float32Array, e: Float32Array) => maxAbsDiff(a, e) / maxAbs(e);

interface Run {
  id: string;
  prompt: string;
  negative_prompt: string | null;
  guidance_scale: number;
  num_inference_steps: number;
  height: number;
  width: number;
  generator_seed: number;
  scheduler_class: string;
  timesteps_used: number[];
  add_time_ids_seen_by_unet: number[][];
  final_latents: string;
  step_latents: string;
  image: string;
}

describe("SDXL (tiny-sdxl) against diffusers", () => {
  const m = familyManifest(SECTION);
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(MODEL, { threads: 2 });
  });
  after(() => pipe.release());

  test("loads as SDXL with diffusers' defaults", () => {
    assert.equal(pipe.info.family, "sdxl");
    assert.equal(pipe.info.vaeScaleFactor, m.vae_scale_factor);
    assert.equal(pipe.info.vaeScalingFactor, m.vae_scaling_factor);
    assert.deepEqual(pipe.info.defaults, {
      numInferenceSteps: 50,
      guidanceScale: 5,
      scheduler: "EulerDiscreteScheduler",
    });
    assert.equal(pipe.sdxl?.settings.forceZerosForEmptyPrompt, true);
  });

  test("both tokenizers' ids (tokenizer_2 pads with '!', id 0)", () => {
    const sdxl = pipe.sdxl;
    assert.ok(sdxl);
    for (const t of m.text_encoders) {
      assert.deepEqual(sdxl.encoders[0]?.tokenizer.encode(t.prompt).inputIds, t.input_ids_1);
      assert.deepEqual(sdxl.encoders[1]?.tokenizer.encode(t.prompt).inputIds, t.input_ids_2);
    }
  });

  test("both text encoders: hidden_states[-2], last_hidden_state, text_embeds", async () => {
    const sdxl = pipe.sdxl;
    assert.ok(sdxl);
    const [te1, te2] = sdxl.encoders;
    assert.ok(te1 && te2);
    for (const t of m.text_encoders) {
      const o1 = await te1.encoder.outputs([t.input_ids_1], ["penultimate_hidden_state", "last_hidden_state"]);
      const o2 = await te2.encoder.outputs(
        [t.input_ids_2],
        ["penultimate_hidden_state", "last_hidden_state", "text_embeds"],
      );
      const checks: [string, TensorF32 | undefined, string][] = [
        ["te1 hidden_states[-2]", o1["penultimate_hidden_state"], t.te1_hidden_states_minus2],
        ["te1 last_hidden_state", o1["last_hidden_state"], t.te1_last_hidden_state],
        ["te2 hidden_states[-2]", o2["penultimate_hidden_state"], t.te2_hidden_states_minus2],
        ["te2 last_hidden_state", o2["last_hidden_state"], t.te2_last_hidden_state],
        ["te2 text_embeds", o2["text_embeds"], t.te2_text_embeds],
      ];
      for (const [what, ours, file] of checks) {
        const expected = ref(file);
        assert.ok(ours, what);
        assert.deepEqual(ours.shape, expected.shape, what);
        const err = maxAbsDiff(ours.data, expected.data);
        assert.ok(err <= NET_TOL, `${JSON.stringify(t.prompt)} ${what}: max abs error ${err}`);
      }
    }
  });

  test("encode_prompt: prompt and negative embeddings, pooled and negative pooled", async () => {
    const sdxl = pipe.sdxl;
    assert.ok(sdxl);
    const e = m.encode_prompt;
    const { context, added } = await sdxl.conditioning(
      { prompt: m.runs[0].prompt, negativePrompt: "low quality", width: 96, height: 64 },
      1,
      true,
    );
    const neg = ref(e.negative_prompt_embeds);
    const pos = ref(e.prompt_embeds);
    const half = neg.data.length;
    assert.deepEqual(context.shape, [2, 77, 48]);
    const errNeg = maxAbsDiff(context.data.subarray(0, half), neg.data);
    const errPos = maxAbsDiff(context.data.subarray(half), pos.data);
    assert.ok(errNeg <= NET_TOL && errPos <= NET_TOL, `prompt_embeds: ${errPos}, negative: ${errNeg}`);
    const pooledNeg = ref(e.negative_pooled_prompt_embeds);
    const pooled = ref(e.pooled_prompt_embeds);
    const p = pooled.data.length;
    assert.ok(maxAbsDiff(added.textEmbeds.data.subarray(0, p), pooledNeg.data) <= NET_TOL, "negative pooled");
    assert.ok(maxAbsDiff(added.textEmbeds.data.subarray(p), pooled.data) <= NET_TOL, "pooled");
    assert.deepEqual(Array.from(added.timeIds.data), [64, 96, 0, 0, 64, 96, 64, 96, 0, 0, 64, 96]);
    assert.deepEqual(Array.from(ref(m.unet.time_ids).data), Array.from(added.timeIds.data));
  });

  test("encodePrompts on SDXL gives encode_prompt's prompt_embeds", async () => {
    const ours = await pipe.encodePrompts([m.runs[0].prompt]);
    const expected = ref(m.encode_prompt.prompt_embeds);
    assert.deepEqual(ours.shape, expected.shape);
    assert.ok(maxAbsDiff(ours.data, expected.data) <= NET_TOL);
  });

  test("UNet with text_embeds and time_ids, at timestep 999 and 500.0", async () => {
    const u = m.unet;
    const sample = ref(u.sample);
    const context = ref(u.encoder_hidden_states);
    const added = { textEmbeds: ref(u.text_embeds), timeIds: ref(u.time_ids) };
    for (const o of u.outputs) {
      const out = await pipe.unet.run(sample, o.timestep, context, undefined, {}, added);
      const expected = ref(o.output);
      assert.deepEqual(out.shape, expected.shape);
      const err = maxAbsDiff(out.data, expected.data);
      assert.ok(err <= NET_TOL, `t=${o.timestep}: max abs error ${err}`);
    }
  });

  for (const run of m.runs as Run[]) {
    test(`run ${run.id}: ${run.scheduler_class}, ${run.num_inference_steps} steps, guidance ${run.guidance_scale}, negative ${JSON.stringify(run.negative_prompt)}`, async () => {
      const steps: Float32Array[] = [];
      const timesteps: number[] = [];
      const seenTimeIds: number[][] = [];
      const trace: { input: Float32Array; output: Float32Array }[] = [];
      const unetRun = pipe.unet.run.bind(pipe.unet);
      pipe.unet.run = async (sample, t, context, cond, adapters, added) => {
        if (seenTimeIds.length === 0 && added) {
          const n = added.timeIds.shape[1] as number;
          for (let k = 0; k < (added.timeIds.shape[0] as number); k++) {
            seenTimeIds.push(Array.from(added.timeIds.data.subarray(k * n, (k + 1) * n)));
          }
        }
        const out = await unetRun(sample, t, context, cond, adapters, added);
        trace.push({ input: Float32Array.from(sample.data), output: Float32Array.from(out.data) });
        return out;
      };
      let result: Awaited<ReturnType<Pipeline["generate"]>>;
      try {
        result = await pipe.generate(
          {
            prompt: run.prompt,
            negativePrompt: run.negative_prompt ?? undefined,
            numInferenceSteps: run.num_inference_steps,
            guidanceScale: run.guidance_scale,
            height: run.height,
            width: run.width,
            seed: run.generator_seed,
            scheduler: run.scheduler_class,
            latents: ref(m.initial_latents),
          },
          {
            onStep: ({ latents, timestep }) => {
              steps.push(Float32Array.from(latents.data));
              timesteps.push(timestep);
            },
          },
        );
      } finally {
        // The wrapper was an own property; removing it restores the class's method.
        delete (pipe.unet as { run?: unknown }).run;
      }
      assert.deepEqual(
        timesteps,
        run.timesteps_used.map((t) => Math.fround(t)),
      );
      assert.deepEqual(seenTimeIds, run.add_time_ids_seen_by_unet);
      const rows = run.guidance_scale > 1 ? 2 : 1;
      assert.equal(trace.length, run.num_inference_steps, "one UNet call per step");
      assert.ok(
        trace.every((c) => c.input.length === rows * 4 * 16 * 24),
        `UNet batch ${rows}`,
      );
      const unetTrace = (run as Run & { unet_trace?: { unet_inputs: string; unet_outputs: string } }).unet_trace;
      if (unetTrace) {
        const inputs = ref(unetTrace.unet_inputs);
        const outputs = ref(unetTrace.unet_outputs);
        const per = inputs.data.length / trace.length;
        trace.forEach((c, i) => {
          const inErr = relErr(c.input, inputs.data.subarray(i * per, (i + 1) * per));
          const outErr = maxAbsDiff(c.output, outputs.data.subarray(i * per, (i + 1) * per));
          assert.ok(inErr <= LATENT_REL_TOL, `step ${i + 1} UNet input: relative error ${inErr}`);
          assert.ok(outErr <= NET_TOL, `step ${i + 1} UNet output: max abs error ${outErr}`);
        });
      }

      const stepRef = ref(run.step_latents);
      const per = stepRef.data.length / steps.length;
      assert.equal(stepRef.shape[0], steps.length);
      steps.forEach((s, i) => {
        const err = relErr(s, stepRef.data.subarray(i * per, (i + 1) * per));
        assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
      });
      const finalErr = relErr(result.latents.data, ref(run.final_latents).data);
      assert.ok(finalErr <= LATENT_REL_TOL, `final latents: relative error ${finalErr}`);
      const imageErr = maxAbsDiff(decodedToFloatImages(result.decoded), ref(run.image).data);
      assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
    });
  }

  test("a batch of two (the golden latents twice) gives the golden run twice: rows line up under guidance", async () => {
    const run = (m.runs as Run[])[0] as Run;
    const one = ref(m.initial_latents);
    const two = new Float32Array(one.data.length * 2);
    two.set(one.data, 0);
    two.set(one.data, one.data.length);
    const result = await pipe.denoise({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt ?? undefined,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      height: run.height,
      width: run.width,
      seed: run.generator_seed,
      scheduler: run.scheduler_class,
      numOutputs: 2,
      latents: { data: two, shape: [2, ...one.shape.slice(1)] },
    });
    const expected = ref(run.final_latents).data;
    for (const half of [0, 1]) {
      const part = result.latents.data.subarray(half * expected.length, (half + 1) * expected.length);
      const err = relErr(part, expected);
      assert.ok(err <= LATENT_REL_TOL, `image ${half + 1}: relative error ${err}`);
    }
  });
});
