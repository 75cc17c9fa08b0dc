/**
 * The program of a model's engine thread (engine-host.ts starts it): it downloads and loads the
 * weights, runs the generations, makes the previews and encodes the PNGs, so that none of that
 * work holds the HTTP server's event loop. onnxruntime runs each network synchronously on the
 * thread that calls it (onnxruntime-node's `run` blocks its caller), which is why the engine
 * needs a thread of its own and not just asynchronous calls.
 *
 * The thread holds the only copy of the model; it answers the messages below and sends only
 * small things back: log lines, download events, step reports, and PNG bytes whose buffers are
 * transferred, not copied.
 */
import { parentPort } from "node:worker_threads";
import {
  a1111Parameters,
  type ExecutionProvider,
  encodePng,
  type GenerateRequest,
  HubError,
  type HubSettings,
  loadPipeline,
  ModelError,
  type Pipeline,
  type PullEvent,
  RequestError,
  resolveModelSource,
  type StepEvent,
} from "../../engine/index.js";
import type { WeightsVariant } from "../../engine/weights/model-folder.js";
import { canPreview, latentsToPreviewImages } from "./latent-preview.js";

export interface SetupParams {
  weights: string;
  variant: WeightsVariant | undefined;
  hub: HubSettings | undefined;
  threads: number | undefined;
  provider: ExecutionProvider | undefined;
}

export type ToThread =
  | { type: "setup"; params: SetupParams }
  | {
      type: "generate";
      id: number;
      request: GenerateRequest;
      /** Int32 on a SharedArrayBuffer, set non-zero to cancel: read between steps without waiting for a message. */
      cancel: SharedArrayBuffer;
      /** Send a preview at most this often; absent: no previews. */
      previewIntervalMs?: number;
    }
  /** Also sent on cancel: stops a generation that has not reached its first step (the prompt encoding). */
  | { type: "cancel"; id: number }
  | { type: "close" };

/** An error as it crosses the thread boundary: its class by name, and what the classes carry. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  field?: string;
  hubKind?: HubError["kind"];
}

export type FromThread =
  | { type: "log"; line: string }
  | { type: "download"; event: PullEvent }
  | { type: "loading" }
  | { type: "ready"; label: string }
  | { type: "setup-failed"; error: WireError }
  | {
      type: "step";
      id: number;
      step: number;
      total: number;
      /** Since the previous step (the first: since the generation began). */
      seconds: number;
      elapsedSeconds: number;
      previews?: Uint8Array[];
    }
  | { type: "done"; id: number; images: Uint8Array[] }
  | { type: "failed"; id: number; error: WireError };

/** Progress events of a download come per chunk; the host needs a few a second at most. */
const DOWNLOAD_PROGRESS_MS = 100;

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: "Error", message: String(err) };
  return {
    name: err.name,
    message: err.message,
    stack: err.stack,
    ...(err instanceof RequestError || err instanceof ModelError ? { field: err.field } : {}),
    ...(err instanceof HubError ? { hubKind: err.kind } : {}),
  };
}

/** The bytes in an ArrayBuffer of their own, so that transferring it moves nothing else (Buffers may share a pool). */
function ownBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) {
    return bytes as Uint8Array<ArrayBuffer>;
  }
  return new Uint8Array(bytes);
}

function runThread(port: NonNullable<typeof parentPort>): void {
  let pipeline: Pipeline | undefined;
  let label = "stable-diffusion";
  const running = new Set<Promise<void>>();
  const controllers = new Map<number, AbortController>();
  const post = (message: FromThread, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

  async function setup(params: SetupParams): Promise<void> {
    try {
      let lastProgress = Number.NEGATIVE_INFINITY;
      const onProgress = (event: PullEvent) => {
        if (event.type === "progress" && event.done < event.size) {
          const now = performance.now();
          if (now - lastProgress < DOWNLOAD_PROGRESS_MS) return;
          lastProgress = now;
        }
        post({ type: "download", event });
      };
      const source = await resolveModelSource(params.weights, { hub: params.hub, variant: params.variant, onProgress });
      label = source.label;
      post({ type: "loading" });
      pipeline = await loadPipeline(source.path, {
        variant: params.variant,
        threads: params.threads,
        provider: params.provider,
        log: (line) => post({ type: "log", line }),
      });
      post({ type: "ready", label });
    } catch (err) {
      post({ type: "setup-failed", error: toWire(err) });
    }
  }

  async function generate(message: Extract<ToThread, { type: "generate" }>): Promise<void> {
    const { id } = message;
    const cancel = new Int32Array(message.cancel);
    const controller = new AbortController();
    controllers.set(id, controller);
    const checkCancel = () => {
      if (Atomics.load(cancel, 0) !== 0) controller.abort();
    };
    try {
      if (!pipeline) throw new Error("the engine thread has no model loaded");
      checkCancel();
      const start = performance.now();
      let lastStep = start;
      let lastPreview = Number.NEGATIVE_INFINITY;
      const interval = message.previewIntervalMs;
      const onStep = ({ step, total, latents }: StepEvent) => {
        const now = performance.now();
        let previews: Uint8Array<ArrayBuffer>[] | undefined;
        if (interval !== undefined && now - lastPreview >= interval && canPreview(latents)) {
          lastPreview = now;
          previews = latentsToPreviewImages(latents).map((image) => ownBuffer(encodePng(image)));
        }
        post(
          {
            type: "step",
            id,
            step,
            total,
            seconds: (now - lastStep) / 1000,
            elapsedSeconds: (now - start) / 1000,
            previews,
          },
          previews?.map((p) => p.buffer),
        );
        lastStep = now;
        // The generation stops before its next step, as a signal aborted in-process would.
        checkCancel();
      };
      const result = await pipeline.generate(message.request, { signal: controller.signal, onStep });
      const parameters = a1111Parameters({ ...result.parameters, model: label });
      const images = result.images.map((image) => ownBuffer(encodePng(image, { parameters })));
      post(
        { type: "done", id, images },
        images.map((p) => p.buffer),
      );
    } catch (err) {
      post({ type: "failed", id, error: toWire(err) });
    } finally {
      controllers.delete(id);
    }
  }

  async function close(): Promise<void> {
    await Promise.allSettled(running);
    await pipeline?.release();
    pipeline = undefined;
    port.close();
  }

  port.on("message", (message: ToThread) => {
    switch (message.type) {
      case "setup":
        void setup(message.params);
        break;
      case "generate": {
        const run = generate(message).finally(() => running.delete(run));
        running.add(run);
        break;
      }
      case "cancel":
        controllers.get(message.id)?.abort();
        break;
      case "close":
        void close();
        break;
    }
  });
}

if (parentPort) runThread(parentPort);
