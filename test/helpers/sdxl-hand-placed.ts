/**
 * Vectors placed by hand in tiny-sdxl: a copy of the model whose two token tables hold given
 * vectors (CLIP ViT-L's, OpenCLIP's) in the rows of ordinary words, so that a prompt with those
 * words is what a prompt calling the vectors by name must equal.
 */
import { copyFileSync, mkdirSync, symlinkSync } from "node:fs";
import path from "node:path";
import { ClipTokenizer } from "../../src/engine/tokenizer/clip.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";

/** Words of one token each in CLIP's vocabulary, whose rows take the vectors in order. */
export const HAND_WORDS = ["zebra", "kite", "lamp", "river"] as const;

/**
 * Writes the copy of `model` (a tiny SDXL folder) at `dir`: row HAND_WORDS[k] of text_encoder's
 * table holds clipL's vector k, of text_encoder_2's clipG's vector k.
 */
export async function handPlacedSdxl(
  model: string,
  dir: string,
  clipL: Float32Array,
  clipG: Float32Array,
  widths: { l: number; g: number },
): Promise<string> {
  mkdirSync(dir);
  for (const entry of ["model_index.json", "scheduler", "tokenizer", "tokenizer_2", "unet", "vae"]) {
    symlinkSync(path.join(model, entry), path.join(dir, entry));
  }
  const tokenizer = await ClipTokenizer.fromFolder(path.join(model, "tokenizer"));
  const rows = tokenizer.encode(HAND_WORDS.join(" "), { padding: false }).inputIds.slice(1, -1);
  if (rows.length !== HAND_WORDS.length) throw new Error("a hand-placement word is not one token");
  for (const [component, vectors, width] of [
    ["text_encoder", clipL, widths.l],
    ["text_encoder_2", clipG, widths.g],
  ] as const) {
    mkdirSync(path.join(dir, component));
    copyFileSync(path.join(model, component, "config.json"), path.join(dir, component, "config.json"));
    const st = await readSafetensors(path.join(model, component, "model.safetensors"));
    const tensors = [];
    for (const t of st.tensors.values()) {
      const data = await readTensor(t);
      if (t.name === "text_model.embeddings.token_embedding.weight") {
        for (let k = 0; k * width < vectors.length; k++) {
          data.set(vectors.subarray(k * width, (k + 1) * width), (rows[k] as number) * width);
        }
      }
      tensors.push({ name: t.name, dtype: "F32" as const, shape: t.shape, data });
    }
    await writeSafetensors(path.join(dir, component, "model.safetensors"), tensors);
  }
  return dir;
}
