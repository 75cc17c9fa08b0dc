/** Copies of the fixture models with a twist (a patched config, a rewritten weights file) for error tests. */
import { chmodSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type FixtureModel, modelDir } from "./fixtures.js";

export interface ModelCopy {
  dir: string;
  /** Merges `patch` into <component>/config.json (a value of undefined deletes the key). */
  patchConfig(component: string, patch: Record<string, unknown>): string;
  remove(): void;
}

/** `model`: a fixture model's name, or the absolute path of another model folder. */
export function copyModel(model: FixtureModel | string): ModelCopy {
  const from = path.isAbsolute(model) ? model : modelDir(model as FixtureModel);
  const dir = mkdtempSync(path.join(os.tmpdir(), `sdserve-${path.basename(from)}-`));
  cpSync(from, dir, { recursive: true });
  makeWritable(dir);
  return {
    dir,
    patchConfig(component, patch) {
      const file = path.join(dir, component, component === "scheduler" ? "scheduler_config.json" : "config.json");
      const config = { ...JSON.parse(readFileSync(file, "utf8")), ...patch };
      writeFileSync(file, JSON.stringify(config, null, 2));
      return file;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The fixtures are read-only; their copies must not be. */
function makeWritable(p: string): void {
  const st = statSync(p);
  chmodSync(p, st.mode | 0o200);
  if (st.isDirectory()) for (const e of readdirSync(p)) makeWritable(path.join(p, e));
}
