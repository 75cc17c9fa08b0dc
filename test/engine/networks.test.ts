/**
 * Golden tests: the text encoder, UNet and VAE decoder graphs built from each fixture
 * model's config.json + safetensors, against what transformers / diffusers computed.
 *
 * Tolerances (max abs error): text encoder and UNet 2e-5, VAE decode 5e-5. Measured on
 * onnxruntime 1.30 CPU: ≤1.2e-6 (text, |values| ≤ 3.2), ≤1.4e-6 (UNet, ≤ 1.3), ≤7.2e-6
 * (VAE, ≤ 2.0). The reference itself moves by 3e-6 / 3e-6 / 1.1e-5 when torch switches
 * CPU kernels, so the margin covers other CPUs' kernels and nothing more; the fixtures'
 * README suggests 1e-4 / 1e-4 / 5e-4.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TextEncoder, UNet, VaeDecoder } from "../../src/engine/networks.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { FIXTURE_MODELS, manifest, maxAbsDiff, modelDir, refTensor } from "../helpers/fixtures.js";

const TOL = { text: 2e-5, unet: 2e-5, vae: 5e-5 };
const opts = { threads: 2 };

for (const model of FIXTURE_MODELS) {
  describe(`${model} networks`, () => {
    const m = manifest(model);
    let text: TextEncoder;
    let unet: UNet;
    let vae: VaeDecoder;

    before(async () => {
      const folder = await openModelFolder(modelDir(model));
      text = await TextEncoder.load(folder.textEncoder, opts);
      unet = await UNet.load(folder.unet, opts);
      vae = await VaeDecoder.load(folder.vae, opts);
    });
    after(async () => {
      await Promise.all([text.session.release(), unet.session.release(), vae.session.release()]);
    });

    test("text encoder last_hidden_state", async () => {
      for (const [i, p] of (m.text_encoder as { input_ids: number[] }[]).entries()) {
        const out = await text.encode([p.input_ids]);
        const ref = refTensor(model, `text_encoder_prompt${i}_last_hidden_state`);
        assert.deepEqual(out.shape, ref.shape);
        const err = maxAbsDiff(out.data, ref.data);
        assert.ok(err <= TOL.text, `prompt ${i}: max abs error ${err}`);
      }
    });

    test("text encoder batches prompts", async () => {
      const ids = (m.text_encoder as { input_ids: number[] }[]).map((p) => p.input_ids);
      const out = await text.encode(ids);
      assert.deepEqual(out.shape.slice(0, 2), [ids.length, 77]);
      const per = out.data.length / ids.length;
      for (let i = 0; i < ids.length; i++) {
        const ref = refTensor(model, `text_encoder_prompt${i}_last_hidden_state`);
        const err = maxAbsDiff(out.data.subarray(i * per, (i + 1) * per), ref.data);
        assert.ok(err <= TOL.text, `prompt ${i} in a batch: max abs error ${err}`);
      }
    });

    test("UNet forward at integer and float timesteps", async () => {
      const sample = refTensor(model, "unet_in_sample");
      const context = refTensor(model, "unet_in_encoder_hidden_states");
      for (const o of m.unet.outputs as { timestep: number; output: string }[]) {
        const out = await unet.run(sample, o.timestep, context);
        const ref = refTensor(model, o.output.replace(/^ref\/|\.bin$/g, ""));
        assert.deepEqual(out.shape, ref.shape);
        const err = maxAbsDiff(out.data, ref.data);
        assert.ok(err <= TOL.unet, `t=${o.timestep}: max abs error ${err}`);
      }
    });

    test("VAE decode", async () => {
      const latents = refTensor(model, "vae_in_latents");
      const out = await vae.decode(latents);
      const ref = refTensor(model, "vae_decode_out");
      assert.deepEqual(out.shape, ref.shape);
      const err = maxAbsDiff(out.data, ref.data);
      assert.ok(err <= TOL.vae, `max abs error ${err}`);
      assert.equal(vae.config.scaleFactor, m.vae_scale_factor);
      assert.equal(vae.config.scalingFactor, m.vae_scaling_factor);
    });
  });
}
