/**
 * onnxruntime-node sessions: one per network, created once per loaded model and reused.
 * Graphs built here are passed as bytes; their weights stay in the safetensors files and are
 * found through onnxruntime's "external initializers folder" setting.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { ModelError } from "./errors.js";
import { optimizeInChild } from "./optimize-process.js";
import { type CacheKeyInputs, DATA_FILE, OptimizedModelCache } from "./optimized-cache.js";

export type ExecutionProvider = "cpu" | "cuda";

export interface RuntimeOptions {
  /** Execution provider (default "cpu"). "cuda" fails clearly when CUDA is not installed. */
  provider?: ExecutionProvider;
  /** Intra-op threads; 0 or undefined lets onnxruntime choose (one per physical core). */
  threads?: number;
  /** CUDA device index. */
  deviceId?: number;
  /** Called with one line per notable event (which provider each network runs on). */
  log?: (line: string) => void;
  /**
   * Write onnxruntime's profile (Chrome trace JSON: session initialisation and every kernel's
   * time) to a file named from this prefix when `NetworkSession.endProfiling()` is called.
   * For bench/profile; costs time on every run.
   */
  profilePrefix?: string;
  /**
   * Folder where onnxruntime's optimised form of each big network is kept, so the next load of
   * the same weights on this machine skips graph optimisation (optimized-cache.ts). false turns
   * it off, as does leaving it out (the caller owns its folders: sdserve's settings give
   * `optimized/` in its cache, SDSERVE_OPTIMIZED_CACHE).
   * CPU only; an entry takes about 1.3× the network's fp32 weights on disk.
   */
  optimizedCache?: string | false;
  /** Networks with fewer bytes of weights than this are optimised at every load (default 64 MiB). */
  optimizedCacheMinBytes?: number;
}

/** A graph's weights: the safetensors files (real paths) and the folder its locations are relative to. */
export interface ExternalWeights {
  dir: string;
  files: readonly string[];
  /** The weights' size as float32 (what fp16 files take once the graph has cast them). */
  fp32Bytes: number;
}

export type Feeds = Record<string, ort.Tensor>;

export class NetworkSession {
  private constructor(
    readonly name: string,
    readonly provider: ExecutionProvider,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(
    name: string,
    model: Uint8Array | string,
    external: ExternalWeights | undefined,
    opts: RuntimeOptions = {},
  ): Promise<NetworkSession> {
    const provider = opts.provider ?? "cpu";
    if (provider === "cuda") assertCudaAvailable();
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: provider === "cuda" ? [{ name: "cuda", deviceId: opts.deviceId ?? 0 }] : ["cpu"],
      graphOptimizationLevel: "all",
      intraOpNumThreads: opts.threads && opts.threads > 0 ? opts.threads : 0,
      interOpNumThreads: 1,
      executionMode: "sequential",
    };
    if (provider === "cpu") {
      // The memory pattern (one block per run for all activations, planned from the first run)
      // is taken from the arena while the arena still holds the first run's blocks: two SD 2.1
      // VAE decodes at 768² peaked at 5.8 GiB with it, 3.8 GiB without, and the second ran 17%
      // slower on the pattern's fresh pages. The arena alone reuses freed activations as well:
      // the UNet and the text encoder run as fast without it (bench/profile).
      options.enableMemPattern = false;
    }
    if (opts.profilePrefix) {
      options.enableProfiling = true;
      options.profileFilePrefix = opts.profilePrefix;
    }
    if (typeof model !== "string" && external && provider === "cpu") {
      const cached = await createFromCache(name, model, external, options, opts);
      if (cached) return new NetworkSession(name, provider, cached);
    }
    if (external) {
      options.extra = { session: { model_external_initializers_file_folder_path: external.dir } };
    }
    const session = await createSession(name, model, options, provider);
    opts.log?.(`${name}: running on the ${provider.toUpperCase()} execution provider`);
    return new NetworkSession(name, provider, session);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /** The element type of an input ("float32", "int64", …), or undefined if unknown. */
  inputType(name: string): string | undefined {
    const meta = this.session.inputMetadata.find((m) => m.name === name);
    return meta?.isTensor ? meta.type : undefined;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  async run(feeds: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    return (await this.session.run(feeds, outputs ?? this.session.outputNames)) as Record<string, ort.Tensor>;
  }

  /**
   * Stops profiling (see RuntimeOptions.profilePrefix) and writes the profile, as
   * `<prefix>_<date>_<time>.json` (onnxruntime-node does not return the name).
   */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

async function createSession(
  name: string,
  model: Uint8Array | string,
  options: ort.InferenceSession.SessionOptions,
  provider: ExecutionProvider,
): Promise<ort.InferenceSession> {
  try {
    return typeof model === "string"
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  } catch (err) {
    let msg = errorText(err);
    if (provider === "cuda") msg += `; ${CUDA_HINT}`;
    throw new ModelError(`onnxruntime could not create the ${name} session (${provider}): ${msg}`, {
      file: typeof model === "string" ? model : undefined,
    });
  }
}

const DEFAULT_CACHE_MIN_BYTES = 64 * 2 ** 20;

/**
 * A CPU session through the optimised-model cache: from a saved entry when there is one, else
 * from a new entry, optimised and saved by a child process (one process at a time makes an
 * entry; the others wait for it). Undefined when the cache is off, the network small, or the
 * entry could not be made: the caller then creates the session from the graph in this process.
 */
async function createFromCache(
  name: string,
  graph: Uint8Array,
  external: ExternalWeights,
  options: ort.InferenceSession.SessionOptions,
  opts: RuntimeOptions,
): Promise<ort.InferenceSession | undefined> {
  const root = opts.optimizedCache;
  if (root === undefined || root === false || opts.profilePrefix) return undefined;
  if (external.fp32Bytes < (opts.optimizedCacheMinBytes ?? DEFAULT_CACHE_MIN_BYTES)) return undefined;
  const cache = new OptimizedModelCache(root);
  const inputs = {
    network: name,
    graph,
    weightFiles: external.files,
    runtimeVersion: ort.env.versions.common,
    settings: JSON.stringify({ level: options.graphOptimizationLevel, memPattern: options.enableMemPattern }),
  };
  const log = opts.log ?? (() => {});
  const fromEntry = async (entry: string, how: string): Promise<ort.InferenceSession | undefined> => {
    try {
      const session = await ort.InferenceSession.create(entry, options);
      log(`${name}: running on the CPU execution provider (optimised model ${how} ${path.dirname(entry)})`);
      return session;
    } catch (err) {
      // A damaged entry: say so, and make it again.
      cache.remove(inputs);
      log(`${name}: the optimised model in ${path.dirname(entry)} could not be loaded (${errorText(err)})`);
      return undefined;
    }
  };

  const saved = cache.find(inputs);
  const session = saved && (await fromEntry(saved, "from"));
  if (session) return session;

  let unlock: () => void;
  try {
    unlock = await cache.lock(inputs, (holder) =>
      log(`${name}: waiting for ${holder} to save the optimised model it is making`),
    );
  } catch (err) {
    log(`${name}: the optimised model will not be saved: ${errorText(err)}`);
    return undefined;
  }
  try {
    // Made by another process while this one waited?
    const ready = cache.find(inputs);
    if (ready) return await fromEntry(ready, "from");
    return await makeEntry(name, graph, external, options, cache, inputs, log, fromEntry);
  } finally {
    unlock();
  }
}

/** Optimises the graph in a child process (optimize-process.ts says why) and saves it as a new entry. */
async function makeEntry(
  name: string,
  graph: Uint8Array,
  external: ExternalWeights,
  options: ort.InferenceSession.SessionOptions,
  cache: OptimizedModelCache,
  inputs: CacheKeyInputs,
  log: (line: string) => void,
  fromEntry: (entry: string, how: string) => Promise<ort.InferenceSession | undefined>,
): Promise<ort.InferenceSession | undefined> {
  let pending: ReturnType<OptimizedModelCache["begin"]>;
  try {
    // The saved weights are float32, plus the MatMul weights packed again: about 1.3× in all.
    pending = cache.begin(inputs, external.fp32Bytes * 1.4);
  } catch (err) {
    pending = errorText(err);
  }
  if (typeof pending === "string") {
    log(`${name}: the optimised model will not be saved: ${pending}`);
    return undefined;
  }
  const graphPath = path.join(path.dirname(pending.modelPath), "graph.onnx");
  let how: string;
  try {
    writeFileSync(graphPath, graph);
    await optimizeInChild({
      graphPath,
      externalDir: external.dir,
      outputPath: pending.modelPath,
      dataFile: DATA_FILE,
      sessionOptions: options,
    });
    rmSync(graphPath);
    if (!existsSync(pending.modelPath) || !existsSync(path.join(path.dirname(pending.modelPath), DATA_FILE))) {
      throw new Error("the optimising process ended without writing the model");
    }
    how = pending.commit() ? "saved in" : "already saved by another process in";
  } catch (err) {
    pending.discard();
    log(`${name}: the optimised model was not saved (${errorText(err)})`);
    return undefined;
  }
  // Run from the saved form, as every later load will: the same graph every time, its
  // weights memory-mapped.
  const entry = cache.find(inputs);
  return entry ? fromEntry(entry, how) : undefined;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

const CUDA_HINT =
  "CUDA needs an NVIDIA driver, CUDA 12 and cuDNN 9, and onnxruntime-node installed with its CUDA binaries " +
  "(npm install onnxruntime-node --onnxruntime-node-install=cuda12); use provider cpu otherwise";

function assertCudaAvailable(): void {
  const cuda = ort.listSupportedBackends().find((b) => b.name === "cuda");
  if (!cuda) {
    throw new ModelError(`the CUDA execution provider is not available in this onnxruntime-node build; ${CUDA_HINT}`);
  }
}

export { ort };
