/**
 * A complete diffusers-format model folder with random weights, built from a preset's
 * published configs (presets/<model>/), so a bench can load it with loadPipeline() like a
 * downloaded checkpoint: model_index.json, scheduler/, tokenizer/, text_encoder/, unet/, vae/
 * (and SDXL's tokenizer_2/ and text_encoder_2/ where the preset has them).
 *
 * Presets carry no vocabulary, so tokenizer/ gets CLIP's byte-level alphabet without merges
 * (one token per character, as the tiny-random model has), padded with unreachable
 * placeholder tokens up to the text encoder's vocab_size. The special tokens land on the ids
 * CLIP gives them (49406, 49407 for SD 1.5), and the embedding table keeps its real size, so
 * memory and compute are those of the real model.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { ComponentName } from "../../src/engine/weights/model-folder.js";
import { type RandomComponent, writeRandomComponent } from "../../src/engine/weights/random-weights.js";

const COMPONENTS: readonly ComponentName[] = ["text_encoder", "text_encoder_2", "unet", "vae"];
/** Each text encoder's tokenizer folder. */
const TOKENIZERS: Partial<Record<ComponentName, string>> = { text_encoder: "tokenizer", text_encoder_2: "tokenizer_2" };
const BOS = "<|startoftext|>";
const EOS = "<|endoftext|>";

export interface RandomModelFolder {
  dir: string;
  components: Map<ComponentName, RandomComponent>;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
}

/** Writes `text` unless the file already holds it (keeps reruns from touching the cache). */
async function writeIfChanged(file: string, text: string): Promise<void> {
  const old = await readFile(file, "utf8").catch(() => undefined);
  if (old !== text) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
  }
}

/** CLIP's reversible byte → printable-character table (openai/CLIP simple_tokenizer.bytes_to_unicode). */
function byteCharacters(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.map((b) => String.fromCodePoint(b));
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(String.fromCodePoint(256 + extra++));
    }
  }
  return cs;
}

/** vocab.json of `size` tokens: 256 bytes, 256 word-final bytes, placeholders, then BOS and EOS. */
export function byteLevelVocab(size: number): Record<string, number> {
  const chars = byteCharacters();
  const minimum = 2 * chars.length + 2;
  if (size < minimum) throw new Error(`a byte-level CLIP vocabulary needs at least ${minimum} tokens, got ${size}`);
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const c of chars) vocab[c] = id++;
  for (const c of chars) vocab[`${c}</w>`] = id++;
  // Multi-character tokens with no merges leading to them: BPE never produces them.
  while (id < size - 2) vocab[`<bench-placeholder-${id}>`] = id++;
  vocab[BOS] = id++;
  vocab[EOS] = id++;
  return vocab;
}

/**
 * Writes (or reuses) `dir` as a `presetDir` model with random weights. The component files
 * are reused while the config and seed stay the same (writeRandomComponent's stamp), so
 * benches that use the same cache folder and seed share one copy.
 */
export async function ensureRandomModelFolder(
  presetDir: string,
  dir: string,
  seed: number,
): Promise<RandomModelFolder> {
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  const components = new Map<ComponentName, RandomComponent>();
  const present = COMPONENTS.filter((c) => existsSync(path.join(presetDir, c, "config.json")));
  for (const component of present) {
    const config = await readJson(path.join(presetDir, component, "config.json"));
    components.set(component, await writeRandomComponent(path.join(dir, component), component, config, { seed }));
  }

  const schedulerConfig = await readJson(path.join(presetDir, "scheduler", "scheduler_config.json"));
  await writeIfChanged(path.join(dir, "scheduler", "scheduler_config.json"), json(schedulerConfig));

  const tokenizers: string[] = [];
  for (const encoder of present.filter((c) => TOKENIZERS[c])) {
    const tokenizer = TOKENIZERS[encoder] as string;
    tokenizers.push(tokenizer);
    const vocabSize = (components.get(encoder) as RandomComponent).files.config["vocab_size"];
    if (typeof vocabSize !== "number") throw new Error(`${presetDir}/${encoder}/config.json has no vocab_size`);
    const tokenizerDir = path.join(dir, tokenizer);
    for (const name of ["tokenizer_config.json", "special_tokens_map.json"]) {
      await writeIfChanged(
        path.join(tokenizerDir, name),
        await readFile(path.join(presetDir, tokenizer, name), "utf8"),
      );
    }
    await writeIfChanged(path.join(tokenizerDir, "vocab.json"), JSON.stringify(byteLevelVocab(vocabSize)));
    await writeIfChanged(path.join(tokenizerDir, "merges.txt"), "#version: 0.2\n");
  }

  // Only the components written here: no safety checker or feature extractor.
  const index = await readJson(path.join(presetDir, "model_index.json"));
  const kept = Object.fromEntries(
    // Settings (`_class_name`, force_zeros_for_empty_prompt, …) stay; components only if written.
    Object.entries(index).filter(([k, v]) => !Array.isArray(v) || ["scheduler", ...tokenizers, ...present].includes(k)),
  );
  // model_index.json last: its presence marks a complete folder.
  await writeIfChanged(path.join(dir, "model_index.json"), json(kept));
  return { dir, components };
}
