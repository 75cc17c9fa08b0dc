/**
 * Which files of a diffusers repository the pipeline reads, chosen from the repository's
 * listing with the same rules the model-folder opener applies on disk (so a snapshot holding
 * only these files opens exactly as the whole repository would):
 *
 * - model_index.json, scheduler/scheduler_config.json, and the CLIP tokenizer's four files
 *   (and tokenizer_2's, for SDXL);
 * - for text_encoder, unet and vae (and SDXL's text_encoder_2; its refiner has only that
 *   encoder): config.json and one set of weights — the asked variant's
 *   sharded index (whose shards are added once it is read) or single safetensors file, else
 *   the other variant's, else a ready ONNX export (model.onnx and its external data).
 *
 * Never chosen: pickle checkpoints (.ckpt, .bin, .pt), Flax and TensorFlow weights, the other
 * variant where the asked one exists, safety_checker/ and feature_extractor/ (not used), images
 * and READMEs. That is what keeps a pull of SD 2.1 at ~5 GB instead of ~20.
 */
import { ModelError } from "../errors.js";
import {
  COMPONENT_LAYOUTS,
  PICKLE_EXTENSIONS,
  variantOrder,
  type WeightsVariant,
  weightFileNames,
} from "../weights/model-folder.js";

const TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];
/** Weight formats other than the one an ONNX component uses; never its external data. */
const OTHER_FORMATS = [".safetensors", ".msgpack", ".h5", ".index.json", ...PICKLE_EXTENSIONS];

export interface FilePlan {
  /** Files to fetch, repository paths. */
  files: string[];
  /** Sharded-weight indexes among `files`: their shards are only known once they are read. */
  indexes: string[];
}

/** Chooses the files; throws a ModelError naming what the repository lacks. */
export function planPipelineFiles(paths: Iterable<string>, variant: WeightsVariant, repo: string): FilePlan {
  const all = new Set(paths);
  const files: string[] = [];
  const indexes: string[] = [];
  const need = (p: string, why: string) => {
    if (!all.has(p)) {
      throw new ModelError(`${repo} has no ${p} (${why}); is it a diffusers-format Stable Diffusion repository?`);
    }
    files.push(p);
  };
  need("model_index.json", "every diffusers pipeline has one");
  need("scheduler/scheduler_config.json", "the scheduler's settings");
  const holds = (dir: string) => [...all].some((p) => p.startsWith(`${dir}/`));
  const second = holds("text_encoder_2");
  const first = !second || holds("text_encoder");
  const tokenizers = [...(first ? ["tokenizer"] : []), ...(second ? ["tokenizer_2"] : [])];
  for (const dir of tokenizers) {
    need(`${dir}/vocab.json`, "the CLIP tokenizer");
    need(`${dir}/merges.txt`, "the CLIP tokenizer");
    for (const name of TOKENIZER_FILES.slice(2)) if (all.has(`${dir}/${name}`)) files.push(`${dir}/${name}`);
  }

  for (const layout of COMPONENT_LAYOUTS) {
    if ((layout.name === "text_encoder" && !first) || (layout.name === "text_encoder_2" && !second)) continue;
    let chosen: string[] | undefined;
    for (const dir of layout.dirs) {
      chosen = componentFiles(all, dir, layout.weightsBase, variant, indexes);
      if (chosen) break;
    }
    if (!chosen) {
      const dir = layout.dirs[0] as string;
      const pickles = [...all].filter((p) => p.startsWith(`${dir}/`) && PICKLE_EXTENSIONS.some((e) => p.endsWith(e)));
      throw new ModelError(
        pickles.length > 0
          ? `${repo} has only PyTorch pickle weights for ${dir}/ (${pickles.join(", ")}), which sdserve does not ` +
              "read because loading them can run arbitrary code; choose a repository or revision with safetensors weights"
          : `${repo} has no weights for ${layout.dirs.map((d) => `${d}/`).join(" or ")} ` +
              `(looked for ${layout.weightsBase}[.fp16].safetensors, a sharded index, or model.onnx)`,
      );
    }
    files.push(...chosen);
  }
  return { files, indexes };
}

function componentFiles(
  all: Set<string>,
  dir: string,
  base: string,
  variant: WeightsVariant,
  indexes: string[],
): string[] | undefined {
  const config = `${dir}/config.json`;
  const withConfig = (p: string) => (all.has(config) ? [config, p] : [p]);
  const names = weightFileNames(base);
  for (const v of variantOrder(variant)) {
    const index = `${dir}/${names[v].index}`;
    if (all.has(index)) {
      indexes.push(index);
      return withConfig(index);
    }
    const single = `${dir}/${names[v].single}`;
    if (all.has(single)) return withConfig(single);
  }
  const onnx = `${dir}/model.onnx`;
  if (!all.has(onnx)) return undefined;
  // External data sits beside model.onnx under names the exporter chose (model.onnx_data, weights.pb).
  const data = [...all].filter(
    (p) =>
      p.startsWith(`${dir}/`) &&
      !p.slice(dir.length + 1).includes("/") &&
      p !== onnx &&
      p !== config &&
      !OTHER_FORMATS.some((e) => p.endsWith(e)) &&
      !p.endsWith(".json") &&
      !p.endsWith(".md"),
  );
  return [...withConfig(onnx), ...data.sort()];
}

/** The shard files a `*.safetensors.index*.json` names, as repository paths beside it. */
export function shardsOfIndex(indexPath: string, text: string): string[] {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(text) as { weight_map?: unknown }).weight_map;
  } catch (err) {
    throw new ModelError(`is not valid JSON (${(err as Error).message})`, { file: indexPath });
  }
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelError("must map tensor names to shard files", { file: indexPath, field: "weight_map" });
  }
  const dir = indexPath.slice(0, indexPath.lastIndexOf("/") + 1);
  const shards = new Set<string>();
  for (const shard of Object.values(weightMap)) {
    if (typeof shard !== "string" || shard.includes("/") || shard === "." || shard === ".." || shard === "") {
      throw new ModelError(`shard must be a file name in the same folder, got ${JSON.stringify(shard)}`, {
        file: indexPath,
        field: "weight_map",
      });
    }
    shards.add(`${dir}${shard}`);
  }
  return [...shards];
}
