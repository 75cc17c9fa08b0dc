/**
 * What the network benches feed: the published configs in presets/, and deterministic
 * input values (compute does not depend on them).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PRESETS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "presets");

/** presets/<model>/<component>/config.json. */
export function readPresetConfig(model: string, component: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(PRESETS, model, component, "config.json"), "utf8"));
}

/** Deterministic values in [-1, 1) (xorshift32). */
export function noise(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** A tensor of `noise` values with the given shape. */
export function noiseTensor(shape: number[], seed: number): { data: Float32Array; shape: number[] } {
  return {
    data: noise(
      shape.reduce((a, d) => a * d, 1),
      seed,
    ),
    shape,
  };
}
