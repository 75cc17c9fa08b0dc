/** Locations of the golden fixtures shared by the project's steering (read-only). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SHARED = path.resolve(REPO_ROOT, "../shared");
export const GOLDEN = path.join(SHARED, "fixtures/golden");
/** The feature references (img2img, inpainting, …): `golden-family/README.md`. */
export const GOLDEN_FAMILY = path.join(SHARED, "fixtures/golden-family");
export const REFERENCE_CONFIGS = path.join(SHARED, "reference-configs");
export const FIXTURE_MODELS = ["tiny-sd1", "tiny-sd2v"] as const;
export type FixtureModel = (typeof FIXTURE_MODELS)[number];

export interface ManifestFile {
  shape: number[];
  dtype: string;
  sha256: string;
  call?: string;
}

export function modelDir(name: FixtureModel): string {
  return path.join(GOLDEN, name, "model");
}

const NON_FINITE: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
};

/** Parses JSON as Python's json module writes it (bare NaN / Infinity allowed). */
export function readJson<T = unknown>(file: string): T {
  const text = readFileSync(file, "utf8").replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (tok) =>
    tok.startsWith('"') ? tok : `"__nonfinite__${tok}"`,
  );
  return JSON.parse(text, (_k, v) =>
    typeof v === "string" && v.startsWith("__nonfinite__") ? NON_FINITE[v.slice(13)] : v,
  ) as T;
}

// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
export function manifest(name: FixtureModel): any {
  return readJson(path.join(GOLDEN, name, "manifest.json"));
}

/** Reads a reference tensor (raw little-endian float32) with its shape from the manifest. */
export function refTensor(name: FixtureModel, key: string): { data: Float32Array; shape: number[] } {
  const m = manifest(name);
  const entry = m.files[key] as ManifestFile | undefined;
  if (!entry) throw new Error(`${name}: no reference tensor ${key}`);
  const buf = readFileSync(path.join(GOLDEN, name, "ref", `${key}.bin`));
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return { data, shape: entry.shape };
}

/** Largest absolute difference between two arrays of equal length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

const familyManifests = new Map<string, unknown>();

// biome-ignore lint/suspicious/noExplicitAny: the manifest is free-form JSON
export function familyManifest(section: string): any {
  let m = familyManifests.get(section);
  if (!m) {
    m = readJson(path.join(GOLDEN_FAMILY, section, "manifest.json"));
    familyManifests.set(section, m);
  }
  return m;
}

/** A golden-family reference tensor by its manifest key (an entry's `file` may be shared). */
export function familyTensor(section: string, key: string): { data: Float32Array; shape: number[] } {
  const entry = familyManifest(section).files[key] as (ManifestFile & { file: string }) | undefined;
  if (!entry) throw new Error(`golden-family/${section}: no reference tensor ${key}`);
  const buf = readFileSync(path.join(GOLDEN_FAMILY, section, entry.file));
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return { data, shape: entry.shape };
}

/**
 * Compares a full run with diffusers' references: every step's latents within `latentRelTol` of
 * the reference's largest value, the float image within `imageTol`, and the 8-bit image within one
 * level. Reports the worst errors as a diagnostic.
 */
export function assertRunMatches(
  t: { diagnostic(message: string): void },
  run: {
    steps: readonly Float32Array[];
    stepRef: { data: Float32Array; shape: number[] };
    floatImage: ArrayLike<number>;
    image8: Uint8Array;
    imageRef: { data: Float32Array };
  },
  tol: { latentRelTol: number; imageTol: number },
): void {
  const { steps, stepRef, imageRef } = run;
  assert.equal(stepRef.shape[0], steps.length);
  const per = stepRef.data.length / steps.length;
  let worst = 0;
  steps.forEach((s, i) => {
    const expected = stepRef.data.subarray(i * per, (i + 1) * per);
    const err = maxAbsDiff(s, expected) / maxAbs(expected);
    worst = Math.max(worst, err);
    assert.ok(err <= tol.latentRelTol, `step ${i + 1}: relative error ${err}`);
  });
  const imageErr = maxAbsDiff(run.floatImage, imageRef.data);
  t.diagnostic(`latents ${worst.toExponential(1)} relative, image ${imageErr.toExponential(1)} abs`);
  assert.ok(imageErr <= tol.imageTol, `image: max abs error ${imageErr}`);
  let levels = 0;
  for (let i = 0; i < run.image8.length; i++) {
    levels = Math.max(levels, Math.abs((run.image8[i] as number) - Math.round((imageRef.data[i] as number) * 255)));
  }
  assert.ok(levels <= 1, `8-bit image differs by ${levels} levels`);
}
