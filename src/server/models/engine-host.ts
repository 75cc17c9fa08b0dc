/**
 * One model's engine, in a worker thread of its own (engine-thread.ts), seen from the server:
 * setup, generations with progress, previews and cancellation, and the thread's end.
 *
 * Why a thread: onnxruntime-node runs a network synchronously on its caller's thread, so a UNet
 * step on the server's thread held every HTTP request for its whole length (a 640×640 step: up
 * to a second of /health-check). In a thread, the server's event loop only relays small
 * messages. A thread rather than a process: the weights are memory-mapped once either way, the
 * messages need no serialising beyond structured clone, and PNG bytes are moved by transfer.
 *
 * Errors keep their kind across the boundary: RequestError, ModelError and HubError are made
 * again from their names (their messages are meant for users); anything else stays an Error.
 * If the thread dies, the generations it was running fail with EngineStoppedError and the host
 * is spent: the adapter starts a new one.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { type GenerateRequest, HubError, ModelError, type PullEvent, RequestError } from "../../engine/index.js";
import type { FromThread, SetupParams, ToThread, WireError } from "./engine-thread.js";

export type { SetupParams } from "./engine-thread.js";

/** The engine thread ended while it was needed (a crash, or the thread was killed). */
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
  /** The thread ended without being asked to: `why` says how, for the operator and the prediction's error. */
  stopped(why: string): void;
}

/** How long close() waits for the thread to release its sessions before ending it. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Pending {
  resolve(images: Uint8Array[]): void;
  reject(err: Error): void;
  onStep?: (report: StepReport) => void;
  cancel: Int32Array;
}

/** The thread's program: the compiled file beside this one, or the TypeScript source when run through tsx. */
function startThread(): Worker {
  const self = fileURLToPath(import.meta.url);
  const ext = path.extname(self);
  const entry = new URL(`./engine-thread${ext}`, import.meta.url);
  if (ext !== ".ts") return new Worker(entry);
  // tsx's loader hooks are not inherited by worker threads (Node 20): register them in the thread.
  const tsx = import.meta.resolve("tsx/esm/api");
  return new Worker(
    `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`,
    { eval: true },
  );
}

/** An error from the thread as the class it was there, so callers can tell a user's fault from ours. */
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
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private setupWaiter: { resolve(label: string): void; reject(err: Error): void } | undefined;
  private closing = false;
  private readonly exited: Promise<void>;
  /** Why the thread ended unasked; set once it has. */
  private stoppedWhy: string | undefined;

  constructor(private readonly events: HostEvents) {
    this.worker = startThread();
    this.worker.on("message", (m: FromThread) => this.onMessage(m));
    let error: Error | undefined;
    this.worker.on("error", (err) => {
      error = err;
    });
    this.exited = new Promise((resolve) => {
      this.worker.once("exit", (code) => {
        if (!this.closing) {
          this.stoppedWhy = error
            ? `the engine thread crashed: ${error.message}`
            : `the engine thread exited (code ${code})`;
          const stopped = new EngineStoppedError(this.stoppedWhy);
          this.setupWaiter?.reject(stopped);
          for (const p of this.pending.values()) p.reject(stopped);
          this.events.stopped(this.stoppedWhy);
        }
        this.setupWaiter = undefined;
        this.pending.clear();
        resolve();
      });
    });
    this.updateRef();
  }

  /** Downloads (where needed) and loads the model in the thread; resolves with its label. */
  setup(params: SetupParams): Promise<string> {
    if (this.stoppedWhy) return Promise.reject(new EngineStoppedError(this.stoppedWhy));
    return new Promise<string>((resolve, reject) => {
      this.setupWaiter = { resolve, reject };
      this.updateRef();
      this.post({ type: "setup", params });
    }).finally(() => this.updateRef());
  }

  /**
   * One generation; resolves with one PNG per output (A1111 parameters included). Aborting
   * `signal` stops it before its next step, and the promise rejects with the signal's reason.
   */
  generate(
    request: GenerateRequest,
    opts: { signal: AbortSignal; previewIntervalMs?: number; onStep?: (report: StepReport) => void },
  ): Promise<Uint8Array[]> {
    if (this.stoppedWhy) return Promise.reject(new EngineStoppedError(this.stoppedWhy));
    const { signal } = opts;
    if (signal.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    const shared = new SharedArrayBuffer(4);
    const cancel = new Int32Array(shared);
    const onAbort = () => {
      Atomics.store(cancel, 0, 1);
      this.post({ type: "cancel", id });
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const result = new Promise<Uint8Array[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onStep: opts.onStep, cancel });
    });
    this.updateRef();
    this.post({ type: "generate", id, request, cancel: shared, previewIntervalMs: opts.previewIntervalMs });
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

  /** Ends the thread at once, without releasing anything: what a crash does (close() falls back to it). */
  async kill(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }

  /** Stops what runs, releases the model and ends the thread. */
  async close(): Promise<void> {
    if (this.stoppedWhy) return;
    this.closing = true;
    for (const p of this.pending.values()) Atomics.store(p.cancel, 0, 1);
    this.post({ type: "close" });
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  private post(message: ToThread): void {
    this.worker.postMessage(message);
  }

  /** A thread with nothing to do does not keep the process alive, as an idle socket does not. */
  private updateRef(): void {
    if (this.pending.size > 0 || this.setupWaiter) this.worker.ref();
    else this.worker.unref();
  }

  private onMessage(m: FromThread): void {
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
