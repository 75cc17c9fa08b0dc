/**
 * Runs onnxruntime's graph optimisation of one network in a child process, saving the result
 * for the optimised-model cache (optimized-cache.ts).
 *
 * Why a child: optimising the SD 2.1 UNet needs about 3 GiB beyond the weights (the weights
 * read in, their transposed and NCHWc-blocked copies, the serialised model), and the C
 * allocator keeps much of that in the process after the session is gone: in-process, a first
 * load left the server 1.4 GiB bigger for good than a load from the cache. A child gives it
 * all back when it exits, and a crash inside onnxruntime's optimiser takes only the child.
 *
 * Run as a script: `node optimize-process.js <job JSON> <parent pid>`; exit status 0 when the
 * model was saved.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";

export interface OptimizeJob {
  /** The ONNX graph to optimise (its weights as external data in `externalDir`). */
  graphPath: string;
  externalDir: string;
  /** Where onnxruntime writes the optimised model; its weights go to `dataFile` beside it. */
  outputPath: string;
  dataFile: string;
  /** The session options of the sessions that will run the saved model (plain data). */
  sessionOptions: ort.InferenceSession.SessionOptions;
}

/** Runs `job` in a child process; rejects with onnxruntime's message when it fails. */
export function optimizeInChild(job: OptimizeJob): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  // Debugger flags would make the child fight the parent for the inspector port.
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--inspect"));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...execArgv, self, JSON.stringify(job), String(process.pid)], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve();
      else {
        const why = stderr.trim().split("\n").slice(-3).join(" ") || `exit ${code ?? signal}`;
        reject(new Error(`optimising in a child process failed: ${why}`));
      }
    });
  });
}

async function runJob(job: OptimizeJob): Promise<void> {
  const session = await ort.InferenceSession.create(job.graphPath, {
    ...job.sessionOptions,
    optimizedModelFilePath: job.outputPath,
    // Not onnxruntime's warning that the saved model suits this machine only: the cache key says so.
    logSeverityLevel: 3,
    extra: {
      session: {
        model_external_initializers_file_folder_path: job.externalDir,
        optimized_model_external_initializers_file_name: job.dataFile,
        optimized_model_external_initializers_min_size_in_bytes: "1024",
        // The MatMul weights in the layout onnxruntime packs them into for this CPU, saved too:
        // a load from the cache memory-maps them instead of packing them again (SD 1.5: load
        // 1.9 -> 1.2-1.7 s, for 1 GB more on disk).
        save_external_prepacked_constant_initializers: "1",
      },
    },
  });
  await session.release();
}

/**
 * With the parent gone (killed, crashed), stop rather than spend a few GiB and half a minute on
 * an entry nobody waits for (its temporary folder is removed later as stale). onnxruntime's
 * session creation holds this process's main thread, so a worker thread watches.
 */
function watchParent(parent: number): Promise<void> {
  const watcher = new Worker(
    `const { workerData } = require("node:worker_threads");
    setInterval(() => {
      try { process.kill(workerData.parent, 0); } catch { process.kill(workerData.self, "SIGKILL"); }
    }, 500);`,
    { eval: true, execArgv: [], workerData: { parent, self: process.pid } },
  );
  watcher.unref();
  // A worker's start needs this thread's event loop, which onnxruntime is about to block.
  return new Promise((resolve, reject) => {
    watcher.once("online", resolve);
    watcher.once("error", reject);
  });
}

const invokedAs = process.argv[1] ? path.resolve(process.argv[1]) : "";
if (invokedAs === fileURLToPath(import.meta.url)) {
  // Nothing else may hold the event loop open between the steps: without this, the process
  // can end with status 0 while a step is pending, having saved nothing.
  setInterval(() => {}, 60_000);
  // The parent's pid as it passed it: process.ppid is already 1 if the parent died while this
  // process was starting.
  watchParent(Number(process.argv[3]))
    .then(() => runJob(JSON.parse(process.argv[2] ?? "{}") as OptimizeJob))
    .then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
      },
    );
}
