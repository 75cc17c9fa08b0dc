/**
 * AutoencoderTiny (TAESD) against diffusers 0.29.2 (golden-family `taesd/`): a tiny random
 * AutoencoderTiny folder, its encode, decode and round trip on a 96×64 picture.
 *
 * Tolerance: the VAE's, 5e-4 abs (measured: see the assertion messages / diagnostics).
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError } from "../../src/engine/errors.js";
import { ConfigReader } from "../../src/engine/graph/config.js";
import { readTinyAutoencoderConfig } from "../../src/engine/graph/taesd.js";
import { decodedToImages, type RgbImage } from "../../src/engine/image.js";
import { TinyVaeDecoder, TinyVaeEncoder } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { TinyAutoencoderPreview } from "../../src/engine/taesd-preview.js";
import { openComponentFolder } from "../../src/engine/weights/model-folder.js";
import { maxAbs, maxAbsDiff, modelDir, REFERENCE_CONFIGS, readJson, SHARED } from "../helpers/fixtures.js";

const DIR = path.join(SHARED, "fixtures/golden-family/taesd");
const TOL = 5e-4;

// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
const manifest: any = readJson(path.join(DIR, "manifest.json"));

function ref(key: string): { data: Float32Array; shape: number[] } {
  const entry = manifest.files[key];
  const buf = readFileSync(path.join(DIR, entry.file));
  return {
    data: new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
    shape: entry.shape,
  };
}

describe("AutoencoderTiny (TAESD) as diffusers", () => {
  let encoder: TinyVaeEncoder;
  let decoder: TinyVaeDecoder;
  before(async () => {
    const files = await openComponentFolder(path.join(DIR, manifest.model_dir), "vae");
    encoder = await TinyVaeEncoder.load(files, { threads: 2 });
    decoder = await TinyVaeDecoder.load(files, { threads: 2 });
  });
  after(async () => {
    await encoder.session.release();
    await decoder.session.release();
  });

  test("config: latent scale 8, scaling factor 1", () => {
    assert.equal(decoder.config.scaleFactor, manifest.scale_factor);
    assert.equal(decoder.config.scalingFactor, 1);
    assert.equal(decoder.config.latentChannels, 4);
  });

  test("encode: encoder((x + 1) / 2)", async (t) => {
    const expected = ref("encode_out_latents");
    const out = await encoder.encode(ref("encode_in_image"));
    assert.deepEqual(out.shape, expected.shape);
    const err = maxAbsDiff(out.data, expected.data);
    t.diagnostic(`max abs error ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `encode: max abs error ${err}`);
  });

  test("decode: decoder(tanh(z / 3) · 3) · 2 − 1", async (t) => {
    const expected = ref("decode_out");
    const out = await decoder.decode(ref("decode_in_latents"));
    assert.deepEqual(out.shape, expected.shape);
    const err = maxAbsDiff(out.data, expected.data);
    t.diagnostic(`max abs error ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `decode: max abs error ${err}`);
  });

  test("round trip: decode(encode(x))", async (t) => {
    const expected = ref("roundtrip_decode_of_encode");
    const out = await decoder.decode(await encoder.encode(ref("encode_in_image")));
    const err = maxAbsDiff(out.data, expected.data);
    t.diagnostic(`max abs error ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `round trip: max abs error ${err}`);
  });
});

describe("AutoencoderTiny configs", () => {
  const reader = (raw: Record<string, unknown>) => new ConfigReader("config.json", raw);

  test("madebyollin/taesd's config reads as TAESD: 64 channels, 3-block stages, latent scale 8", () => {
    const raw = readJson<Record<string, unknown>>(path.join(REFERENCE_CONFIGS, "taesd/config.json"));
    const c = readTinyAutoencoderConfig(reader(raw));
    assert.deepEqual(c.decoderBlocks, [3, 3, 3, 1]);
    assert.equal(c.scaleFactor, 8);
    assert.equal(c.scalingFactor, 1);
  });

  test("unsupported or inconsistent options are ModelErrors naming the field", () => {
    const base = { _class_name: "AutoencoderTiny" };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ _class_name: "AutoencoderKL" }, /_class_name/],
      [{ ...base, act_fn: "gelu" }, /act_fn/],
      [{ ...base, upsample_fn: "bilinear" }, /upsample_fn/],
      [{ ...base, upsampling_scaling_factor: 4 }, /upsampling_scaling_factor/],
      [{ ...base, num_encoder_blocks: [1, 2] }, /num_encoder_blocks/],
      [{ ...base, num_decoder_blocks: [1, 1, 1], decoder_block_out_channels: [8, 8, 8] }, /num_decoder_blocks/],
      [{ ...base, shift_factor: 0.5 }, /shift_factor/],
      [{ ...base, latent_channels: -4 }, /latent_channels/],
      [{ ...base, encoder_block_out_channels: "64" }, /encoder_block_out_channels/],
    ];
    for (const [raw, field] of cases) {
      assert.throws(
        () => readTinyAutoencoderConfig(reader(raw)),
        (e: unknown) => e instanceof ModelError && field.test(e.message),
        JSON.stringify(raw),
      );
    }
  });

  test("a folder whose weights do not fit its config is refused by weight name, not run", async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), "taesd-"));
    try {
      cpSync(path.join(DIR, manifest.model_dir), tmp, { recursive: true });
      const cfg = JSON.parse(readFileSync(path.join(tmp, "config.json"), "utf8"));
      cfg.num_decoder_blocks = [3, 2, 2, 1];
      writeFileSync(path.join(tmp, "config.json"), JSON.stringify(cfg));
      const files = await openComponentFolder(tmp, "vae");
      await assert.rejects(
        TinyVaeDecoder.load(files, { threads: 1 }),
        (e: unknown) => e instanceof ModelError && /decoder\.layers\./.test(e.message),
      );
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("a folder without weights, or no folder at all, is a clear ModelError", async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), "taesd-"));
    try {
      writeFileSync(path.join(tmp, "config.json"), "{}");
      await assert.rejects(openComponentFolder(tmp, "vae"), ModelError);
      await assert.rejects(openComponentFolder(path.join(tmp, "nope"), "vae"), /not found/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe("the tiny autoencoder in the pipeline", () => {
  const taesd = path.join(DIR, manifest.model_dir);
  let plain: Pipeline;
  let fast: Pipeline;
  before(async () => {
    plain = await loadPipeline(modelDir("tiny-sd1"), { threads: 2 });
    fast = await loadPipeline(modelDir("tiny-sd1"), { threads: 2, vae: taesd, previewVae: taesd });
  });
  after(async () => {
    await plain.release();
    await fast.release();
  });

  test("vae: a TAESD folder decodes the same latents; sizes follow its scale factor, no rescaling", async () => {
    assert.equal(fast.info.decoderClass, "AutoencoderTiny");
    assert.equal(fast.info.vaeScaleFactor, 8);
    assert.equal(fast.info.vaeScalingFactor, 1);
    assert.equal(plain.info.decoderClass, "AutoencoderKL");
    // tiny-sd1's own VAE has a scale factor of 2: 64 px there and 256 px with TAESD are both 32² latents.
    const req = { prompt: "a lighthouse", numInferenceSteps: 2, scheduler: "LCM", guidanceScale: 1, seed: 7 };
    const a = await plain.generate({ ...req, width: 64, height: 64 });
    const b = await fast.generate({ ...req, width: 256, height: 256 });
    assert.deepEqual(b.latents.shape, a.latents.shape);
    assert.ok(maxAbsDiff(b.latents.data, a.latents.data) <= 1e-5 * maxAbs(a.latents.data));
    assert.deepEqual(b.decoded.shape, [1, 3, 256, 256]);
    assert.equal(b.images[0]?.width, 256);
    // TAESD takes the pipeline's latents as they are (its scaling_factor is 1).
    const direct = await fast.vae.decode(b.latents);
    assert.equal(maxAbsDiff(b.decoded.data, direct.data), 0);
  });

  test("preview: a full-size picture of the step's denoised estimate (LCM) or latents", async () => {
    const previews: RgbImage[] = [];
    const denoisedShown: boolean[] = [];
    const result = await fast.generate(
      {
        prompt: "a lighthouse",
        numInferenceSteps: 2,
        scheduler: "LCM",
        guidanceScale: 1,
        seed: 7,
        width: 128,
        height: 64,
      },
      {
        onStep: async (e) => {
          const images = await fast.preview(e);
          assert.ok(images);
          previews.push(...images);
          denoisedShown.push(e.denoised !== undefined);
        },
      },
    );
    assert.deepEqual(
      previews.map((im) => [im.width, im.height]),
      [
        [128, 64],
        [128, 64],
      ],
    );
    assert.deepEqual(denoisedShown, [true, true]);
    // LCM's last denoised estimate is the final latents: its preview is the image itself.
    assert.deepEqual(previews[1]?.data, result.images[0]?.data);
    assert.notDeepEqual(previews[0]?.data, previews[1]?.data);
    assert.equal(
      await plain.preview({ latents: { data: new Float32Array(4 * 8 * 8), shape: [1, 4, 8, 8] } }),
      undefined,
    );
  });

  test("previewMaxSize: larger images are previewed from 2×2-averaged latents", async () => {
    const small = await TinyAutoencoderPreview.load(taesd, { threads: 1, maxSize: 64 });
    try {
      // 16×8 latents (128×64 px) → factor 2 → 8×4 latents → 64×32 px.
      const data = Float32Array.from({ length: 4 * 8 * 16 }, (_, i) => Math.sin(i * 0.37) * 2);
      const [image] = await small.images({ data, shape: [1, 4, 8, 16] });
      assert.deepEqual([image?.width, image?.height], [64, 32]);
      const pooled = new Float32Array(4 * 4 * 8);
      for (let c = 0; c < 4; c++)
        for (let y = 0; y < 4; y++)
          for (let x = 0; x < 8; x++) {
            const at = (yy: number, xx: number) => data[c * 128 + yy * 16 + xx] as number;
            pooled[c * 32 + y * 8 + x] =
              (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4;
          }
      const direct = decodedToImages(await small.decoder.decode({ data: pooled, shape: [1, 4, 4, 8] }));
      assert.deepEqual(image?.data, direct[0]?.data);
      // Already small enough: full size.
      const [full] = await small.images({ data: new Float32Array(4 * 4 * 8), shape: [1, 4, 4, 8] });
      assert.deepEqual([full?.width, full?.height], [64, 32]);
      await assert.rejects(TinyAutoencoderPreview.load(taesd, { maxSize: 0 }), RangeError);
      await assert.rejects(small.images({ data: new Float32Array(3), shape: [1, 3, 1, 1] }), /expected latents/);
    } finally {
      await small.release();
    }
  });

  test("a decoder that does not fit the UNet, or a missing folder, is refused at load", async () => {
    await assert.rejects(loadPipeline(modelDir("tiny-sd1"), { vae: path.join(DIR, "nope") }), ModelError);
    await assert.rejects(
      loadPipeline(modelDir("tiny-sd1"), { previewVae: path.join(modelDir("tiny-sd1"), "vae") }),
      /AutoencoderTiny/,
    );
    const tmp = mkdtempSync(path.join(tmpdir(), "taesd-"));
    try {
      cpSync(taesd, tmp, { recursive: true });
      const cfg = JSON.parse(readFileSync(path.join(tmp, "config.json"), "utf8"));
      writeFileSync(path.join(tmp, "config.json"), JSON.stringify({ ...cfg, latent_channels: 16 }));
      await assert.rejects(loadPipeline(modelDir("tiny-sd1"), { vae: tmp }), ModelError);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
