/** `sdserve models list | pull | verify`: model weights in the Hugging Face cache. */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, hubSettings, readSettings, settingFlags, settingSource, settingsHelp } from "../config.js";
import {
  cachedModel,
  formatBytes,
  formatHubRef,
  type HubRef,
  type HubSettings,
  parseHubId,
  pullModel,
  verifyCachedModel,
} from "../engine/index.js";
import { listLoraFiles } from "../engine/lora-dir.js";
import { TINY_RANDOM } from "../engine/tiny-random.js";
import type { WeightsVariant } from "../engine/weights/model-folder.js";
import { readSafetensors } from "../engine/weights/safetensors.js";
import { detectFamily, FAMILY_NAMES, isCheckpointFile } from "../engine/weights/single-file.js";
import { CatalogError, type ModelSpec, modelCatalog } from "../model-catalog.js";
import { DownloadProgress } from "./download-progress.js";
import { UsageError } from "./generate.js";

export const MODELS_HELP = `Usage: sdserve models <command> [options]

Commands:
  list                      the models sdserve serve would serve, and whether their weights are
                            here (diffusers folders, single-file checkpoints and their family,
                            each model's config, VAE, LoRAs, embeddings and prompt syntax); then
                            the Stable Diffusion pipelines in the Hugging Face cache; with
                            --lora-dir / --embeddings-dir, the LoRAs and embeddings found there
  pull [<id>]               download a model's pipeline files into the Hugging Face cache (only what
                            sdserve reads; resumes an interrupted download; prints the folder). <id>
                            is a served model's name (owner/name, its weights) or a Hugging Face
                            model id (owner/name[@revision]); without it, every served model's weights
  verify <id>               re-hash the cached files; a corrupted one is removed, so that
                            the next pull downloads it again

Options of list:
  --lora-dir <folder>       list the LoRAs that <lora:NAME:SCALE> prompt tags can call there
  --embeddings-dir <folder> list the textual-inversion embeddings there (names, vectors, width)

A served model uses its own variant unless --variant / SDSERVE_VARIANT is given.

${settingsHelp("models")}`;

function hubRef(id: string | undefined, command: string): HubRef {
  if (!id) throw new UsageError(`sdserve models ${command} needs a model id, such as stabilityai/sd-turbo`);
  const ref = parseHubId(id);
  if (!ref) throw new UsageError(`"${id}" is not a Hugging Face model id (owner/name, or owner/name@revision)`);
  return ref;
}

export async function modelsCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...settingFlags("models"),
      "lora-dir": { type: "string" },
      "embeddings-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, id, ...extra] = positionals;
  if (values.help || command === undefined || command === "help") {
    process.stdout.write(MODELS_HELP);
    return 0;
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}" (see sdserve models --help)`);
  const { "lora-dir": loraDir, "embeddings-dir": embeddingsDir, ...settingValues } = values;
  if ((loraDir !== undefined || embeddingsDir !== undefined) && command !== "list") {
    throw new UsageError(`--${loraDir !== undefined ? "lora-dir" : "embeddings-dir"} belongs to sdserve models list`);
  }
  const v = readSettings("models", settingValues, env);
  const settings = hubSettings(v);
  // Only a variant asked for overrides a served model's own.
  const variant = settingSource("models", "variant", values, env) ? v.variant : undefined;
  let served: ModelSpec[];
  try {
    served = modelCatalog({ model: v.model, modelsFile: v.modelsFile, variant });
  } catch (err) {
    throw err instanceof CatalogError ? new ConfigError(err.message) : err;
  }
  if (command === "list") return listCommand(settings, served, { loraDir, embeddingsDir });
  if (command === "pull" && id === undefined) {
    const hubModels = served.filter((m) => parseHubId(m.weights));
    const hubRefiners = served.filter((m) => m.refiner !== undefined && parseHubId(m.refiner));
    if (hubModels.length === 0 && hubRefiners.length === 0)
      throw new UsageError("no served model has its weights on the Hugging Face Hub");
    for (const m of hubModels) {
      process.stderr.write(`${m.name}: ${m.weights}\n`);
      await pullCommand(parseHubId(m.weights) as HubRef, settings, m.variant);
    }
    // An SDXL model's refiner is loaded on its first refine: fetched now too, so that one does not wait.
    for (const m of hubRefiners) {
      process.stderr.write(`${m.name} (refiner): ${m.refiner}\n`);
      await pullCommand(parseHubId(m.refiner as string) as HubRef, settings, m.variant);
    }
    return 0;
  }
  if (command === "pull" || command === "verify") {
    const [ref, refVariant] = target(id, command, served, variant);
    return command === "pull" ? pullCommand(ref, settings, refVariant) : verifyCommand(ref, settings, refVariant);
  }
  throw new UsageError(`unknown models command "${command}" (see sdserve models --help)`);
}

/** A served model's name stands for its weights; anything else must be a hub id. */
function target(
  id: string | undefined,
  command: string,
  served: ModelSpec[],
  variant: WeightsVariant | undefined,
): [HubRef, WeightsVariant | undefined] {
  const model = served.find((m) => m.name === id);
  if (!model) return [hubRef(id, command), variant];
  const ref = parseHubId(model.weights);
  if (!ref) throw new UsageError(`${model.name} is served from ${model.weights}, not from the Hugging Face Hub`);
  return [ref, variant ?? model.variant];
}

async function pullCommand(ref: HubRef, settings: HubSettings, variant: WeightsVariant | undefined): Promise<number> {
  const progress = new DownloadProgress();
  const start = performance.now();
  const pulled = await pullModel(ref, { settings, variant, onProgress: progress.handle });
  const seconds = (performance.now() - start) / 1000;
  process.stderr.write(
    pulled.downloaded.length === 0
      ? `${formatHubRef(ref)}: nothing to download, all ${pulled.files.length} files are in the cache\n`
      : `${formatHubRef(ref)}: downloaded ${pulled.downloaded.length} file(s), ${formatBytes(pulled.downloadedBytes)} in ${seconds.toFixed(1)}s\n`,
  );
  process.stdout.write(`${pulled.dir}\n`);
  return 0;
}

async function verifyCommand(ref: HubRef, settings: HubSettings, variant: WeightsVariant | undefined): Promise<number> {
  const progress = new DownloadProgress();
  const result = await verifyCachedModel(ref, {
    settings,
    variant,
    onProgress: ({ path: file, size, done }) =>
      progress.handle(
        done < size ? { type: "progress", path: file, size, done } : { type: "file-done", path: file, size },
      ),
  });
  for (const f of result.files) {
    const status = f.status === "ok" ? "ok" : f.status === "corrupt" ? "CORRUPT, removed" : "not checked";
    process.stdout.write(`${status.padEnd(16)} ${f.path}${f.detail ? `  (${f.detail})` : ""}\n`);
  }
  const bad = result.files.filter((f) => f.status === "corrupt").length;
  if (bad > 0) {
    process.stderr.write(
      `${formatHubRef(ref)}: ${bad} corrupted file(s) removed; run "sdserve models pull ${formatHubRef(ref)}" to download them again\n`,
    );
    return 1;
  }
  process.stderr.write(
    `${formatHubRef(ref)} at ${result.commit.slice(0, 12)}: all ${result.files.length} files match their hashes\n`,
  );
  return 0;
}

interface CachedPipeline {
  repo: string;
  commit: string;
  refs: string[];
  bytes: number;
  complete: boolean;
  fp16: boolean;
}

/** The diffusers pipelines (snapshots with a model_index.json) in the cache. */
export async function cachedPipelines(settings: HubSettings): Promise<CachedPipeline[]> {
  const out: CachedPipeline[] = [];
  const folders = await readdir(settings.cacheDir).catch(() => [] as string[]);
  for (const folder of folders.sort()) {
    const m = /^models--([^-].*?)--(.+)$/.exec(folder);
    if (!m) continue;
    const repo = `${m[1]}/${m[2]}`;
    const dir = path.join(settings.cacheDir, folder);
    const refs = new Map<string, string[]>();
    const refDir = path.join(dir, "refs");
    for (const name of await readdir(refDir, { recursive: true }).catch(() => [] as string[])) {
      const commit = (await readFile(path.join(refDir, name), "utf8").catch(() => "")).trim();
      if (commit) refs.set(commit, [...(refs.get(commit) ?? []), name.split(path.sep).join("/")]);
    }
    for (const commit of (await readdir(path.join(dir, "snapshots")).catch(() => [] as string[])).sort()) {
      const snapshot = path.join(dir, "snapshots", commit);
      if (!(await stat(path.join(snapshot, "model_index.json")).catch(() => undefined))) continue;
      const model = await cachedModel({ repo, revision: commit }, { settings }).catch(() => undefined);
      let bytes = 0;
      for (const f of model?.files ?? [])
        bytes += (await stat(path.join(snapshot, f)).catch(() => undefined))?.size ?? 0;
      out.push({
        repo,
        commit,
        refs: refs.get(commit) ?? [],
        bytes,
        complete: model !== undefined,
        fp16: model?.files.some((f) => f.includes(".fp16.")) ?? false,
      });
    }
  }
  return out;
}

async function weightsState(m: ModelSpec, settings: HubSettings): Promise<string> {
  if (m.weights === TINY_RANDOM) return "made on the spot";
  if (isCheckpointFile(m.weights)) return singleFileState(m.weights);
  const ref = parseHubId(m.weights);
  if (ref && !(await stat(m.weights).catch(() => undefined))?.isDirectory()) {
    const cached = await cachedModel(ref, { settings, variant: m.variant }).catch(() => undefined);
    return cached ? "in the cache" : 'not downloaded yet: "sdserve models pull" fetches it';
  }
  return (await stat(path.join(m.weights, "model_index.json")).catch(() => undefined))
    ? "local folder"
    : "missing: no diffusers folder there";
}

/** A single-file checkpoint: its family from its keys (the header only is read), or why it cannot be used. */
async function singleFileState(file: string): Promise<string> {
  try {
    const st = await readSafetensors(file);
    const family = FAMILY_NAMES[detectFamily(file, st.tensors)];
    return `single-file checkpoint, ${family}, ${formatBytes((await stat(file)).size)}`;
  } catch (err) {
    return `unusable: ${(err as Error).message}`;
  }
}

/** The models file's engine fields of a served model, one line each. */
async function engineLines(m: ModelSpec): Promise<string[]> {
  const e = m.engine;
  const lines: string[] = [];
  if (e.config) lines.push(`config: ${e.config}`);
  if (e.vae) lines.push(`vae: ${e.vae}`);
  for (const l of e.loras ?? []) lines.push(`LoRA: ${l.path} at ${l.scale}`);
  if (e.embeddingsDir) lines.push(`embeddings: ${await embeddingsSummary(e.embeddingsDir)}`);
  if (e.promptSyntax || e.clipSkip) {
    lines.push(`prompt syntax: ${e.promptSyntax ?? "diffusers"}${e.clipSkip ? `, clip skip ${e.clipSkip}` : ""}`);
  }
  if (e.loraDir) lines.push(`LoRA folder: ${e.loraDir} (${await loraSummary(e.loraDir)})`);
  if (e.replicateWeights === false) lines.push("replicate_weights: off (no LoRAs per request)");
  return lines;
}

async function loraSummary(dir: string): Promise<string> {
  const found = await listLoraFiles(dir).catch((err: Error) => err);
  if (found instanceof Error) return found.message;
  return found.length === 0 ? "no .safetensors files" : found.map((f) => f.name).join(", ");
}

async function embeddingsSummary(dir: string): Promise<string> {
  const found = await embeddingFiles(dir);
  if (typeof found === "string") return found;
  const usable = found.filter((f) => / vector\(s\) of width /.test(f)).map((f) => f.split("  ")[0]);
  const bad = found.length - usable.length;
  return `${dir}: ${usable.length === 0 ? "none" : usable.join(", ")}${bad > 0 ? ` (${bad} unusable file(s))` : ""}`;
}

/** Each `.safetensors` file of an embeddings folder: its names, vectors and width, read from the header. */
async function embeddingFiles(dir: string): Promise<string[] | string> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => err);
  if (names instanceof Error) return `${dir}: ${names.code === "ENOENT" ? "no such folder" : names.message}`;
  const out: string[] = [];
  for (const name of names.filter((n) => n.toLowerCase().endsWith(".safetensors")).sort()) {
    const stem = name.slice(0, -".safetensors".length);
    try {
      const st = await readSafetensors(path.join(dir, name));
      const keys = [...st.tensors.keys()];
      const [l, g] = [st.tensors.get("clip_l"), st.tensors.get("clip_g")];
      if (l && g) {
        // SDXL's two-encoder form.
        out.push(
          `${stem}  ${g.shape[0]} vector(s) of width ${l.shape.at(-1)} (clip_l) + ${g.shape.at(-1)} (clip_g), SDXL`,
        );
        continue;
      }
      const key = keys.includes("emb_params") ? "emb_params" : keys.length === 1 ? (keys[0] as string) : undefined;
      const t = key === undefined ? undefined : st.tensors.get(key);
      if (!t) {
        out.push(`${stem}  not an embedding (${keys.length} tensors)`);
        continue;
      }
      const [count, width] = t.shape.length === 1 ? [1, t.shape[0]] : t.shape;
      const called = key === "emb_params" || key === stem ? stem : `${stem} / ${key}`;
      out.push(`${called}  ${count} vector(s) of width ${width}`);
    } catch (err) {
      out.push(`${stem}  unusable: ${(err as Error).message}`);
    }
  }
  return out;
}

async function listCommand(
  settings: HubSettings,
  served: ModelSpec[],
  folders: { loraDir?: string; embeddingsDir?: string },
): Promise<number> {
  process.stdout.write("Served models (sdserve serve with the same --models / --model):\n");
  for (const m of served) {
    const weights = m.variant === "fp16" ? `${m.weights} (fp16)` : m.weights;
    process.stdout.write(
      `  ${m.name.padEnd(36)} ${m.version.slice(0, 12)}  ${weights}  ${await weightsState(m, settings)}\n`,
    );
    const lines = await engineLines(m);
    if (m.refiner !== undefined) {
      lines.unshift(`refiner: ${m.refiner}  ${await weightsState({ ...m, weights: m.refiner }, settings)}`);
    }
    for (const line of lines) process.stdout.write(`      ${line}\n`);
  }
  if (folders.loraDir !== undefined) {
    process.stdout.write(`LoRAs in ${folders.loraDir} (<lora:NAME:SCALE>):\n`);
    const found = await listLoraFiles(folders.loraDir).catch((err: Error) => err);
    if (found instanceof Error) process.stdout.write(`  ${found.message}\n`);
    else if (found.length === 0) process.stdout.write("  none\n");
    else
      for (const f of found) process.stdout.write(`  ${f.name.padEnd(36)} ${path.relative(folders.loraDir, f.path)}\n`);
  }
  if (folders.embeddingsDir !== undefined) {
    process.stdout.write(`Embeddings in ${folders.embeddingsDir} (called by name in prompts):\n`);
    const found = await embeddingFiles(folders.embeddingsDir);
    if (typeof found === "string") process.stdout.write(`  ${found}\n`);
    else if (found.length === 0) process.stdout.write("  none\n");
    else for (const line of found) process.stdout.write(`  ${line}\n`);
  }
  const pipelines = await cachedPipelines(settings);
  process.stdout.write(`Stable Diffusion pipelines in the Hugging Face cache (${settings.cacheDir}):\n`);
  if (pipelines.length === 0) process.stdout.write("  none\n");
  for (const p of pipelines) {
    const at = p.refs.length > 0 ? `${p.refs.join(",")} ${p.commit.slice(0, 12)}` : p.commit.slice(0, 12);
    const state = p.complete ? `ready${p.fp16 ? " (fp16)" : ""}` : "incomplete: sdserve models pull it again";
    process.stdout.write(`  ${p.repo.padEnd(44)} ${at.padEnd(20)} ${formatBytes(p.bytes).padStart(9)}  ${state}\n`);
  }
  return 0;
}
