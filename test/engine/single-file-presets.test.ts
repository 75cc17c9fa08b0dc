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
import { impliedTensorShapes } from "../../src/engine/weights/random-weights.js";
import { openSingleFile, PRESETS_DIR } from "../../src/engine/weights/single-file.js";
import { readJson } from "../helpers/fixtures.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-presets-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const RESNET: [string, string][] = [
  ["norm1", "in_layers.0"],
  ["conv1", "in_layers.2"],
  ["time_emb_proj", "emb_layers.1"],
  ["norm2", "out_layers.0"],
  ["conv2", "out_layers.3"],
  ["conv_shortcut", "skip_connection"],
];

/** diffusers UNet name → LDM name (README "UNet mapping"), for a config with L layers per block. */
function unetToLdm(name: string, L: number, upHasAttention: boolean[]): string {
  const resnet = (rest: string) => {
    for (const [from, to] of RESNET) if (rest.startsWith(`${from}.`)) return `${to}${rest.slice(from.length)}`;
    throw new Error(`resnet part ${rest}`);
  };
  const fixed: Record<string, string> = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    conv_in: "input_blocks.0.0",
    conv_norm_out: "out.0",
    conv_out: "out.2",
  };
  for (const [from, to] of Object.entries(fixed)) if (name.startsWith(`${from}.`)) return to + name.slice(from.length);
  const input = (i: string | undefined, j: string | undefined) => 1 + Number(i) * (L + 1) + Number(j);
  const output = (i: string | undefined, j: string | undefined) => Number(i) * (L + 1) + Number(j);
  const rules: [RegExp, (m: RegExpExecArray) => string][] = [
    [
      /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `input_blocks.${input(m[1], m[2])}.0.${resnet(m[3] as string)}`,
    ],
    [/^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/, (m) => `input_blocks.${input(m[1], m[2])}.1.${m[3]}`],
    [
      /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/,
      (m) => `input_blocks.${(Number(m[1]) + 1) * (L + 1)}.0.op.${m[2]}`,
    ],
    [/^mid_block\.resnets\.([01])\.(.+)$/, (m) => `middle_block.${m[1] === "0" ? 0 : 2}.${resnet(m[2] as string)}`],
    [/^mid_block\.attentions\.0\.(.+)$/, (m) => `middle_block.1.${m[1]}`],
    [
      /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/,
      (m) => `output_blocks.${output(m[1], m[2])}.0.${resnet(m[3] as string)}`,
    ],
    [/^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/, (m) => `output_blocks.${output(m[1], m[2])}.1.${m[3]}`],
    [
      /^up_blocks\.(\d+)\.upsamplers\.0\.(.+)$/,
      (m) => `output_blocks.${output(m[1], String(L))}.${upHasAttention[Number(m[1])] ? 2 : 1}.${m[2]}`,
    ],
  ];
  for (const [re, to] of rules) {
    const m = re.exec(name);
    if (m) return to(m);
  }
  throw new Error(`unet name ${name}`);
}

/** diffusers VAE name → LDM name (README "VAE mapping"). */
function vaeToLdm(name: string, n: number): string {
  return name
    .replace(/^decoder\.up_blocks\.(\d+)\./, (_, i) => `decoder.up.${n - 1 - Number(i)}.`)
    .replace(/^encoder\.down_blocks\.(\d+)\./, "encoder.down.$1.")
    .replace(/\.downsamplers\.0\./, ".downsample.")
    .replace(/\.resnets\.(\d+)\./, ".block.$1.")
    .replace(/\.upsamplers\.0\./, ".upsample.")
    .replace(/mid_block\.block\.0\./, "mid.block_1.")
    .replace(/mid_block\.block\.1\./, "mid.block_2.")
    .replace(/mid_block\.attentions\.0\.group_norm/, "mid.attn_1.norm")
    .replace(/mid_block\.attentions\.0\.to_(q|k|v)\./, "mid.attn_1.$1.")
    .replace(/mid_block\.attentions\.0\.to_out\.0\./, "mid.attn_1.proj_out.")
    .replace(/conv_shortcut/, "nin_shortcut")
    .replace(/conv_norm_out/, "norm_out");
}

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

for (const [presetName, family] of [
  ["sd-1.5", "sd1"],
  ["sd-2.1", "sd2"],
] as const) {
  test(`an ${presetName}-sized checkpoint maps onto exactly what the graphs bind`, async () => {
    const unetCfg = preset(presetName, "unet");
    const vaeCfg = preset(presetName, "vae");
    const textCfg = preset(presetName, "text_encoder");
    const unet = impliedTensorShapes("unet", unetCfg);
    const vae = impliedTensorShapes("vae", vaeCfg);
    const text = impliedTensorShapes("text_encoder", textCfg);
    const L = unetCfg["layers_per_block"] as number;
    const upAttn = (unetCfg["up_block_types"] as string[]).map((t) => t.startsWith("CrossAttn"));
    const n = (vaeCfg["block_out_channels"] as number[]).length;

    const ldm = new Map<string, number[]>();
    for (const [name, shape] of unet) {
      // SD 1.x stores proj_in/proj_out as 1×1 convs, as the graph binds them; SD 2.x as linears.
      ldm.set(`model.diffusion_model.${unetToLdm(name, L, upAttn)}`, shape);
    }
    for (const [name, shape] of vae) {
      const attn = /attentions\.0\.(to_|proj)/.test(name) && shape.length === 2;
      ldm.set(`first_stage_model.${vaeToLdm(name, n)}`, attn ? [...shape, 1, 1] : shape);
    }
    const layers = textCfg["num_hidden_layers"] as number;
    const h = textCfg["hidden_size"] as number;
    if (family === "sd1") {
      for (const [name, shape] of text) ldm.set(`cond_stage_model.transformer.${name}`, shape);
      ldm.set("cond_stage_model.transformer.text_model.embeddings.position_ids", [1, 77]);
    } else {
      const oc = "cond_stage_model.model.";
      // OpenCLIP holds one layer more than SD 2 uses, and its projection and logit scale.
      for (let i = 0; i <= layers; i++) {
        const p = `${oc}transformer.resblocks.${i}.`;
        ldm.set(`${p}attn.in_proj_weight`, [3 * h, h]);
        ldm.set(`${p}attn.in_proj_bias`, [3 * h]);
        for (const [ours, theirs] of [
          ["self_attn.out_proj", "attn.out_proj"],
          ["layer_norm1", "ln_1"],
          ["layer_norm2", "ln_2"],
          ["mlp.fc1", "mlp.c_fc"],
          ["mlp.fc2", "mlp.c_proj"],
        ]) {
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
      ldm.set(`${oc}text_projection`, [h, h]);
      ldm.set(`${oc}logit_scale`, []);
    }
    for (const extra of ["betas", "alphas_cumprod", "model_ema.decay"]) ldm.set(extra, [1000]);

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
