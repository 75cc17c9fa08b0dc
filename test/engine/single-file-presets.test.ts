/**
 * Single-file checkpoints of the published sizes, loaded on the presets (no --config): a file
 * with every tensor SD 1.5 / SD 2.1 has, under LDM names made here from the fixture README's
 * mapping (written independently of the loader), must give each graph exactly the tensors
 * and shapes it binds. The files are headers over sparse zero bytes, so nothing full-size is
 * written or run.
 */
import assert from "node:assert/strict";
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { ClipTokenizer } from "../../src/engine/tokenizer/clip.js";
import { impliedTensorShapes } from "../../src/engine/weights/random-weights.js";
import { openSingleFile, PRESETS_DIR } from "../../src/engine/weights/single-file.js";
import { readJson } from "../helpers/fixtures.js";
import { OPEN_CLIP_PARTS, unetToLdm, vaeToLdm } from "../helpers/ldm-layout.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-presets-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a header naming the tensors and leaves the data as a hole (a sparse file). */
function writeSparseCheckpoint(file: string, tensors: Map<string, number[]>, metadata: Record<string, string> = {}) {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = 2 * shape.reduce((a, d) => a * d, 1);
    header[name] = { dtype: "F16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(file, "w");
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + offset);
  closeSync(fd);
}

function preset(name: string, component: string): Record<string, unknown> {
  return readJson(path.join(PRESETS_DIR, name, component, "config.json"));
}

/** OpenCLIP's text tower under `oc` for a CLIPTextModel(WithProjection) config: `layers` resblocks. */
function openClipLdm(
  ldm: Map<string, number[]>,
  oc: string,
  text: Map<string, number[]>,
  h: number,
  layers: number,
  projection: number,
): void {
  for (let i = 0; i < layers; i++) {
    const p = `${oc}transformer.resblocks.${i}.`;
    ldm.set(`${p}attn.in_proj_weight`, [3 * h, h]);
    ldm.set(`${p}attn.in_proj_bias`, [3 * h]);
    for (const [ours, theirs] of OPEN_CLIP_PARTS) {
      for (const kind of ["weight", "bias"]) {
        const shape = text.get(`text_model.encoder.layers.0.${ours}.${kind}`) as number[];
        ldm.set(`${p}${theirs}.${kind}`, shape);
      }
    }
  }
  ldm.set(`${oc}token_embedding.weight`, text.get("text_model.embeddings.token_embedding.weight") as number[]);
  ldm.set(`${oc}positional_embedding`, [77, h]);
  ldm.set(`${oc}ln_final.weight`, [h]);
  ldm.set(`${oc}ln_final.bias`, [h]);
  ldm.set(`${oc}text_projection`, [h, projection]);
  ldm.set(`${oc}logit_scale`, []);
}

function unetAndVaeLdm(presetName: string): {
  ldm: Map<string, number[]>;
  unet: Map<string, number[]>;
  vae: Map<string, number[]>;
} {
  const unetCfg = preset(presetName, "unet");
  const vaeCfg = preset(presetName, "vae");
  const unet = impliedTensorShapes("unet", unetCfg);
  const vae = impliedTensorShapes("vae", vaeCfg);
  const L = unetCfg["layers_per_block"] as number;
  const upAttn = (unetCfg["up_block_types"] as string[]).map((t) => t.startsWith("CrossAttn"));
  const n = (vaeCfg["block_out_channels"] as number[]).length;
  const ldm = new Map<string, number[]>();
  for (const [name, shape] of unet) {
    // SD 1.x stores proj_in/proj_out as 1×1 convs, as the graph binds them; SD 2.x and SDXL as linears.
    ldm.set(`model.diffusion_model.${unetToLdm(name, L, upAttn)}`, shape);
  }
  for (const [name, shape] of vae) {
    const attn = /attentions\.0\.(to_|proj)/.test(name) && shape.length === 2;
    ldm.set(`first_stage_model.${vaeToLdm(name, n)}`, attn ? [...shape, 1, 1] : shape);
  }
  for (const extra of ["betas", "alphas_cumprod", "model_ema.decay"]) ldm.set(extra, [1000]);
  return { ldm, unet, vae };
}

for (const [presetName, family] of [
  ["sd-1.5", "sd1"],
  ["sd-2.1", "sd2"],
] as const) {
  test(`an ${presetName}-sized checkpoint maps onto exactly what the graphs bind`, async () => {
    const { ldm, unet, vae } = unetAndVaeLdm(presetName);
    const textCfg = preset(presetName, "text_encoder");
    const text = impliedTensorShapes("text_encoder", textCfg);
    const layers = textCfg["num_hidden_layers"] as number;
    const h = textCfg["hidden_size"] as number;
    if (family === "sd1") {
      for (const [name, shape] of text) ldm.set(`cond_stage_model.transformer.${name}`, shape);
      ldm.set("cond_stage_model.transformer.text_model.embeddings.position_ids", [1, 77]);
    } else {
      // OpenCLIP holds one layer more than SD 2 uses, and its projection and logit scale.
      openClipLdm(ldm, "cond_stage_model.model.", text, h, layers + 1, h);
    }

    const file = path.join(tmp, `${presetName}.safetensors`);
    writeSparseCheckpoint(file, ldm);
    const folder = await openSingleFile(file);
    assert.equal(path.basename(folder.dir), presetName);
    assert.equal(folder.schedulerConfig["prediction_type"], family === "sd2" ? "v_prediction" : "epsilon");
    for (const [component, want] of [
      ["unet", unet],
      ["vae", vae],
      ["textEncoder", text],
    ] as const) {
      const got = folder[component].tensors;
      for (const [name, shape] of want) {
        assert.deepEqual(got.get(name)?.shape, shape, `${component} ${name}`);
      }
    }
    if (family === "sd2") {
      const q = folder.textEncoder.tensors.get("text_model.encoder.layers.5.self_attn.q_proj.weight");
      const v = folder.textEncoder.tensors.get("text_model.encoder.layers.5.self_attn.v_proj.weight");
      assert.equal((v?.byteOffset as number) - (q?.byteOffset as number), 2 * 2 * h * h);
      assert.equal(folder.textEncoder.config["num_hidden_layers"], layers);
      // A file that says it is epsilon loads on the 512-px base model's configs.
      const eps = path.join(tmp, `${presetName}-eps.safetensors`);
      writeSparseCheckpoint(eps, ldm, { "modelspec.prediction_type": "epsilon" });
      const base = await openSingleFile(eps);
      assert.equal(path.basename(base.dir), "sd-2.1-base");
      assert.equal(base.schedulerConfig["prediction_type"], "epsilon");
    }
  });
}

for (const presetName of ["sdxl", "sdxl-refiner"] as const) {
  test(`an ${presetName === "sdxl" ? "SDXL base 1.0" : "SDXL refiner 1.0"}-sized checkpoint maps onto exactly what the graphs bind`, async () => {
    const { ldm, unet, vae } = unetAndVaeLdm(presetName);
    const te2Cfg = preset(presetName, "text_encoder_2");
    const te2 = impliedTensorShapes("text_encoder", te2Cfg);
    const h = te2Cfg["hidden_size"] as number;
    const layers = te2Cfg["num_hidden_layers"] as number;
    let te1: Map<string, number[]> | undefined;
    if (presetName === "sdxl") {
      te1 = impliedTensorShapes("text_encoder", preset(presetName, "text_encoder"));
      for (const [name, shape] of te1) ldm.set(`conditioner.embedders.0.transformer.${name}`, shape);
      ldm.set("conditioner.embedders.0.transformer.text_model.embeddings.position_ids", [1, 77]);
    }
    // SDXL takes OpenCLIP's penultimate state from a graph of all its layers.
    const oc = presetName === "sdxl" ? "conditioner.embedders.1.model." : "conditioner.embedders.0.model.";
    openClipLdm(ldm, oc, te2, h, layers, te2Cfg["projection_dim"] as number);

    const file = path.join(tmp, `${presetName}.safetensors`);
    writeSparseCheckpoint(file, ldm);
    const folder = await openSingleFile(file);
    assert.equal(path.basename(folder.dir), presetName);
    assert.equal(folder.checkpoint?.family, presetName);
    assert.equal(folder.schedulerConfig["prediction_type"], "epsilon");
    const second = presetName === "sdxl" ? folder.textEncoder2 : folder.textEncoder;
    assert.equal(second?.name, "text_encoder_2");
    assert.equal(second?.config["num_hidden_layers"], layers);
    const checks: [string, Map<string, { shape: number[] }> | undefined, Map<string, number[]>][] = [
      ["unet", folder.unet.tensors, unet],
      ["vae", folder.vae.tensors, vae],
      ["text_encoder_2", second?.tensors, te2],
    ];
    if (te1) checks.push(["text_encoder", folder.textEncoder.tensors, te1]);
    for (const [component, got, want] of checks) {
      assert.ok(got, component);
      for (const [name, shape] of want) assert.deepEqual(got.get(name)?.shape, shape, `${component} ${name}`);
    }
    // text_projection is read transposed: [projection, hidden] as the Linear weight the graph binds.
    const proj = second?.tensors.get("text_projection.weight");
    assert.equal(proj?.transposed, true);
    assert.equal(folder.tokenizer2Dir === undefined, presetName === "sdxl-refiner");
    // The tokenizers are the presets' (OpenAI's BPE): OpenCLIP's pads with "!" (id 0), CLIP ViT-L's with end-of-text.
    const tokenizers = [folder.tokenizerDir, folder.tokenizer2Dir].filter((d) => d !== undefined);
    const pads = [];
    for (const dir of tokenizers) pads.push((await ClipTokenizer.fromFolder(dir, folder.tokenizerVocabDir)).padTokenId);
    assert.deepEqual(pads, presetName === "sdxl" ? [49407, 0] : [0]);

    if (presetName === "sdxl") {
      // A distilled SDXL (fewer transformer blocks, as SSD-1B) has other sizes: --config, saying why.
      for (const k of [...ldm.keys()]) if (k.includes("middle_block.1.transformer_blocks.9.")) ldm.delete(k);
      const distilled = path.join(tmp, "distilled-sdxl.safetensors");
      writeSparseCheckpoint(distilled, ldm);
      await assert.rejects(openSingleFile(distilled), (err: Error) => {
        assert.match(err.message, /distilled-sdxl\.safetensors/);
        assert.match(
          err.message,
          /published SDXL base 1\.0 sizes: unet mid_block\.attentions\.0\.transformer_blocks\.9\..* is missing/,
        );
        assert.match(err.message, /--config/);
        return true;
      });
    }
  });
}
