/**
 * One model's engine, in a child process of its own (engine-process.ts), seen from the server:
 * setup, generations with progress, previews and cancellation, and the process's end.
 *
 * Why: onnxruntime-node runs a network synchronously on its caller's thread, so a UNet step on
 * the server's thread held every HTTP request for its whole length (a 640×640 step: up to a
 * second of /health-check). Off that thread, the server's event loop only relays small messages.
 * Why a process rather than a worker thread (onnxruntime-node loads in either): a fault in native
 * code ends the whole process it runs in, and ending a worker thread while onnxruntime runs
 * aborts the process too ("terminate called after throwing an instance of 'Napi::Error'",
 * SIGABRT); a child process can die or be killed and the server goes on. The weights are
 * loaded once either way: the server's own process never loads them.
 *
 * Errors keep their kind across the boundary: RequestError, ModelError and HubError are made
 * again from their names (their messages are meant for users); anything else stays an Error.
 * If the process dies, the generations it was running fail with EngineStoppedError and the host
 * is spent: the adapter starts a new one.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  type GenerateRequest,
  type HiresFix,
  HubError,
  ModelError,
  type PullEvent,
  RequestError,
} from "../../engine/index.js";
import {
  ENGINE_PROCESS_FLAG,
  type FromEngine,
  type PictureInputs,
  type RefineParams,
  type SetupParams,
  type ToEngine,
  type WireError,
} from "./engine-process.js";

export type { PictureInputs, SetupParams } from "./engine-process.js";

/** The engine process ended while it was needed (a crash, or it was killed). */
export class EngineStoppedError extends Error {
  override readonly name = "EngineStoppedError";
}

export interface StepReport {
  step: number;
  total: number;
  /** Since the previous step (the first: since the generation began). */
  seconds: number;
  elapsedSeconds: number;
  /** One PNG per output, when a preview was due. */
  previews?: Uint8Array[];
}

export interface HostEvents {
  log(line: string): void;
  download(event: PullEvent): void;
  /** The download is over (or there was none): the weights are being loaded. */
  loading(): void;
  /** The process ended without being asked to: `why` says how, for the operator's log. */
  stopped(why: string): void;
}

/** How long close() waits for the process to release its sessions before killing it. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Pending {
  resolve(images: Uint8Array[]): void;
  reject(err: Error): void;
  onStep?: (report: StepReport) => void;
}

/** The engine's program, run by the same node with the same flags (tsx, when running from source). */
function startProcess(): ChildProcess {
  const url = new URL(`./engine-process${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);
  // Debugger flags would make the child fight the parent for the inspector port.
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--inspect"));
  return fork(fileURLToPath(url), [ENGINE_PROCESS_FLAG], {
    execArgv,
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

/** An error from the engine process as the class it was there, so callers can tell a user's fault from ours. */
export function fromWire(e: WireError): Error {
  let err: Error;
  if (e.name === "RequestError") err = new RequestError(e.message, e.field);
  else if (e.name === "HubError" && e.hubKind) err = new HubError(e.hubKind, e.message);
  else if (e.name === "ModelError") {
    // Its constructor would prefix the file and field again: they are in the message already.
    err = Object.assign(new ModelError(""), { message: e.message, field: e.field });
  } else {
    err = new Error(e.message);
    if (e.name !== "Error") err.name = e.name;
  }
  if (e.stack) err.stack = e.stack;
  return err;
}

export class EngineHost {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private setupWaiter: { resolve(label: string): void; reject(err: Error): void } | undefined;
  private closing = false;
  private readonly exited: Promise<void>;
  /** Why the process ended (a crash, a kill, or close()); set once it has. */
  private stoppedWhy: string | undefined;

  constructor(private readonly events: HostEvents) {
    this.child = startProcess();
    this.child.on("message", (m: FromEngine) => this.onMessage(m));
    let error: Error | undefined;
    this.child.on("error", (err) => {
      error ??= err;
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.stoppedWhy = this.closing
          ? "the engine process was closed"
          : error
            ? `the engine process failed: ${error.message}`
            : `the engine process ended (${signal ? `signal ${signal}` : `exit code ${code}`})`;
        // Anything still waiting now waits in vain (a crash, or a close that had to kill).
        const stopped = new EngineStoppedError(this.stoppedWhy);
        this.setupWaiter?.reject(stopped);
        for (const p of this.pending.values()) p.reject(stopped);
        this.setupWaiter = undefined;
        this.pending.clear();
        if (!this.closing) this.events.stopped(this.stoppedWhy);
        resolve();
      });
    });
    this.updateRef();
  }

  /** The engine process's id (for the operator's tools, and a test that kills it). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Downloads (where needed) and loads the model in the engine process; resolves with its label. */
  setup(params: SetupParams): Promise<string> {
    if (this.stoppedWhy) return Promise.reject(new EngineStoppedError(this.stoppedWhy));
    return new Promise<string>((resolve, reject) => {
      this.setupWaiter = { resolve, reject };
      this.updateRef();
      this.send({ type: "setup", params });
    }).finally(() => this.updateRef());
  }

  /**
   * One generation; resolves with one PNG per output (A1111 parameters included). Aborting
   * `signal` stops it before its next step, and the promise rejects with the signal's reason.
   */
  generate(
    request: GenerateRequest,
    opts: {
      signal: AbortSignal;
      previewIntervalMs?: number;
      onStep?: (report: StepReport) => void;
      /** img2img / inpainting pictures, as bytes: decoded in the engine process. */
      pictures?: PictureInputs;
      /** A picture generated at its own size is scaled down to at most this many pixels. */
      maxPixels?: number;
      /** SDXL: Replicate's refine modes and the watermark (engine-process.ts). */
      refine?: RefineParams;
      watermark?: boolean;
      /** AUTOMATIC1111's hires fix. */
      hires?: HiresFix;
    },
  ): Promise<Uint8Array[]> {
    if (this.stoppedWhy) return Promise.reject(new EngineStoppedError(this.stoppedWhy));
    const { signal } = opts;
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    const onAbort = () => this.send({ type: "cancel", id });
    signal.addEventListener("abort", onAbort, { once: true });
    const result = new Promise<Uint8Array[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onStep: opts.onStep });
    });
    this.updateRef();
    this.send({
      type: "generate",
      id,
      request,
      previewIntervalMs: opts.previewIntervalMs,
      pictures: opts.pictures,
      maxPixels: opts.maxPixels,
      refine: opts.refine,
      watermark: opts.watermark,
      hires: opts.hires,
    });
    return result
      .catch((err: unknown) => {
        // Stopped between steps because it was asked to: the caller's reason, as in-process.
        if (signal.aborted && !(err instanceof EngineStoppedError)) throw signal.reason;
        throw err;
      })
      .finally(() => {
        signal.removeEventListener("abort", onAbort);
        this.updateRef();
      });
  }

  /** Kills the engine process at once, as a crash would end it (close() falls back to it). */
  async kill(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited;
  }

  /** Stops what runs, releases the model and ends the engine process. */
  async close(): Promise<void> {
    if (this.stoppedWhy) return;
    this.closing = true;
    for (const id of this.pending.keys()) this.send({ type: "cancel", id });
    this.send({ type: "close" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  private send(message: ToEngine): void {
    // A process that has gone is reported by "exit"; nothing more to say here.
    if (this.child.connected) this.child.send(message, (err) => err && undefined);
  }

  /** An engine with nothing to do does not keep the server's process alive, as an idle socket does not. */
  private updateRef(): void {
    const busy = this.pending.size > 0 || this.setupWaiter !== undefined;
    const channel = this.child.channel as { ref?(): void; unref?(): void } | null | undefined;
    if (busy) {
      this.child.ref();
      channel?.ref?.();
    } else {
      this.child.unref();
      channel?.unref?.();
    }
  }

  private onMessage(m: FromEngine): void {
    switch (m.type) {
      case "log":
        this.events.log(m.line);
        break;
      case "download":
        this.events.download(m.event);
        break;
      case "loading":
        this.events.loading();
        break;
      case "ready":
        this.setupWaiter?.resolve(m.label);
        this.setupWaiter = undefined;
        break;
      case "setup-failed":
        this.setupWaiter?.reject(fromWire(m.error));
        this.setupWaiter = undefined;
        break;
      case "step":
        this.pending.get(m.id)?.onStep?.(m);
        break;
      case "done":
        this.pending.get(m.id)?.resolve(m.images);
        this.pending.delete(m.id);
        break;
      case "failed":
        this.pending.get(m.id)?.reject(fromWire(m.error));
        this.pending.delete(m.id);
        break;
    }
  }
}
