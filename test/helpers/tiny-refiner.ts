/** A tiny SDXL refiner made on the spot from the tiny SDXL fixture (the refiner tests share it). */
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { writeRandomComponent } from "../../src/engine/weights/random-weights.js";
import { GOLDEN_FAMILY, REPO_ROOT } from "./fixtures.js";

export const TINY_SDXL = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

const readJsonFile = (file: string) => JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;

/**
 * Writes into `dir` a refiner on tiny-sdxl's second encoder, laid out as stabilityai's refiner
 * folder: text_encoder_2 / tokenizer_2 / VAE / scheduler linked from tiny-sdxl, model_index.json
 * as the real refiner's (StableDiffusionXLImg2ImgPipeline, no first encoder,
 * requires_aesthetics_score, force_zeros_for_empty_prompt false) and a UNet with random weights
 * (seed 7) sized for one encoder and five time ids. Returns `dir`.
 */
export async function writeTinyRefiner(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  for (const entry of ["scheduler", "text_encoder_2", "tokenizer_2", "vae"]) {
    symlinkSync(path.join(TINY_SDXL, entry), path.join(dir, entry));
  }
  writeFileSync(
    path.join(dir, "model_index.json"),
    JSON.stringify(readJsonFile(path.join(REPO_ROOT, "presets/sdxl-refiner/model_index.json"))),
  );
  const unet = readJsonFile(path.join(TINY_SDXL, "unet/config.json"));
  const te2 = readJsonFile(path.join(TINY_SDXL, "text_encoder_2/config.json"));
  await writeRandomComponent(
    path.join(dir, "unet"),
    "unet",
    {
      ...unet,
      cross_attention_dim: te2["hidden_size"],
      projection_class_embeddings_input_dim:
        (te2["projection_dim"] as number) + 5 * (unet["addition_time_embed_dim"] as number),
    },
    { seed: 7 },
  );
  return dir;
}
