/**
 * Random-weight components: the file holds exactly the tensors the engine's graph binds (the
 * same names and shapes as the fixture models diffusers saved, less the VAE encoder), it is
 * deterministic and reused, and the networks built on it run to finite outputs.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { TextEncoder, UNet, VaeDecoder } from "../../src/engine/networks.js";
import type { ComponentName } from "../../src/engine/weights/model-folder.js";
import { impliedTensorShapes, writeRandomComponent } from "../../src/engine/weights/random-weights.js";
import { readSafetensors } from "../../src/engine/weights/safetensors.js";
import { FIXTURE_MODELS, modelDir, readJson } from "../helpers/fixtures.js";

const COMPONENTS: readonly ComponentName[] = ["text_encoder", "unet", "vae"];
const FIXTURE_FILE: Record<ComponentName, string> = {
  text_encoder: "model.safetensors",
  text_encoder_2: "model.safetensors",
  unet: "diffusion_pytorch_model.safetensors",
  vae: "diffusion_pytorch_model.safetensors",
};
const opts = { threads: 2 };

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), "sdserve-random-weights-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function fixtureConfig(model: (typeof FIXTURE_MODELS)[number], component: ComponentName): Record<string, unknown> {
  return readJson<Record<string, unknown>>(path.join(modelDir(model), component, "config.json"));
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

/** Pseudo-random values in [-1, 1), deterministic, for network inputs. */
function inputs(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function assertFiniteAndVaried(data: Float32Array, what: string): void {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const v of data) {
    assert.ok(Number.isFinite(v), `${what}: non-finite value ${v}`);
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(max - min > 1e-3, `${what}: outputs are (nearly) constant, [${min}, ${max}]`);
}

for (const model of FIXTURE_MODELS) {
  describe(`random weights for ${model}'s configs`, () => {
    for (const component of COMPONENTS) {
      test(`${component}: the file holds the tensors diffusers saved, with their shapes`, async () => {
        const dir = path.join(root, model, "f32", component);
        const written = await writeRandomComponent(dir, component, fixtureConfig(model, component), { seed: 7 });
        assert.equal(written.reused, false);

        const back = await readSafetensors(path.join(dir, FIXTURE_FILE[component]));
        const implied = impliedTensorShapes(component, fixtureConfig(model, component));
        assert.deepEqual(
          new Map([...back.tensors].map(([name, t]) => [name, t.shape])),
          implied,
          "names and shapes as the graph implies",
        );
        for (const t of back.tensors.values()) assert.equal(t.dtype, "F32");

        const reference = await readSafetensors(path.join(modelDir(model), component, FIXTURE_FILE[component]));
        for (const [name, shape] of implied) {
          assert.deepEqual(reference.tensors.get(name)?.shape, shape, `${name} as in the fixture`);
        }
        const notWritten = [...reference.tensors.keys()].filter((n) => !implied.has(n));
        // The engine runs only the VAE's decoder, so the encoder half is not synthesised.
        const allowed = component === "vae" ? /^(encoder\.|quant_conv\.)/ : /^$/;
        assert.deepEqual(
          notWritten.filter((n) => !allowed.test(n)),
          [],
          "every tensor the model has (VAE encoder aside)",
        );
        assert.equal(
          written.parameters,
          [...implied.values()].reduce((a, s) => a + s.reduce((x, d) => x * d, 1), 0),
        );
        assert.equal(written.dataBytes, written.parameters * 4);
        assert.deepEqual(
          JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")),
          fixtureConfig(model, component),
        );
      });
    }

    test("the networks built on them run to finite, non-constant outputs (F32 and F16)", async () => {
      for (const dtype of ["F32", "F16"] as const) {
        const base = path.join(root, model, dtype.toLowerCase());
        const [te, un, va] = await Promise.all(
          COMPONENTS.map((c) =>
            writeRandomComponent(path.join(base, c), c, fixtureConfig(model, c), { seed: 7, dtype }),
          ),
        );
        const text = await TextEncoder.load(te!.files, opts);
        const unet = await UNet.load(un!.files, opts);
        const vae = await VaeDecoder.load(va!.files, opts);
        try {
          const ids = [0, 1].map((b) => Array.from({ length: 77 }, (_, i) => (i * 7919 + b * 104729) % 49408));
          const emb = await text.encode(ids);
          assertFiniteAndVaried(emb.data, `${dtype} text encoder`);

          const latent = [2, 4, 16, 16];
          const sample = { data: inputs(2 * 4 * 16 * 16), shape: latent };
          const out = await unet.run(sample, 500, emb);
          assert.deepEqual(out.shape, latent);
          assertFiniteAndVaried(out.data, `${dtype} UNet`);

          const image = await vae.decode({ data: inputs(4 * 16 * 16, 2), shape: [1, 4, 16, 16] });
          assert.deepEqual(image.shape, [1, 3, 16 * vae.config.scaleFactor, 16 * vae.config.scaleFactor]);
          assertFiniteAndVaried(image.data, `${dtype} VAE decode`);
        } finally {
          await Promise.all([text.session.release(), unet.session.release(), vae.session.release()]);
        }
      }
    });
  });
}

describe("random weights: determinism and reuse", () => {
  const config = fixtureConfig("tiny-sd1", "unet");
  const file = (dir: string) => path.join(dir, "diffusion_pytorch_model.safetensors");

  test("the same seed gives the same bytes; another seed other bytes", async () => {
    const a = path.join(root, "det", "a");
    const b = path.join(root, "det", "b");
    const c = path.join(root, "det", "c");
    await writeRandomComponent(a, "unet", config, { seed: 3 });
    await writeRandomComponent(b, "unet", config, { seed: 3 });
    await writeRandomComponent(c, "unet", config, { seed: 4 });
    assert.equal(await sha256(file(a)), await sha256(file(b)));
    assert.notEqual(await sha256(file(a)), await sha256(file(c)));
  });

  test("a second call with the same config, seed and dtype reuses the file; a change rewrites it", async () => {
    const dir = path.join(root, "reuse");
    const first = await writeRandomComponent(dir, "unet", config, { seed: 5 });
    assert.equal(first.reused, false);
    const before = await stat(file(dir));
    const hash = await sha256(file(dir));

    const again = await writeRandomComponent(dir, "unet", config, { seed: 5 });
    assert.equal(again.reused, true);
    assert.equal((await stat(file(dir))).mtimeMs, before.mtimeMs);
    assert.deepEqual([...again.files.tensors.keys()], [...first.files.tensors.keys()]);

    const otherSeed = await writeRandomComponent(dir, "unet", config, { seed: 6 });
    assert.equal(otherSeed.reused, false);
    assert.notEqual(await sha256(file(dir)), hash);

    const otherConfig = await writeRandomComponent(dir, "unet", { ...config, layers_per_block: 1 }, { seed: 6 });
    assert.equal(otherConfig.reused, false);
    assert.ok(otherConfig.files.tensors.size < first.files.tensors.size);
    assert.equal(JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")).layers_per_block, 1);

    const half = await writeRandomComponent(dir, "unet", { ...config, layers_per_block: 1 }, { seed: 6, dtype: "F16" });
    assert.equal(half.reused, false);
    assert.equal(half.dataBytes * 2, otherConfig.dataBytes);
    assert.deepEqual((await readdir(dir)).sort(), ["config.json", "diffusion_pytorch_model.safetensors"]);
  });

  test("F16 files hold the F32 values rounded to half precision", async () => {
    const d32 = path.join(root, "half", "f32");
    const d16 = path.join(root, "half", "f16");
    const w32 = await writeRandomComponent(d32, "unet", config, { seed: 9 });
    const w16 = await writeRandomComponent(d16, "unet", config, { seed: 9, dtype: "F16" });
    const b32 = await readFile(file(d32));
    const b16 = await readFile(file(d16));
    let checked = 0;
    for (const [name, t32] of w32.files.tensors) {
      const t16 = w16.files.tensors.get(name);
      assert.ok(t16 && t16.dtype === "F16");
      const n = t32.byteLength / 4;
      for (let i = 0; i < n; i++) {
        const x = b32.readFloatLE(t32.byteOffset + i * 4);
        const h = halfToFloat(b16.readUInt16LE(t16.byteOffset + i * 2));
        // Half precision: 11 significant bits; subnormals below 2^-14 have absolute spacing 2^-24.
        assert.ok(Math.abs(h - x) <= Math.max(Math.abs(x) * 2 ** -11, 2 ** -25), `${name}[${i}]: ${x} → ${h}`);
        checked++;
      }
    }
    assert.ok(checked > 10_000);
  });
});

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
