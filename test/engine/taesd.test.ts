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
import { TinyVaeDecoder, TinyVaeEncoder } from "../../src/engine/networks.js";
import { openComponentFolder } from "../../src/engine/weights/model-folder.js";
import { maxAbsDiff, REFERENCE_CONFIGS, readJson, SHARED } from "../helpers/fixtures.js";

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
