/**
 * Vectors placed by hand in tiny-sdxl: copies of the model whose two token tables hold given
 * vectors (CLIP ViT-L's, OpenCLIP's), so that a prompt calling the vectors by name must equal
 * what the copy computes for a plain prompt:
 * - `handPlacedSdxl`: in the rows of ordinary words (AUTOMATIC1111's embeddings, pooled at the
 *   end-of-text token);
 * - `addedTokensSdxl`: as tokens added to both tokenizers (`<s0>`, `<s1>`…, ids from the
 *   vocabulary's size on, the rows appended to the tables), as cog-sdxl adds Replicate's trained
 *   tokens: the copy pools as transformers does for them, with no embedding support involved.
 */
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ClipTokenizer } from "../../src/engine/tokenizer/clip.js";
import { readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";

/** Words of one token each in CLIP's vocabulary, whose rows take the vectors in order. */
export const HAND_WORDS = ["zebra", "kite", "lamp", "river"] as const;

const TOKEN_TABLE = "text_model.embeddings.token_embedding.weight";
const ENCODERS = ["text_encoder", "text_encoder_2"] as const;

/** Copies a text encoder into `dir` with its token table [vocab, width] rewritten by `table`. */
async function writeEncoder(
  model: string,
  dir: string,
  component: string,
  table: (data: Float32Array, shape: number[]) => { data: Float32Array; shape: number[] },
  config: (c: Record<string, unknown>) => Record<string, unknown> = (c) => c,
): Promise<void> {
  mkdirSync(path.join(dir, component));
  const cfg = JSON.parse(readFileSync(path.join(model, component, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(path.join(dir, component, "config.json"), JSON.stringify(config(cfg)));
  const st = await readSafetensors(path.join(model, component, "model.safetensors"));
  const tensors = [];
  for (const t of st.tensors.values()) {
    const data = await readTensor(t);
    const out = t.name === TOKEN_TABLE ? table(data, [...t.shape]) : { data, shape: [...t.shape] };
    tensors.push({ name: t.name, dtype: "F32" as const, ...out });
  }
  await writeSafetensors(path.join(dir, component, "model.safetensors"), tensors);
}

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
    [ENCODERS[0], clipL, widths.l],
    [ENCODERS[1], clipG, widths.g],
  ] as const) {
    await writeEncoder(model, dir, component, (data, shape) => {
      for (let k = 0; k * width < vectors.length; k++) {
        data.set(vectors.subarray(k * width, (k + 1) * width), (rows[k] as number) * width);
      }
      return { data, shape };
    });
  }
  return dir;
}

/**
 * Writes the copy of `model` at `dir` with `<s0>`…`<s(n-1)>` added to both tokenizers as special
 * tokens (transformers gives them ids vocab_size + k, as cog-sdxl's add_special_tokens does) and
 * their vectors appended to both token tables (vocab_size grows by n). Returns `dir` and the ids.
 */
export async function addedTokensSdxl(
  model: string,
  dir: string,
  clipL: Float32Array,
  clipG: Float32Array,
  widths: { l: number; g: number },
): Promise<{ dir: string; ids: number[] }> {
  mkdirSync(dir);
  for (const entry of ["model_index.json", "scheduler", "unet", "vae"]) {
    symlinkSync(path.join(model, entry), path.join(dir, entry));
  }
  const n = clipL.length / widths.l;
  if (n !== clipG.length / widths.g || !Number.isInteger(n)) throw new Error("clipL and clipG must pair up");
  const names = Array.from({ length: n }, (_, k) => `<s${k}>`);
  let ids: number[] = [];
  for (const tok of ["tokenizer", "tokenizer_2"]) {
    mkdirSync(path.join(dir, tok));
    for (const file of ["vocab.json", "merges.txt", "tokenizer_config.json"]) {
      copyFileSync(path.join(model, tok, file), path.join(dir, tok, file));
    }
    const map = JSON.parse(readFileSync(path.join(model, tok, "special_tokens_map.json"), "utf8"));
    writeFileSync(
      path.join(dir, tok, "special_tokens_map.json"),
      JSON.stringify({ ...map, additional_special_tokens: names }),
    );
    ids = (await ClipTokenizer.fromFolder(path.join(dir, tok)))
      .encode(names.join(""), { padding: false })
      .inputIds.slice(1, -1);
  }
  for (const [component, vectors, width] of [
    [ENCODERS[0], clipL, widths.l],
    [ENCODERS[1], clipG, widths.g],
  ] as const) {
    let vocab = 0;
    await writeEncoder(
      model,
      dir,
      component,
      (data, shape) => {
        vocab = shape[0] as number;
        const grown = new Float32Array(data.length + vectors.length);
        grown.set(data);
        grown.set(vectors, data.length);
        return { data: grown, shape: [vocab + n, width] };
      },
      (c) => ({ ...c, vocab_size: (c["vocab_size"] as number) + n }),
    );
    if (ids.join() !== Array.from({ length: n }, (_, k) => vocab + k).join()) {
      throw new Error(`the added tokens got ids ${ids.join(", ")}, not ${vocab}…${vocab + n - 1}`);
    }
  }
  return { dir, ids };
}
