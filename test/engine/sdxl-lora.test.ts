/**
 * LoRA on SDXL (tiny-sdxl): random rank-4 LoRAs on every LoRA-able layer of the UNet (both
 * transformer depths of transformer_layers_per_block, the mid block, the up blocks) and of both
 * text encoders, in the three layouts SDXL LoRAs come in — kohya with the original SGM UNet
 * names (`lora_unet_input_blocks_4_1_…`, `lora_te1_`, `lora_te2_`), kohya with diffusers UNet
 * names, diffusers/PEFT (`unet.`, `text_encoder.`, `text_encoder_2.`) — each against the same
 * pipeline run on a copy of the folder with the LoRA fused into the weights by hand
 * (W + scale · alpha/rank · up · down). All on one pipeline, switched per request.
 *
 * Tolerances: the SDXL goldens' (sdxl-golden.test.ts): networks 1e-4 abs; latents 1e-4
 * relative to the tensor's max |value|; images 1e-4 abs.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { decodedToFloatImages } from "../../src/engine/image.js";
import type { LoraSpec } from "../../src/engine/lora.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbs, maxAbsDiff, modelDir } from "../helpers/fixtures.js";
import type { ModelCopy } from "../helpers/model-copy.js";
import { fusedSdxlCopy, type RandomLayer, randomSdxlLora, TINY_SDXL, writeLora } from "../helpers/sdxl-lora.js";

const NET_TOL = 1e-4;
const LATENT_REL_TOL = 1e-4;
const IMAGE_TOL = 1e-4;
const RANK = 4;
const rel = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) / maxAbs(b);

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-sdxl-lora-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const REQUEST = {
  prompt: "a watercolor fox in the snow",
  negativePrompt: "blurry",
  numInferenceSteps: 3,
  guidanceScale: 5,
  width: 96,
  height: 64,
  seed: 7,
  scheduler: "K_EULER",
};

describe("LoRA on SDXL against the LoRA fused into the weights", () => {
  let layers: RandomLayer[];
  let second: RandomLayer[];
  const files: Record<string, string> = {};
  let pipe: Pipeline;
  let fused: ModelCopy;
  let fusedPipe: Pipeline;
  let fusedBoth: ModelCopy;
  let fusedBothPipe: Pipeline;
  // Every layout below is made to apply the same update, 0.6 · up · down.
  const S = 0.6;

  before(async () => {
    layers = await randomSdxlLora(1, undefined, RANK);
    second = await randomSdxlLora(2, ["unet", "text_encoder_2"], 2);
    files["kohya-sgm"] = await writeLora(path.join(tmp, "kohya-sgm.safetensors"), layers, "kohya-sgm", 2);
    files["kohya-diffusers"] = await writeLora(
      path.join(tmp, "kohya-diffusers.safetensors"),
      layers,
      "kohya-diffusers",
    );
    files["peft"] = await writeLora(path.join(tmp, "peft.safetensors"), layers, "peft");
    files["second"] = await writeLora(path.join(tmp, "second.safetensors"), second, "kohya-sgm", 1);
    fused = await fusedSdxlCopy([{ layers, s: S }]);
    // second: rank 2, alpha 1, asked at scale 0.8 → 0.4 per unit of up · down.
    fusedBoth = await fusedSdxlCopy([
      { layers, s: S },
      { layers: second, s: (0.8 * 1) / 2 },
    ]);
    pipe = await loadPipeline(TINY_SDXL, { threads: 2, loraSupport: true });
    fusedPipe = await loadPipeline(fused.dir, { threads: 2 });
    fusedBothPipe = await loadPipeline(fusedBoth.dir, { threads: 2 });
  });
  after(async () => {
    await Promise.all([pipe?.release(), fusedPipe?.release(), fusedBothPipe?.release()]);
    fused?.remove();
    fusedBoth?.remove();
  });

  /** The scale that makes each layout's update 0.6 · up · down: kohya-sgm has alpha 2 of rank 4. */
  const specFor = (layout: string): LoraSpec => ({
    path: files[layout] as string,
    scale: layout === "kohya-sgm" ? S / (2 / RANK) : S,
  });

  const compareRuns = async (loras: LoraSpec[], reference: Pipeline) => {
    const stepsA: Float32Array[] = [];
    const stepsB: Float32Array[] = [];
    const a = await pipe.generate(
      { ...REQUEST, loras },
      { onStep: ({ latents }) => void stepsA.push(Float32Array.from(latents.data)) },
    );
    const b = await reference.generate(REQUEST, {
      onStep: ({ latents }) => void stepsB.push(Float32Array.from(latents.data)),
    });
    assert.equal(stepsA.length, stepsB.length);
    stepsA.forEach((s, i) => {
      const err = rel(s, stepsB[i] as Float32Array);
      assert.ok(err <= LATENT_REL_TOL, `step ${i + 1}: relative error ${err}`);
    });
    const latentErr = rel(a.latents.data, b.latents.data);
    assert.ok(latentErr <= LATENT_REL_TOL, `final latents: relative error ${latentErr}`);
    const imageErr = maxAbsDiff(decodedToFloatImages(a.decoded), decodedToFloatImages(b.decoded));
    assert.ok(imageErr <= IMAGE_TOL, `image: max abs error ${imageErr}`);
    return { latentErr, imageErr, latents: a.latents.data };
  };

  for (const layout of ["kohya-sgm", "kohya-diffusers", "peft"]) {
    test(`${layout}: both text encoders and the UNet equal the fused model's`, async (t) => {
      const loras = [specFor(layout)];
      const texts = ["", REQUEST.prompt];
      const feeds = await pipe.adapterFeeds(loras);
      const ours = await pipe.sdxl?.encode(texts, [feeds.text, feeds.text2]);
      const theirs = await fusedPipe.sdxl?.encode(texts);
      assert.ok(ours && theirs);
      const embErr = maxAbsDiff(ours.promptEmbeds.data, theirs.promptEmbeds.data);
      const pooledErr = maxAbsDiff(ours.pooled.data, theirs.pooled.data);
      assert.ok(embErr <= NET_TOL, `prompt embeddings (both encoders): max abs error ${embErr}`);
      t.diagnostic(`prompt embeddings ${embErr.toExponential(2)}, pooled ${pooledErr.toExponential(2)}`);
      assert.ok(pooledErr <= NET_TOL, `pooled text_embeds (text_encoder_2): max abs error ${pooledErr}`);

      const cond = await fusedPipe.sdxl?.conditioning({ ...REQUEST, negativePrompt: "" }, 1, true);
      assert.ok(cond);
      const sample = {
        data: Float32Array.from({ length: 2 * 4 * 8 * 12 }, (_, i) => Math.sin(i * 0.37)),
        shape: [2, 4, 8, 12],
      };
      const a = await pipe.unet.run(sample, 400, cond.context, undefined, feeds.unet, cond.added);
      const b = await fusedPipe.unet.run(sample, 400, cond.context, undefined, {}, cond.added);
      const unetErr = maxAbsDiff(a.data, b.data);
      assert.ok(unetErr <= NET_TOL, `UNet: max abs error ${unetErr}`);
      t.diagnostic(`UNet max abs error ${unetErr.toExponential(2)}`);
      // The LoRA does change every network (an unchanged output would pass trivially).
      const none = await pipe.adapterFeeds([]);
      const plain = await pipe.unet.run(
        sample,
        400,
        cond.context,
        undefined,
        (await pipe.adapterFeeds([])).unet,
        cond.added,
      );
      assert.ok(maxAbsDiff(plain.data, b.data) > 100 * Math.max(unetErr, 1e-7), "the LoRA changes the UNet");
      const plainText = await pipe.sdxl?.encode(texts, [none.text, none.text2]);
      assert.ok(plainText && maxAbsDiff(plainText.pooled.data, theirs.pooled.data) > 100 * Math.max(pooledErr, 1e-7));
    });

    test(`${layout}: a full run (K_EULER, guidance 5, 96×64) equals the fused model's`, async (t) => {
      const { latentErr, imageErr } = await compareRuns([specFor(layout)], fusedPipe);
      t.diagnostic(`final latents relative error ${latentErr.toExponential(2)}, image ${imageErr.toExponential(2)}`);
    });
  }

  test("two LoRAs at once, each at its own scale, then none: switched per request on one pipeline", async () => {
    await compareRuns([specFor("peft"), { path: files["second"] as string, scale: 0.8 }], fusedBothPipe);
    // Back to no LoRA: the base model's run.
    const base = await loadPipeline(TINY_SDXL, { threads: 2 });
    try {
      const a = await pipe.generate(REQUEST);
      const b = await base.generate(REQUEST);
      const err = rel(a.latents.data, b.latents.data);
      assert.ok(err <= LATENT_REL_TOL, `no LoRA: relative error ${err}`);
    } finally {
      await base.release();
    }
  });

  test("a LoRA fixed at load (models-file loras, --lora) applies to every request", async () => {
    const fixed = await loadPipeline(TINY_SDXL, { threads: 2, loras: [specFor("kohya-sgm")] });
    try {
      const a = await fixed.generate(REQUEST);
      const b = await fusedPipe.generate(REQUEST);
      const err = rel(a.latents.data, b.latents.data);
      assert.ok(err <= LATENT_REL_TOL, `final latents: relative error ${err}`);
    } finally {
      await fixed.release();
    }
  });
});

test("Replicate's trained lora.safetensors (UNet attention processors, no prefix) equals its fused model", async () => {
  const attention = (await randomSdxlLora(4, ["unet"], RANK)).filter((l) =>
    /\.attn[12]\.to_(q|k|v|out\.0)$/.test(l.module),
  );
  const file = await writeLora(path.join(tmp, "replicate-lora.safetensors"), attention, "attn-procs");
  const fused = await fusedSdxlCopy([{ layers: attention, s: 0.6 }]);
  const pipe = await loadPipeline(TINY_SDXL, { threads: 2, loraSupport: true });
  const reference = await loadPipeline(fused.dir, { threads: 2 });
  try {
    const a = await pipe.generate({ ...REQUEST, loras: [{ path: file, scale: 0.6 }] });
    const b = await reference.generate(REQUEST);
    const err = rel(a.latents.data, b.latents.data);
    assert.ok(err <= LATENT_REL_TOL, `final latents: relative error ${err}`);
    const plain = await pipe.generate(REQUEST);
    assert.ok(rel(plain.latents.data, b.latents.data) > 100 * Math.max(err, 1e-7), "the LoRA changes the run");
  } finally {
    await Promise.all([pipe.release(), reference.release()]);
    fused.remove();
  }
});

test("a full-network LoRA's SGM label_emb (SDXL's added-condition embedding) and time_embed apply, equal to the fused model", async () => {
  const { readSafetensors } = await import("../../src/engine/weights/safetensors.js");
  const { mulberry32 } = await import("../helpers/seeded.js");
  const st = await readSafetensors(path.join(TINY_SDXL, "unet/diffusion_pytorch_model.safetensors"));
  const next = mulberry32(11);
  const sgm: Record<string, string> = {
    "add_embedding.linear_1": "label_emb_0_0",
    "add_embedding.linear_2": "label_emb_0_2",
    "time_embedding.linear_1": "time_embed_0",
  };
  const layers: RandomLayer[] = Object.keys(sgm).map((module) => {
    const [outF, inF] = (st.tensors.get(`${module}.weight`) as { shape: number[] }).shape as [number, number];
    const rand = (n: number) => Float32Array.from({ length: n }, () => (next() * 2 - 1) * 0.1);
    return { network: "unet", module, rank: RANK, inF, outF, down: rand(RANK * inF), up: rand(outF * RANK) };
  });
  const file = path.join(tmp, "full-network.safetensors");
  await writeSafetensors(
    file,
    layers.flatMap((l) => [
      {
        name: `lora_unet_${sgm[l.module]}.lora_down.weight`,
        dtype: "F32" as const,
        shape: [RANK, l.inF],
        data: l.down,
      },
      { name: `lora_unet_${sgm[l.module]}.lora_up.weight`, dtype: "F32" as const, shape: [l.outF, RANK], data: l.up },
    ]),
  );
  const fused = await fusedSdxlCopy([{ layers, s: 0.6 }]);
  const pipe = await loadPipeline(TINY_SDXL, { threads: 2, loras: [{ path: file, scale: 0.6 }] });
  const reference = await loadPipeline(fused.dir, { threads: 2 });
  try {
    const a = await pipe.generate(REQUEST);
    const b = await reference.generate(REQUEST);
    const err = rel(a.latents.data, b.latents.data);
    assert.ok(err <= LATENT_REL_TOL, `final latents: relative error ${err}`);
    const plain = await loadPipeline(TINY_SDXL, { threads: 2 });
    try {
      const c = await plain.generate(REQUEST);
      assert.ok(rel(c.latents.data, b.latents.data) > 100 * Math.max(err, 1e-7), "the LoRA changes the run");
    } finally {
      await plain.release();
    }
  } finally {
    await Promise.all([pipe.release(), reference.release()]);
    fused.remove();
  }
});

test("kohya's SGM names of SDXL's ResNets and samplers (LoCon) map through the block layout", async () => {
  const { readUNetConfig } = await import("../../src/engine/graph/unet.js");
  const { ConfigReader } = await import("../../src/engine/graph/config.js");
  const { ldmUNetModules, UNET_RESNET } = await import("../../src/engine/weights/single-file.js");
  const { ldmUNetNames } = await import("../../src/engine/lora.js");
  const { readSafetensors } = await import("../../src/engine/weights/safetensors.js");
  const configPath = path.join(TINY_SDXL, "unet/config.json");
  const config = JSON.parse(await import("node:fs").then((fs) => fs.readFileSync(configPath, "utf8")));
  const st = await readSafetensors(path.join(TINY_SDXL, "unet/diffusion_pytorch_model.safetensors"));
  const modules = [...st.tensors.keys()].filter((k) => k.endsWith(".weight")).map((k) => k.slice(0, -7));
  const names = ldmUNetNames(
    ldmUNetModules(readUNetConfig(new ConfigReader(configPath, config))),
    UNET_RESNET,
    modules,
  );
  const expected: Record<string, string> = {
    input_blocks_1_0_in_layers_2: "down_blocks.0.resnets.0.conv1",
    input_blocks_2_0_emb_layers_1: "down_blocks.0.resnets.1.time_emb_proj",
    input_blocks_3_0_op: "down_blocks.0.downsamplers.0.conv",
    input_blocks_4_0_skip_connection: "down_blocks.1.resnets.0.conv_shortcut",
    input_blocks_5_1_transformer_blocks_1_attn2_to_k: "down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_k",
    middle_block_1_proj_out: "mid_block.attentions.0.proj_out",
    middle_block_2_out_layers_3: "mid_block.resnets.1.conv2",
    output_blocks_2_1_transformer_blocks_0_ff_net_0_proj: "up_blocks.0.attentions.2.transformer_blocks.0.ff.net.0.proj",
    output_blocks_2_2_conv: "up_blocks.0.upsamplers.0.conv",
    output_blocks_5_0_skip_connection: "up_blocks.1.resnets.2.conv_shortcut",
    time_embed_0: "time_embedding.linear_1",
  };
  for (const [sgm, diffusers] of Object.entries(expected)) assert.equal(names.get(sgm), diffusers, sgm);
});

describe("bad SDXL LoRA files", () => {
  let pipe: Pipeline;
  let layers: RandomLayer[];
  before(async () => {
    pipe = await loadPipeline(TINY_SDXL, { threads: 1, loraSupport: true });
    layers = await randomSdxlLora(3, ["unet", "text_encoder_2"], 2);
  });
  after(() => pipe.release());

  const rejects = async (file: string, pattern: RegExp, target: Pipeline = pipe) => {
    await assert.rejects(target.adapterFeeds([{ path: file }]), (err: Error) => {
      assert.ok(err instanceof ModelError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(path.basename(file)), err.message);
      assert.match(err.message, pattern);
      return true;
    });
  };
  const f32 = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, d) => a * d, 1)).fill(0.01),
  });

  test("a layer SDXL's block layout does not have (input_blocks 9 of a two-block UNet)", async () => {
    const file = path.join(tmp, "unknown-block.safetensors");
    const base = "lora_unet_input_blocks_9_1_transformer_blocks_0_attn1_to_q";
    await writeSafetensors(file, [
      { name: `${base}.lora_down.weight`, ...f32([2, 64]) },
      { name: `${base}.lora_up.weight`, ...f32([64, 2]) },
    ]);
    await rejects(file, /layers this model does not have: lora_unet_input_blocks_9_1_transformer_blocks_0_attn1_to_q/);
  });

  test("a third transformer layer where transformer_layers_per_block says two", async () => {
    const file = path.join(tmp, "deep.safetensors");
    const base = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj";
    const te2 = 32; // text_encoder_2's hidden size
    const unet = "unet.down_blocks.1.attentions.0.transformer_blocks.2.attn1.to_q";
    await writeSafetensors(file, [
      { name: `${base}.lora_A.weight`, ...f32([2, te2]) },
      { name: `${base}.lora_B.weight`, ...f32([te2, 2]) },
      { name: `${unet}.lora_A.weight`, ...f32([2, 64]) },
      { name: `${unet}.lora_B.weight`, ...f32([64, 2]) },
    ]);
    await rejects(file, /does not have: unet\.down_blocks\.1\.attentions\.0\.transformer_blocks\.2\.attn1\.to_q/);
  });

  test("text_encoder_2 factors of the wrong width, and keys that are not LoRA factors", async () => {
    const wrong = layers.map((l) =>
      l.network === "text_encoder_2" ? { ...l, inF: l.inF + 1, down: new Float32Array(l.rank * (l.inF + 1)) } : l,
    );
    const file = await writeLora(path.join(tmp, "wide-te2.safetensors"), wrong, "kohya-sgm", 1);
    await rejects(
      file,
      /lora_te2_text_model_encoder_layers_\d+_\w+: factors down \[2, \d+\] and up \[\d+, 2\] do not fit/,
    );
    const junk = path.join(tmp, "junk.safetensors");
    await writeSafetensors(junk, [
      { name: "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", ...f32([2, 64]) },
      { name: "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", ...f32([64, 2]) },
      { name: "emb_params", ...f32([2, 64]) },
    ]);
    await rejects(junk, /not LoRA factors: emb_params/);
  });

  test("an SDXL LoRA on an SD 1.x model names the second text encoder", async () => {
    const sd1 = await loadPipeline(modelDir("tiny-sd1"), { threads: 1, loraSupport: true });
    try {
      const file = await writeLora(
        path.join(tmp, "te2-only.safetensors"),
        layers.filter((l) => l.network === "text_encoder_2"),
        "kohya-sgm",
        1,
      );
      await rejects(file, /SDXL LoRA .*second text encoder/, sd1);
    } finally {
      await sd1.release();
    }
  });
});
