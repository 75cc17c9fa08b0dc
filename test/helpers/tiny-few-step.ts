/**
 * Few-step variants of tiny-random, made on the spot: an LCM-style model (a UNet with
 * time_cond_proj_dim and LCMScheduler, as SimianLuo/LCM_Dreamshaper_v7 ships) and a Turbo-style
 * one (tiny-random's networks with SD-Turbo's trailing Euler scheduler config).
 */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ensureTinyRandomModel, TINY_RANDOM_CONFIGS } from "../../src/engine/tiny-random.js";
import { writeRandomComponent } from "../../src/engine/weights/random-weights.js";
import { REPO_ROOT } from "./fixtures.js";

const PRESETS = path.join(REPO_ROOT, "presets");

function presetScheduler(preset: string): string {
  return readFileSync(path.join(PRESETS, preset, "scheduler/scheduler_config.json"), "utf8");
}

/** Writes the model into `dir` (a fresh folder) and returns it; `cacheDir` holds tiny-random. */
export async function writeTinyFewStepModel(dir: string, kind: "lcm" | "turbo", cacheDir: string): Promise<string> {
  cpSync(await ensureTinyRandomModel(cacheDir), dir, { recursive: true });
  if (kind === "lcm") {
    await writeRandomComponent(
      path.join(dir, "unet"),
      "unet",
      { ...TINY_RANDOM_CONFIGS.unet, time_cond_proj_dim: 8 },
      { seed: 20240611 },
    );
    writeFileSync(path.join(dir, "scheduler/scheduler_config.json"), presetScheduler("lcm-dreamshaper-v7"));
    const index = {
      ...TINY_RANDOM_CONFIGS.model_index,
      _class_name: "LatentConsistencyModelPipeline",
      scheduler: ["diffusers", "LCMScheduler"],
    };
    writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index, null, 2));
  } else {
    writeFileSync(path.join(dir, "scheduler/scheduler_config.json"), presetScheduler("sd-turbo"));
    const index = { ...TINY_RANDOM_CONFIGS.model_index, scheduler: ["diffusers", "EulerDiscreteScheduler"] };
    writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index, null, 2));
  }
  return dir;
}
