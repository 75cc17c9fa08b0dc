/**
 * Opens a diffusers-format model folder (what `save_pretrained` writes and the Hub serves):
 * `model_index.json`, one sub-folder per component with `config.json` and safetensors
 * weights, `tokenizer/` and `scheduler/`. Only headers are read; tensor bytes stay on disk.
 *
 * Also accepts folders of ready ONNX exports (diffusers' old ONNX layout and Optimum's),
 * where a component is `<component>/model.onnx` and the VAE decoder is `vae_decoder/`.
 *
 * Paths are used as given, never resolved through links, so Hugging Face cache snapshots
 * (files that are symlinks into `../../blobs/`) work as they are.
 */
import { lstat, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { ModelError } from "../errors.js";
import { readJsonObject } from "../json.js";
import { readSafetensors, type TensorInfo } from "./safetensors.js";

export type ComponentName = "text_encoder" | "text_encoder_2" | "unet" | "vae";
export type WeightsVariant = "fp32" | "fp16";

export interface ComponentFiles {
  name: ComponentName;
  dir: string;
  /**
   * The component's config.json. An ONNX component may lack it (diffusers' old ONNX exports
   * have none); then `config` is `{}` and this is where the file would be.
   */
  configPath: string;
  config: Record<string, unknown>;
  /** Safetensors files the tensors come from; empty for an ONNX component. */
  weightFiles: string[];
  tensors: Map<string, TensorInfo>;
  /** Set when the component is a ready ONNX export instead of safetensors weights. */
  onnxPath?: string;
  /** Which weight files were used; undefined for an ONNX component. */
  variant?: WeightsVariant;
}

export interface ModelFolder {
  dir: string;
  modelIndex: Record<string, unknown>;
  /**
   * The pipeline's first text encoder: `text_encoder/`, or, in a pipeline whose only encoder is
   * `text_encoder_2/` (SDXL's refiner), that one (diffusers' list of encoders, in order).
   */
  textEncoder: ComponentFiles;
  /** SDXL's second text encoder (CLIPTextModelWithProjection) when there are two. */
  textEncoder2?: ComponentFiles;
  unet: ComponentFiles;
  vae: ComponentFiles;
  /** The tokenizer of `textEncoder`. */
  tokenizerDir: string;
  /** The tokenizer of `textEncoder2` (`tokenizer_2/`). */
  tokenizer2Dir?: string;
  /** Where vocab.json and merges.txt are, when not in `tokenizerDir` (a single-file checkpoint on a preset). */
  tokenizerVocabDir?: string;
  schedulerConfig: Record<string, unknown>;
  schedulerConfigPath: string;
  /**
   * "fp16" when any component's weights came from fp16 variant files, else "fp32". The
   * components can differ (fp16 asked, one component has only fp32); see each `variant`.
   * The tensors' own dtypes are the authority on what the bytes hold.
   */
  variant: WeightsVariant;
  /** Set when the weights are one original-layout checkpoint file (single-file.ts) rather than a folder. */
  checkpoint?: { file: string; family: "sd1" | "sd2" | "sdxl" | "sdxl-refiner" };
}

export interface OpenModelFolderOptions {
  /** Prefer `*.fp16.safetensors` files; falls back to fp32 where a component has none. */
  variant?: WeightsVariant;
}

export interface ComponentLayout {
  name: ComponentName;
  /** Folders to look in, in order; the later ones are ONNX-export names. */
  dirs: string[];
  /** transformers and diffusers name their weight files differently. */
  weightsBase: string;
}

export const COMPONENT_LAYOUTS: readonly ComponentLayout[] = [
  { name: "text_encoder", dirs: ["text_encoder"], weightsBase: "model" },
  { name: "unet", dirs: ["unet"], weightsBase: "diffusion_pytorch_model" },
  { name: "vae", dirs: ["vae", "vae_decoder"], weightsBase: "diffusion_pytorch_model" },
  { name: "text_encoder_2", dirs: ["text_encoder_2"], weightsBase: "model" },
];

/** Extensions of PyTorch pickle checkpoints, which can run code when loaded. */
export const PICKLE_EXTENSIONS = [".bin", ".ckpt", ".pt", ".pth"];

export async function openModelFolder(dir: string, opts: OpenModelFolderOptions = {}): Promise<ModelFolder> {
  const dirState = await pathState(dir);
  if (dirState !== "dir") {
    throw new ModelError(
      dirState === "missing" || dirState === "broken-link" ? "model folder not found" : "is not a folder",
      { file: dir },
    );
  }
  const modelIndexPath = path.join(dir, "model_index.json");
  const modelIndex = await readFolderJson(
    modelIndexPath,
    "every diffusers model folder has one; is this the folder that holds unet/, vae/ and text_encoder/?",
  );

  const want = opts.variant ?? "fp32";
  // SDXL names a second encoder; its refiner names only that one ("text_encoder": [null, null]).
  const second = names(modelIndex, "text_encoder_2");
  const first = !second || names(modelIndex, "text_encoder");
  const encoders = [
    ...(first ? [{ layout: COMPONENT_LAYOUTS[0]!, tokenizer: "tokenizer" }] : []),
    ...(second ? [{ layout: COMPONENT_LAYOUTS[3]!, tokenizer: "tokenizer_2" }] : []),
  ];
  // One after another, so that of several problems the same one is always reported.
  const textEncoders: ComponentFiles[] = [];
  for (const e of encoders) textEncoders.push(await openComponent(dir, e.layout, want));
  const unet = await openComponent(dir, COMPONENT_LAYOUTS[1]!, want);
  const vae = await openComponent(dir, COMPONENT_LAYOUTS[2]!, want);

  const tokenizerDirs = encoders.map((e) => path.join(dir, e.tokenizer));
  for (const [i, e] of encoders.entries()) {
    for (const name of ["vocab.json", "merges.txt"]) {
      await requireFile(
        path.join(tokenizerDirs[i]!, name),
        `the CLIP tokenizer needs ${e.tokenizer}/vocab.json and merges.txt`,
      );
    }
  }
  const [textEncoder, textEncoder2] = textEncoders as [ComponentFiles, ComponentFiles | undefined];
  const [tokenizerDir, tokenizer2Dir] = tokenizerDirs as [string, string | undefined];

  const schedulerConfigPath = path.join(dir, "scheduler", "scheduler_config.json");
  const schedulerConfig = await readFolderJson(schedulerConfigPath);

  const variant = [...textEncoders, unet, vae].some((c) => c.variant === "fp16") ? "fp16" : "fp32";
  return {
    dir,
    modelIndex,
    textEncoder,
    ...(textEncoder2 ? { textEncoder2 } : {}),
    unet,
    vae,
    tokenizerDir,
    ...(tokenizer2Dir ? { tokenizer2Dir } : {}),
    schedulerConfig,
    schedulerConfigPath,
    variant,
  };
}

/** model_index.json names a component as [library, class]; [null, null] or absence: none. */
function names(modelIndex: Record<string, unknown>, component: string): boolean {
  const entry = modelIndex[component];
  return Array.isArray(entry) && entry.some((v) => v !== null);
}

async function openComponent(root: string, layout: ComponentLayout, want: WeightsVariant): Promise<ComponentFiles> {
  let firstEmpty: string | undefined;
  for (const sub of layout.dirs) {
    const dir = path.join(root, sub);
    if ((await pathState(dir)) !== "dir") continue;
    // A `vae/` holding no weights may sit beside an ONNX `vae_decoder/`; a broken one is an error.
    const found = await openComponentDir(dir, layout, want);
    if (found) return found;
    firstEmpty ??= dir;
  }
  if (firstEmpty) throw await missingWeightsError(firstEmpty, layout.weightsBase);
  const expected = layout.dirs.map((d) => `${d}/`).join(" or ");
  throw new ModelError(`component folder missing (expected ${expected} with config.json and weights)`, {
    file: path.join(root, layout.dirs[0]!),
  });
}

/**
 * One component saved on its own (a folder with config.json and diffusers' weight files, as
 * `AutoencoderTiny.save_pretrained` writes it, e.g. madebyollin/taesd), to use in place of the
 * model's own.
 */
export async function openComponentFolder(
  dir: string,
  name: ComponentName,
  want: WeightsVariant = "fp32",
): Promise<ComponentFiles> {
  const layout = COMPONENT_LAYOUTS.find((l) => l.name === name) as ComponentLayout;
  const state = await pathState(dir);
  if (state !== "dir") {
    throw new ModelError(state === "missing" || state === "broken-link" ? "folder not found" : "is not a folder", {
      file: dir,
    });
  }
  const found = await openComponentDir(dir, layout, want);
  if (!found) throw await missingWeightsError(dir, layout.weightsBase);
  return found;
}

/** A component's safetensors file names, as diffusers names them for each variant. */
export function weightFileNames(base: string): Record<WeightsVariant, { index: string; single: string }> {
  return {
    fp32: { index: `${base}.safetensors.index.json`, single: `${base}.safetensors` },
    fp16: { index: `${base}.safetensors.index.fp16.json`, single: `${base}.fp16.safetensors` },
  };
}

/** The variant asked for first, the other as a fallback. */
export function variantOrder(want: WeightsVariant): WeightsVariant[] {
  return want === "fp16" ? ["fp16", "fp32"] : ["fp32", "fp16"];
}

/** Undefined when the folder holds neither safetensors weights nor model.onnx. */
async function openComponentDir(
  dir: string,
  layout: ComponentLayout,
  want: WeightsVariant,
): Promise<ComponentFiles | undefined> {
  const candidates = weightFileNames(layout.weightsBase);
  const configPath = path.join(dir, "config.json");

  for (const variant of variantOrder(want)) {
    const { index, single } = candidates[variant];
    // diffusers checks for an index first, so a sharded set wins over a stray single file.
    for (const [name, sharded] of [
      [index, true],
      [single, false],
    ] as const) {
      const file = path.join(dir, name);
      if (!(await isUsableFile(file))) continue;
      const config = await readFolderJson(configPath);
      const { weightFiles, tensors } = sharded ? await readShardedSet(file) : await readSingle(file);
      return { name: layout.name, dir, configPath, config, weightFiles, tensors, variant };
    }
  }

  const onnxPath = path.join(dir, "model.onnx");
  if (await isUsableFile(onnxPath)) {
    const config = (await pathState(configPath)) === "missing" ? {} : await readFolderJson(configPath);
    return { name: layout.name, dir, configPath, config, weightFiles: [], tensors: new Map(), onnxPath };
  }
  return undefined;
}

async function readSingle(file: string): Promise<{ weightFiles: string[]; tensors: Map<string, TensorInfo> }> {
  const st = await readSafetensors(file);
  return { weightFiles: [file], tensors: st.tensors };
}

/** A `*.safetensors.index.json` maps every tensor to the shard file holding it. */
async function readShardedSet(indexPath: string): Promise<{ weightFiles: string[]; tensors: Map<string, TensorInfo> }> {
  const index = await readFolderJson(indexPath);
  const weightMap = index["weight_map"];
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelError("must be an object mapping tensor names to shard files", {
      file: indexPath,
      field: "weight_map",
    });
  }
  const dir = path.dirname(indexPath);
  const shardNames: string[] = [];
  for (const [tensor, shard] of Object.entries(weightMap)) {
    // Shards live beside the index; anything else could make a downloaded model read arbitrary files.
    if (typeof shard !== "string" || shard !== path.basename(shard) || shard === "." || shard === "..") {
      throw new ModelError(`shard must be a file name in the same folder, got ${JSON.stringify(shard)}`, {
        file: indexPath,
        field: `weight_map.${tensor}`,
      });
    }
    if (!shardNames.includes(shard)) shardNames.push(shard);
  }
  if (shardNames.length === 0) {
    throw new ModelError("lists no tensors", { file: indexPath, field: "weight_map" });
  }

  const weightFiles = shardNames.map((s) => path.join(dir, s));
  const tensors = new Map<string, TensorInfo>();
  for (const file of weightFiles) {
    if (!(await isUsableFile(file))) {
      throw new ModelError(`shard listed in ${path.basename(indexPath)} is missing (incomplete download?)`, { file });
    }
    const st = await readSafetensors(file);
    for (const [name, info] of st.tensors) {
      const seen = tensors.get(name);
      if (seen) {
        throw new ModelError(`tensor is in two weight files: ${seen.file} and ${file}`, { file, field: name });
      }
      tensors.set(name, info);
    }
  }
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, string>)) {
    const info = tensors.get(tensor);
    if (!info || path.basename(info.file) !== shard) {
      throw new ModelError(
        info
          ? `index says the tensor is in ${shard}, but it is in ${path.basename(info.file)}`
          : `tensor is not in ${shard}`,
        { file: indexPath, field: `weight_map.${tensor}` },
      );
    }
  }
  return { weightFiles, tensors };
}

async function missingWeightsError(dir: string, weightsBase: string): Promise<ModelError> {
  const fp32Name = `${weightsBase}.safetensors`;
  const fp16Name = `${weightsBase}.fp16.safetensors`;
  let names: string[] = [];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    // An unreadable folder gets the generic message below.
  }
  const pickles = names.filter((n) => PICKLE_EXTENSIONS.some((ext) => n.endsWith(ext)));
  if (pickles.length > 0) {
    return new ModelError(
      `has only PyTorch pickle weights (${pickles.join(", ")}), which sdserve does not read because loading ` +
        `them can run arbitrary code. Use the model's safetensors files instead (most Hub models have them), ` +
        `or convert once with diffusers: pipe.save_pretrained(folder, safe_serialization=True)`,
      { file: path.join(dir, pickles[0]!) },
    );
  }
  const others = names.filter((n) => n.endsWith(".safetensors") || n.endsWith(".safetensors.index.json"));
  const found = others.length > 0 ? `; found ${others.join(", ")}, which are not named as diffusers expects` : "";
  return new ModelError(
    `file missing, and no other weights either (looked for ${fp16Name}, a sharded ` +
      `${weightsBase}.safetensors.index.json, and model.onnx)${found}`,
    { file: path.join(dir, fp32Name) },
  );
}

type PathState = "file" | "dir" | "other" | "missing" | "broken-link";

/** Follows links, as the loaders do; a dangling link is told apart because it means an incomplete download. */
async function pathState(p: string): Promise<PathState> {
  try {
    const st = await stat(p);
    return st.isFile() ? "file" : st.isDirectory() ? "dir" : "other";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" && (err as NodeJS.ErrnoException).code !== "ENOTDIR") {
      throw new ModelError(`cannot be read: ${(err as Error).message}`, { file: p });
    }
    try {
      await lstat(p);
      return "broken-link";
    } catch {
      return "missing";
    }
  }
}

/** True for a readable regular file; a dangling link is an error rather than "absent", so it is not silently skipped. */
async function isUsableFile(p: string): Promise<boolean> {
  const state = await pathState(p);
  if (state === "broken-link") {
    throw new ModelError("is a link to a file that does not exist (incomplete download?)", { file: p });
  }
  return state === "file";
}

async function requireFile(p: string, hint: string): Promise<void> {
  const state = await pathState(p);
  if (state === "file") return;
  const what =
    state === "broken-link"
      ? "is a link to a file that does not exist (incomplete download?)"
      : state === "missing"
        ? "file missing"
        : "is not a regular file";
  throw new ModelError(`${what}; ${hint}`, { file: p });
}

async function readFolderJson(p: string, hint?: string): Promise<Record<string, unknown>> {
  await requireFile(p, hint ?? "a diffusers model folder has one here");
  return readJsonObject(p);
}
