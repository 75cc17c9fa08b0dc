/**
 * LoRA (golden-family/lora): kohya and PEFT files on tiny-sd1 against diffusers with the LoRA
 * fused into the weights, at scales 1.0, 0.6 and 0.0, switched per request on one pipeline;
 * several LoRAs at once; bad files refused with errors naming the file and what is wrong.
 *
 * Tolerances reached: text encoder and UNet outputs 1e-4 abs (README: 1e-4); step / final
 * latents 1e-4 relative to the tensor's max |value|; images 1e-4 abs.
 *
 * LoRAs on convolutions (LoCon) and an LCM-LoRA-shaped file (every layer the published
 * LCM-LoRAs train, kohya and PEFT layouts; test/helpers/lcm-lora.ts) against the same deltas
 * fused into the weights by hand, at the same tolerances; measured for the LCM-LoRA with LCM,
 * 4 steps, guidance 1: UNet 4.8e-6 abs, final latents 1.3e-6 relative, image 8.3e-7 abs.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError, RequestError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import { parseLoraArg } from "../../src/engine/lora.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { type TensorToWrite, writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbs, maxAbsDiff, modelDir, readJson, SHARED } from "../helpers/fixtures.js";
import { fuseIntoUnet, isLcmLoraLayer, lcmLoraLayers, writeUnetLora } from "../helpers/lcm-lora.js";
import { copyModel } from "../helpers/model-copy.js";

const DIR = path.join(SHARED, "fixtures/golden-family/lora");
const NET_TOL = 1e-4;
const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;
// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
const manifest: any = readJson(path.join(DIR, "manifest.json"));
const FILES = {
  kohya: path.join(DIR, manifest.files_lora.kohya as string),
  peft: path.join(DIR, manifest.files_lora.peft as string),
};

function ref(key: string): { data: Float32Array; shape: number[] } {
  const entry = manifest.files[key];
  const buf = readFileSync(path.join(DIR, entry.file ?? `ref/${key}.bin`));
  return {
    data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
    shape: entry.shape,
  };
}
const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / maxAbs(b);

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-lora-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("LoRA goldens on tiny-sd1", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 2, loraSupport: true });
  });
  after(() => pipe.release());
  const run0 = manifest.runs[0];

  for (const format of ["kohya", "peft"] as const) {
    test(`${format}: text encoder and one UNet forward at scale 1`, async () => {
      const loras = [{ path: FILES[format], scale: 1 }];
      const text = await pipe.encodePrompts([run0.negative_prompt, run0.prompt], loras);
      const teRef = ref("te_scale1_last_hidden_state");
      const teErr = maxAbsDiff(text.data, teRef.data);
      assert.ok(teErr <= NET_TOL, `text encoder: max abs error ${teErr}`);

      const feeds = await pipe.adapterFeeds(loras);
      const sample = ref("unet_in_sample");
      const out = await pipe.unet.run(sample, 500, teRef, undefined, feeds.unet);
      const unetErr = maxAbsDiff(out.data, ref("unet_scale1_out_t500").data);
      assert.ok(unetErr <= NET_TOL, `UNet: max abs error ${unetErr}`);
    });

    for (const run of manifest.runs) {
      test(`${format}: ${run.id} (scale ${run.scale}, ${run.scheduler_class})`, async () => {
        const steps: Float32Array[] = [];
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
            latents: ref("initial_latents"),
            loras: [{ path: FILES[format], scale: run.scale }],
          },
          { onStep: ({ latents }) => void steps.push(Float32Array.from(latents.data)) },
        );
        if (run.step_latents) {
          const stepRef = ref(`run_${run.id}_step_latents`).data;
          const per = stepRef.length / steps.length;
          steps.forEach((s, i) => {
            const err = rel(s, stepRef.subarray(i * per, (i + 1) * per));
            assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
          });
        }
        const latentErr = rel(result.latents.data, ref(`run_${run.id}_final_latents`).data);
        assert.ok(latentErr <= LATENT_REL_TOL, `final latents: relative error ${latentErr}`);
        const imageErr = maxAbsDiff(decodedToFloatImages(result.decoded), ref(`run_${run.id}_image`).data);
        assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
      });
    }
  }

  test("a request without LoRAs on a LoRA-capable pipeline is the base model", async () => {
    const run = manifest.runs.find((r: { scale: number }) => r.scale === 0);
    const result = await pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      seed: run.generator_seed,
      scheduler: run.scheduler_class,
      latents: ref("initial_latents"),
    });
    const err = rel(result.latents.data, ref(`run_${run.id}_final_latents`).data);
    assert.ok(err <= LATENT_REL_TOL, `final latents: relative error ${err}`);
  });

  test("several LoRAs at once, each with its own scale: kohya 0.4 + PEFT 0.2 = one at 0.6", async () => {
    const run = manifest.runs.find((r: { scale: number }) => r.scale === 0.6);
    const result = await pipe.generate({
      prompt: run.prompt,
      negativePrompt: run.negative_prompt,
      numInferenceSteps: run.num_inference_steps,
      guidanceScale: run.guidance_scale,
      seed: run.generator_seed,
      scheduler: run.scheduler_class,
      latents: ref("initial_latents"),
      loras: [
        { path: FILES.kohya, scale: 0.4 },
        { path: FILES.peft, scale: 0.2 },
      ],
    });
    const err = rel(result.latents.data, ref(`run_${run.id}_final_latents`).data);
    assert.ok(err <= LATENT_REL_TOL, `final latents: relative error ${err}`);
  });
});

test("older diffusers names (attention processors, lora_linear_layer) load as the PEFT file does", async () => {
  const { readSafetensors, readTensor } = await import("../../src/engine/weights/safetensors.js");
  const st = await readSafetensors(FILES.peft);
  const tensors = [];
  for (const t of st.tensors.values()) {
    const name = t.name
      .replace(/^(unet\..+)\.(to_q|to_k|to_v|to_out)(\.0)?\.lora_([AB])\.weight$/, (_, a, p, _z, ab) => {
        return `${a}.processor.${p}_lora.${ab === "A" ? "down" : "up"}.weight`;
      })
      .replace(/^(text_encoder\..+)\.lora_([AB])\.weight$/, (_, a, ab) => {
        return `${a}.lora_linear_layer.${ab === "A" ? "down" : "up"}.weight`;
      });
    tensors.push({ name, dtype: "F32" as const, shape: t.shape, data: await readTensor(t) });
  }
  assert.ok(tensors.some((t) => t.name.includes(".processor.to_out_lora.up.weight")));
  const legacy = path.join(tmp, "legacy.safetensors");
  await writeSafetensors(legacy, tensors);
  const pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loras: [{ path: legacy, scale: 1 }] });
  try {
    const text = await pipe.encodePrompts([manifest.runs[0].negative_prompt, manifest.runs[0].prompt]);
    const teErr = maxAbsDiff(text.data, ref("te_scale1_last_hidden_state").data);
    assert.ok(teErr <= NET_TOL, `text encoder: max abs error ${teErr}`);
    const teRef = ref("te_scale1_last_hidden_state");
    const out = await pipe.unet.run(ref("unet_in_sample"), 500, teRef, undefined, (await pipe.adapterFeeds([])).unet);
    const unetErr = maxAbsDiff(out.data, ref("unet_scale1_out_t500").data);
    assert.ok(unetErr <= NET_TOL, `UNet: max abs error ${unetErr}`);
  } finally {
    await pipe.release();
  }
});

test("diffusers' pre-PEFT text-encoder names (self_attn.to_q_lora, with or without .processor) and UNet names without .processor give the PEFT file's factors", async () => {
  const { readSafetensors, readTensor } = await import("../../src/engine/weights/safetensors.js");
  const st = await readSafetensors(FILES.peft);
  const pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: true });
  try {
    const feedsOf = async (file: string) => {
      const f = await pipe.adapterFeeds([{ path: file }]);
      return Object.entries({ ...f.text, ...f.unet }).map(([k, t]) => [k, [...(t.data as Float32Array)]] as const);
    };
    const want = await feedsOf(FILES.peft);
    const downUp = (ab: string) => (ab === "A" ? "down" : "up");
    for (const processor of ["", ".processor"]) {
      const tensors = [];
      for (const t of st.tensors.values()) {
        const name = t.name
          .replace(
            /^(text_encoder\..+\.self_attn)\.(q|k|v|out)_proj\.lora_([AB])\.weight$/,
            (_, a, p, ab) => `${a}${processor}.to_${p}_lora.${downUp(ab)}.weight`,
          )
          .replace(
            /^(unet\..+)\.(to_q|to_k|to_v|to_out)(\.0)?\.lora_([AB])\.weight$/,
            (_, a, p, _z, ab) => `${a}${processor}.${p}_lora.${downUp(ab)}.weight`,
          );
        tensors.push({ name, dtype: "F32" as const, shape: t.shape, data: await readTensor(t) });
      }
      assert.ok(
        tensors.some((t) => /^text_encoder\..+\.self_attn\.(processor\.)?to_out_lora\.up\.weight$/.test(t.name)),
      );
      const file = path.join(tmp, `old-names${processor}.safetensors`);
      await writeSafetensors(file, tensors);
      assert.deepEqual(await feedsOf(file), want, `old names${processor}`);
    }
  } finally {
    await pipe.release();
  }
});

test("diffusers' lora_adapter_metadata: PEFT factors scale by its lora_alpha / alpha_pattern over the rank, as diffusers builds the LoraConfig from it", async () => {
  const { readSafetensors, readTensor } = await import("../../src/engine/weights/safetensors.js");
  const st = await readSafetensors(FILES.peft);
  const tensors: TensorToWrite[] = [];
  for (const t of st.tensors.values())
    tensors.push({ name: t.name, dtype: "F32" as const, shape: t.shape, data: await readTensor(t) });
  const rank = st.tensors.values().next().value?.shape[0];
  assert.equal(rank, 4);
  const withConfig = async (name: string, config: Record<string, unknown>) => {
    const file = path.join(tmp, name);
    await writeSafetensors(file, tensors, { format: "pt", lora_adapter_metadata: JSON.stringify(config) });
    return file;
  };
  const pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: true });
  try {
    const feeds = async (file: string, scale: number) => {
      const f = await pipe.adapterFeeds([{ path: file, scale }]);
      return Object.fromEntries(
        Object.entries({ ...f.text, ...f.unet }).map(([k, t]) => [k, [...(t.data as Float32Array)]]),
      );
    };
    // UNet alpha 8 over rank 4: ×2; text encoder alpha 2: ×0.5, but q_proj layers (alpha_pattern) 4: ×1.
    const file = await withConfig("adapter-config.safetensors", {
      "unet.r": 4,
      "unet.lora_alpha": 8,
      "text_encoder.r": 4,
      "text_encoder.lora_alpha": 2,
      "text_encoder.alpha_pattern": { q_proj: 4 },
    });
    const got = await feeds(file, 1);
    const [x2, x05, x1] = [await feeds(FILES.peft, 2), await feeds(FILES.peft, 0.5), await feeds(FILES.peft, 1)];
    let checked = 0;
    for (const [name, value] of Object.entries(got)) {
      const text = name.includes("text_model.");
      const want = !text ? x2 : name.endsWith(".q_proj") ? x1 : x05;
      assert.deepEqual(value, want[name], name);
      if (name.startsWith("lora_up_t:") && value.some((v) => v !== 0)) checked++;
    }
    assert.ok(checked > 10, `${checked} scaled factors compared`);
    // alpha = rank (what diffusers' SD trainers save) changes nothing; use_rslora divides by √rank.
    assert.deepEqual(
      await feeds(await withConfig("same.safetensors", { "unet.lora_alpha": 4, "text_encoder.lora_alpha": 4 }), 1),
      x1,
    );
    const rs = await feeds(
      await withConfig("rslora.safetensors", {
        "unet.lora_alpha": 2,
        "unet.use_rslora": true,
        "text_encoder.lora_alpha": 2,
        "text_encoder.use_rslora": true,
      }),
      1,
    );
    assert.deepEqual(rs, x1);
    // A config for the UNet only leaves the text encoder at alpha = rank.
    const unetOnly = await feeds(await withConfig("unet-config.safetensors", { "unet.lora_alpha": 8 }), 1);
    for (const [name, value] of Object.entries(unetOnly)) {
      assert.deepEqual(value, (name.includes("text_model.") ? x1 : x2)[name], name);
    }
    await assert.rejects(
      pipe.adapterFeeds([{ path: await withConfig("dora-config.safetensors", { "unet.use_dora": true }) }]),
      /dora-config\.safetensors.+DoRA/,
    );
    await assert.rejects(
      pipe.adapterFeeds([{ path: await withConfig("bad-alpha.safetensors", { "unet.lora_alpha": "eight" }) }]),
      /bad-alpha\.safetensors.+not a number/,
    );
  } finally {
    await pipe.release();
  }
});

describe("LoRAs on convolutions and time projections (LoCon, LCM-LoRA)", () => {
  // Layers of tiny-sd1: 3×3 conv, strided 3×3 conv, 1×1 shortcut, linear time projection,
  // attention, the time embedding's linears and the first and last convolutions.
  const LAYERS = [
    "down_blocks.0.resnets.0.conv1",
    "down_blocks.0.downsamplers.0.conv",
    "down_blocks.1.resnets.0.conv_shortcut",
    "up_blocks.0.resnets.0.time_emb_proj",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "time_embedding.linear_1",
    "time_embedding.linear_2",
    "conv_in",
    "conv_out",
  ];
  const SCALE = 0.7;
  let file: string;
  let fused: ReturnType<typeof copyModel>;
  before(async () => {
    file = path.join(tmp, "locon.safetensors");
    const written = await writeUnetLora(modelDir("tiny-sd1"), file, {
      layers: LAYERS,
      rank: 2,
      alpha: 1,
      scale: SCALE,
    });
    assert.deepEqual(
      written.layers.map(([, shape]) => shape.length),
      [4, 4, 4, 2, 2, 2, 2, 4, 4],
    );
    fused = copyModel("tiny-sd1");
    await fuseIntoUnet(fused.dir, written.deltas);
  });
  after(() => fused?.remove());

  test("a fixed LoRA on convolutions equals its deltas fused into the weights", async () => {
    const withLora = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loras: [{ path: file, scale: SCALE }] });
    const plainFused = await loadPipeline(fused.dir, { threads: 1 });
    try {
      const context = ref("te_scale1_last_hidden_state");
      const sample = ref("unet_in_sample");
      const a = await withLora.unet.run(sample, 500, context, undefined, (await withLora.adapterFeeds([])).unet);
      const b = await plainFused.unet.run(sample, 500, context);
      const err = maxAbsDiff(a.data, b.data);
      assert.ok(err <= 1e-5, `UNet: max abs error ${err}`);
      const plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 1 });
      const unchanged = await plain.unet.run(sample, 500, context);
      await plain.release();
      assert.ok(maxAbsDiff(unchanged.data, b.data) > 100 * err, "the LoRA changes the output");
    } finally {
      await withLora.release();
      await plainFused.release();
    }
  });

  test('per request with loraSupport "all"; refused by a pipeline built for attention layers only', async () => {
    const all = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: "all" });
    const plainFused = await loadPipeline(fused.dir, { threads: 1 });
    const attentionOnly = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: true });
    try {
      const context = ref("te_scale1_last_hidden_state");
      const sample = ref("unet_in_sample");
      const feeds = await all.adapterFeeds([{ path: file, scale: SCALE }]);
      const a = await all.unet.run(sample, 500, context, undefined, feeds.unet);
      const b = await plainFused.unet.run(sample, 500, context);
      const err = maxAbsDiff(a.data, b.data);
      assert.ok(err <= 1e-5, `UNet: max abs error ${err}`);
      await assert.rejects(
        attentionOnly.adapterFeeds([{ path: file }]),
        /does not apply LoRAs to on this model as loaded: lora_unet_down_blocks_0_resnets_0_conv1 .*loaded with them/,
      );
    } finally {
      await all.release();
      await plainFused.release();
      await attentionOnly.release();
    }
  });
});

describe("an LCM-LoRA: every layer the published ones train, in their key names", () => {
  // LCM-LoRA's usage: the LoRA at scale 1 with the LCM scheduler, 4 steps, no guidance.
  const SCALE = 1;
  let file: string;
  let layers: string[];
  let fused: ReturnType<typeof copyModel>;
  before(async () => {
    layers = await lcmLoraLayers(modelDir("tiny-sd1"));
    file = path.join(tmp, "lcm-lora-sdv1-5.safetensors");
    const written = await writeUnetLora(modelDir("tiny-sd1"), file, {
      layers,
      rank: 4,
      alpha: 8,
      scale: SCALE,
      seed: 3,
    });
    fused = copyModel("tiny-sd1");
    await fuseIntoUnet(fused.dir, written.deltas);
  });
  after(() => fused?.remove());

  test("the file changes attention, feed-forward, proj_in/out, every ResNet conv and time projection and the samplers", () => {
    for (const kind of [
      /attn1\.to_q$/,
      /attn2\.to_k$/,
      /to_out\.0$/,
      /ff\.net\.0\.proj$/,
      /ff\.net\.2$/,
      /proj_in$/,
      /proj_out$/,
      /resnets\.\d+\.conv1$/,
      /resnets\.\d+\.conv2$/,
      /conv_shortcut$/,
      /time_emb_proj$/,
      /downsamplers\.0\.conv$/,
      /upsamplers\.0\.conv$/,
      /^mid_block\.resnets\.0\.conv1$/,
    ]) {
      assert.ok(
        layers.some((l) => kind.test(l)),
        `no layer ${kind}`,
      );
    }
    assert.ok(!layers.some((l) => l.startsWith("time_embedding.") || l === "conv_in" || l === "conv_out"));
    assert.ok(layers.every(isLcmLoraLayer));
  });

  test("applied from --lora, it equals the deltas fused into the weights (one UNet call and a 4-step LCM run)", async (t) => {
    const withLora = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loras: [{ path: file, scale: SCALE }] });
    const plainFused = await loadPipeline(fused.dir, { threads: 1 });
    try {
      // Every layer of the file gets its factors (a layer without them is fed zeros).
      const feeds = (await withLora.adapterFeeds([])).unet;
      for (const layer of layers) {
        const target = withLora.unet.lowRankTargets.get(layer);
        assert.ok(target, `${layer} takes no LoRA`);
        assert.ok(
          (feeds[target.upInput]?.data as Float32Array | undefined)?.some((v) => v !== 0) === true,
          `${layer} has no factors`,
        );
      }
      const context = ref("te_scale1_last_hidden_state");
      const sample = ref("unet_in_sample");
      const a = await withLora.unet.run(sample, 500, context, undefined, feeds);
      const b = await plainFused.unet.run(sample, 500, context);
      const unetErr = maxAbsDiff(a.data, b.data);
      assert.ok(unetErr <= NET_TOL, `UNet: max abs error ${unetErr}`);

      const request = {
        prompt: "a lighthouse at dusk",
        scheduler: "LCM",
        numInferenceSteps: 4,
        guidanceScale: 1,
        seed: 7n,
      };
      const steps: number[] = [];
      const ours = await withLora.generate(request, { onStep: ({ timestep }) => void steps.push(timestep) });
      const ref2 = await plainFused.generate(request);
      assert.deepEqual(steps, [999, 759, 499, 259]);
      const latentErr = rel(ours.latents.data, ref2.latents.data);
      assert.ok(latentErr <= LATENT_REL_TOL, `final latents: relative error ${latentErr}`);
      const imageErr = maxAbsDiff(decodedToFloatImages(ours.decoded), decodedToFloatImages(ref2.decoded));
      t.diagnostic(
        `UNet ${unetErr.toExponential(2)} abs, latents ${latentErr.toExponential(2)} rel, image ${imageErr.toExponential(2)} abs`,
      );
      assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
      const plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 1 });
      const base = await plain.generate(request);
      await plain.release();
      assert.ok(rel(base.latents.data, ref2.latents.data) > 100 * latentErr, "the LoRA changes the image");
    } finally {
      await withLora.release();
      await plainFused.release();
    }
  });

  test("the same LCM-LoRA in diffusers' PEFT layout (lora_A / lora_B, alpha folded in) per request", async () => {
    const peft = path.join(tmp, "lcm-lora-peft.safetensors");
    await writeUnetLora(modelDir("tiny-sd1"), peft, {
      layers,
      rank: 4,
      alpha: 8,
      scale: SCALE,
      seed: 3,
      layout: "peft",
    });
    const all = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: "all" });
    const plainFused = await loadPipeline(fused.dir, { threads: 1 });
    try {
      const context = ref("te_scale1_last_hidden_state");
      const sample = ref("unet_in_sample");
      const a = await all.unet.run(sample, 500, context, undefined, (await all.adapterFeeds([{ path: peft }])).unet);
      const b = await plainFused.unet.run(sample, 500, context);
      const err = maxAbsDiff(a.data, b.data);
      assert.ok(err <= NET_TOL, `UNet: max abs error ${err}`);
    } finally {
      await all.release();
      await plainFused.release();
    }
  });

  test("called by a <lora:…> tag from the model's lora_dir (found there at load)", async () => {
    const dir = mkdtempSync(path.join(tmp, "loras-"));
    cpSync(file, path.join(dir, "lcm-lora-sdv1-5.safetensors"));
    // A broken file beside it does not stop the model loading; calling it is its own error.
    writeFileSync(
      path.join(dir, "broken.safetensors"),
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1]),
    );
    const tagged = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraDir: dir, promptSyntax: "a1111" });
    const plainFused = await loadPipeline(fused.dir, { threads: 1 });
    try {
      const request = { scheduler: "LCM", numInferenceSteps: 4, guidanceScale: 1, seed: 7n };
      const ours = await tagged.generate({ ...request, prompt: "a lighthouse at dusk <lora:lcm-lora-sdv1-5:1>" });
      const ref2 = await plainFused.generate({ ...request, prompt: "a lighthouse at dusk" });
      const latentErr = rel(ours.latents.data, ref2.latents.data);
      assert.ok(latentErr <= LATENT_REL_TOL, `final latents: relative error ${latentErr}`);
      await assert.rejects(
        tagged.generate({ ...request, prompt: "a lighthouse <lora:broken:1>" }),
        (err: Error) => err instanceof ModelError && err.message.includes("broken.safetensors"),
      );
    } finally {
      await tagged.release();
      await plainFused.release();
    }
  });
});

test("LoRAs given at load apply to every request", async () => {
  const pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loras: [{ path: FILES.peft, scale: 1 }] });
  try {
    const text = await pipe.encodePrompts([manifest.runs[0].negative_prompt, manifest.runs[0].prompt]);
    const err = maxAbsDiff(text.data, ref("te_scale1_last_hidden_state").data);
    assert.ok(err <= NET_TOL, `text encoder: max abs error ${err}`);
  } finally {
    await pipe.release();
  }
});

test("--lora PATH[:SCALE] parsing", () => {
  assert.deepEqual(parseLoraArg("a.safetensors"), { path: "a.safetensors" });
  assert.deepEqual(parseLoraArg("a.safetensors:0.6"), { path: "a.safetensors", scale: 0.6 });
  assert.deepEqual(parseLoraArg("C:\\loras\\a.safetensors"), { path: "C:\\loras\\a.safetensors" });
  assert.deepEqual(parseLoraArg("dir:x/a.safetensors:-1e-1"), { path: "dir:x/a.safetensors", scale: -0.1 });
});

describe("bad LoRA files", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: true });
  });
  after(() => pipe.release());

  const f32 = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, d) => a * d, 1)).fill(0.01),
  });
  const write = async (name: string, tensors: Record<string, number[]>, fill?: number) => {
    const file = path.join(tmp, name);
    await writeSafetensors(
      file,
      Object.entries(tensors).map(([n, shape]) => {
        const t = { name: n, ...f32(shape) };
        if (fill !== undefined) t.data.fill(fill);
        return t;
      }),
    );
    return file;
  };
  const rejects = async (file: string, pattern: RegExp) => {
    await assert.rejects(pipe.adapterFeeds([{ path: file }]), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(file)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };
  const Q = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q";

  test("LyCORIS LoHa and LoKr are refused by name", async () => {
    await rejects(
      await write("loha.safetensors", { [`${Q}.hada_w1_a`]: [64, 4], [`${Q}.hada_w1_b`]: [4, 64] }),
      /LoHa/,
    );
    await rejects(await write("lokr.safetensors", { [`${Q}.lokr_w1`]: [8, 8], [`${Q}.lokr_w2`]: [8, 8] }), /LoKr/);
  });

  test("DoRA is refused by name: LyCORIS's dora_scale and PEFT's lora_magnitude_vector", async () => {
    await rejects(
      await write("dora-kohya.safetensors", {
        [`${Q}.lora_down.weight`]: [4, 64],
        [`${Q}.lora_up.weight`]: [64, 4],
        [`${Q}.dora_scale`]: [1, 64],
      }),
      /is a LyCORIS DoRA file/,
    );
    const peft = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
    await rejects(
      await write("dora-peft.safetensors", {
        [`${peft}.lora_A.weight`]: [4, 64],
        [`${peft}.lora_B.weight`]: [64, 4],
        [`${peft}.lora_magnitude_vector`]: [64],
      }),
      /is a DoRA file \(.+lora_magnitude_vector\)/,
    );
  });

  test("factors whose shapes do not fit the layer", async () => {
    const file = await write("wide.safetensors", {
      [`${Q}.lora_down.weight`]: [4, 320],
      [`${Q}.lora_up.weight`]: [64, 4],
    });
    await rejects(
      file,
      /do not fit the layer down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q \(64 in, 64 out\)/,
    );
    const ranks = await write("ranks.safetensors", {
      [`${Q}.lora_down.weight`]: [4, 64],
      [`${Q}.lora_up.weight`]: [64, 8],
    });
    await rejects(ranks, /do not fit/);
  });

  test("keys that are not LoRA factors, and layers the model does not have", async () => {
    await rejects(await write("junk.safetensors", { "something.else": [2] }), /not LoRA factors: something\.else/);
    await rejects(
      await write("other.safetensors", {
        "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": [4, 64],
        "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": [64, 4],
      }),
      /layers this model does not have: lora_unet_down_blocks_7_attentions_0_proj_in/,
    );
  });

  test("a LoRA on a convolution (LoCon) is refused by layer", async () => {
    const file = await write("locon.safetensors", {
      "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": [4, 32, 3, 3],
      "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": [32, 4, 1, 1],
    });
    await rejects(file, /does not apply LoRAs to on this model as loaded: lora_unet_down_blocks_0_resnets_0_conv1 /);
  });

  test("a LoRA on a layer no LoRA applies to (a norm) is refused, never skipped", async () => {
    const file = await write("norm.safetensors", {
      [`${Q}.lora_down.weight`]: [4, 64],
      [`${Q}.lora_up.weight`]: [64, 4],
      "lora_unet_down_blocks_0_resnets_0_norm1.lora_down.weight": [4, 32],
      "lora_unet_down_blocks_0_resnets_0_norm1.lora_up.weight": [32, 4],
    });
    await rejects(
      file,
      /does not apply LoRAs to: lora_unet_down_blocks_0_resnets_0_norm1 \(unet down_blocks\.0\.resnets\.0\.norm1\)/,
    );
  });

  test("a half LoRA, rank 0, a bad alpha and non-finite factors", async () => {
    await rejects(
      await write("rank0.safetensors", { [`${Q}.lora_down.weight`]: [0, 64], [`${Q}.lora_up.weight`]: [64, 0] }),
      /rank 0/,
    );
    await rejects(await write("half.safetensors", { [`${Q}.lora_down.weight`]: [4, 64] }), /no up factor/);
    await rejects(
      await write("alpha.safetensors", {
        [`${Q}.lora_down.weight`]: [4, 64],
        [`${Q}.lora_up.weight`]: [64, 4],
        [`${Q}.alpha`]: [2],
      }),
      /alpha must be one number/,
    );
    await rejects(
      await write(
        "nan.safetensors",
        { [`${Q}.lora_down.weight`]: [4, 64], [`${Q}.lora_up.weight`]: [64, 4] },
        Number.NaN,
      ),
      /NaN/,
    );
  });

  test("a model checkpoint given as a LoRA, and a missing file", async () => {
    await rejects(
      path.join(SHARED, "fixtures/golden-family/single_file/tiny-sd1.safetensors"),
      /checkpoint, not a LoRA/,
    );
    await rejects(path.join(tmp, "missing.safetensors"), /cannot be read/);
  });

  test("a truncated LoRA", async () => {
    const bytes = readFileSync(FILES.kohya);
    const file = path.join(tmp, "cut.safetensors");
    await import("node:fs/promises").then((fs) => fs.writeFile(file, bytes.subarray(0, bytes.length - 1000)));
    await rejects(file, /truncated/);
  });

  test("a request with LoRAs on a pipeline loaded without LoRA support", async () => {
    const plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 1 });
    try {
      await assert.rejects(
        plain.generate({ prompt: "x", numInferenceSteps: 1, loras: [{ path: FILES.kohya }] }),
        (err: Error) => err instanceof RequestError && /without LoRA support/.test(err.message),
      );
    } finally {
      await plain.release();
    }
  });

  test("a non-finite scale", async () => {
    await assert.rejects(
      pipe.adapterFeeds([{ path: FILES.kohya, scale: Number.NaN }]),
      (err: Error) => err instanceof RequestError && /scale/.test(err.message),
    );
  });
});
