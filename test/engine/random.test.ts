import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { TorchCpuGenerator } from "../../src/engine/random/torch-cpu.js";
import { FIXTURE_MODELS, GOLDEN, type ManifestFile, maxAbsDiff, readJson } from "../helpers/fixtures.js";

interface RandnItem {
  seed: number;
  shape: number[];
  numel: number;
  file: string;
}
interface RngManifest {
  randn: RandnItem[];
  sequence: { seed: number; draws: { index: number; shape: number[]; file: string }[] };
  files: Record<string, { file: string; shape: number[] }>;
}

/**
 * rng_cpu_default/ came from torch's scalar C++ kernels, which this generator follows step by step,
 * so 16+ draws differ only by last-bit rounding of log/cos/sin (1 float32 ulp is 2.4e-7 for 2 <= |x| < 4).
 * rng/ came from the AVX2 kernels with their own vectorised log/sin/cos (README: up to 1.9e-6).
 * Fewer than 16 values go through torch's double-precision path on both, and must match exactly.
 */
const FOLDERS = [
  { name: "rng_cpu_default", tolerance: 2.4e-7 },
  { name: "rng", tolerance: 2e-6 },
] as const;

function readBin(folder: string, file: string): Float32Array {
  const buf = readFileSync(path.join(GOLDEN, folder, file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/**
 * The model manifests were written by Python's json, which emits bare -Infinity / NaN for some
 * scheduler settings (e.g. lambda_min_clipped); JSON.parse rejects those, so they become null here.
 */
function modelManifestFiles(model: string): Record<string, ManifestFile> {
  const text = readFileSync(path.join(GOLDEN, model, "manifest.json"), "utf8");
  const json = text.replace(/(?<=[:[,]\s*)(?:-?Infinity|NaN)(?=\s*[,\]}])/g, "null");
  return (JSON.parse(json) as { files: Record<string, ManifestFile> }).files;
}

function assertClose(actual: Float32Array, expected: Float32Array, tolerance: number, what: string): number {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (actual.length < 16) {
    assert.deepEqual(Array.from(actual), Array.from(expected), `${what}: fewer than 16 values must be exact`);
    return 0;
  }
  const err = maxAbsDiff(actual, expected);
  assert.ok(err <= tolerance, `${what}: max abs error ${err} > ${tolerance}`);
  return err;
}

for (const { name, tolerance } of FOLDERS) {
  describe(`torch CPU randn matches ${name}/`, () => {
    const m = readJson<RngManifest>(path.join(GOLDEN, name, "manifest.json"));

    test("every seed and shape, whole tensors", (t) => {
      let worst = 0;
      for (const item of m.randn) {
        const expected = readBin(name, item.file);
        assert.equal(expected.length, item.numel);
        const actual = new TorchCpuGenerator(item.seed).randn(item.shape);
        worst = Math.max(worst, assertClose(actual, expected, tolerance, `seed ${item.seed} shape [${item.shape}]`));
      }
      t.diagnostic(`max abs error ${worst}`);
    });

    test("successive draws on one generator carry state and the cached normal", () => {
      const g = new TorchCpuGenerator(m.sequence.seed);
      for (const draw of m.sequence.draws) {
        const expected = readBin(name, draw.file);
        assertClose(g.randn(draw.shape), expected, tolerance, `sequence draw ${draw.index} [${draw.shape}]`);
      }
    });

    test("rand, seed 0, 32 values", () => {
      const entry = m.files["rand_seed0_32"]!;
      const expected = readBin(name, entry.file);
      assert.deepEqual(Array.from(new TorchCpuGenerator(0).rand(entry.shape)), Array.from(expected));
    });
  });
}

describe("diffusers' own latents draw", () => {
  for (const model of FIXTURE_MODELS) {
    test(`${model}: prepare_latents from manual_seed(42)`, (t) => {
      const key = "run_euler_a_internal_latents_internal_initial_latents";
      const entry = modelManifestFiles(model)[key]!;
      assert.match(entry.call ?? "", /manual_seed\(42\)/);
      const data = readBin(model, `ref/${key}.bin`);
      const shape = entry.shape;
      const err = maxAbsDiff(new TorchCpuGenerator(42).randn(shape), data);
      t.diagnostic(`max abs error ${err}`);
      assert.ok(err <= 2e-6, `${model}: max abs error ${err}`);
    });
  }
});

describe("seeds", () => {
  test("only the low 32 bits seed the twister; the full value is kept", () => {
    const a = new TorchCpuGenerator(4294967295).randn([20]);
    const b = new TorchCpuGenerator((1n << 64n) - 1n);
    assert.deepEqual(Array.from(b.randn([20])), Array.from(a));
    assert.equal(b.seed, (1n << 64n) - 1n);
    assert.equal(new TorchCpuGenerator(4294967295).seed, 4294967295n);
  });

  test("negative seeds wrap to uint64, as torch's binding does", () => {
    const g = new TorchCpuGenerator(-1);
    assert.equal(g.seed, (1n << 64n) - 1n);
    assert.deepEqual(Array.from(g.randn([5])), Array.from(new TorchCpuGenerator(4294967295).randn([5])));
  });

  test("out-of-range and non-integer seeds are refused", () => {
    assert.throws(() => new TorchCpuGenerator(1n << 64n), RangeError);
    assert.throws(() => new TorchCpuGenerator(-(1n << 63n) - 1n), RangeError);
    assert.throws(() => new TorchCpuGenerator(1.5), RangeError);
    assert.throws(() => new TorchCpuGenerator(Number.NaN), RangeError);
  });

  test("bad shapes are refused; an empty shape draws nothing", () => {
    const g = new TorchCpuGenerator(0);
    assert.throws(() => g.randn([2, -1]), RangeError);
    assert.throws(() => g.randn([1.5]), RangeError);
    assert.equal(g.randn([0, 4]).length, 0);
    assert.equal(g.randn([]).length, 1); // a 0-d tensor holds one value
  });
});
