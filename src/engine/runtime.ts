/**
 * onnxruntime-node sessions: one per network, created once per loaded model and reused.
 * Graphs built here are passed as bytes; their weights stay in the safetensors files and are
 * found through onnxruntime's "external initializers folder" setting.
 */
import * as ort from "onnxruntime-node";
import { ModelError } from "./errors.js";

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
    externalDir: string | undefined,
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
    if (opts.profilePrefix) {
      options.enableProfiling = true;
      options.profileFilePrefix = opts.profilePrefix;
    }
    if (externalDir) {
      options.extra = { session: { model_external_initializers_file_folder_path: externalDir } };
    }
    let session: ort.InferenceSession;
    try {
      session =
        typeof model === "string"
          ? await ort.InferenceSession.create(model, options)
          : await ort.InferenceSession.create(model, options);
    } catch (err) {
      let msg = err instanceof Error ? err.message : String(err);
      if (provider === "cuda") msg += `; ${CUDA_HINT}`;
      throw new ModelError(`onnxruntime could not create the ${name} session (${provider}): ${msg}`, {
        file: typeof model === "string" ? model : undefined,
      });
    }
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
