/**
 * Runs one exported function in a worker thread and reports whether it returned before a
 * generous limit. A parser with catastrophic backtracking holds its thread for minutes or
 * hours on adversarial input; in the test's own thread that would hang the run instead of
 * failing it, and a timer cannot interrupt synchronous code there. The limit is a hang
 * detector, tens of times what a linear parser needs, not a speed measurement.
 */
import { Worker } from "node:worker_threads";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
// TypeScript sources: the worker registers tsx itself (eval workers do not run --import).
import(workerData.tsx).then(({ register }) => {
  register();
  return import(workerData.module);
}).then((mod) => {
  const result = mod[workerData.name](...workerData.args);
  parentPort.postMessage({ result: JSON.stringify(result ?? null) });
}).catch((err) => parentPort.postMessage({ error: String(err && err.stack || err) }));
`;

export type BoundedResult = { finished: true; result: unknown } | { finished: false };

export async function callWithin(
  moduleUrl: URL,
  name: string,
  args: unknown[],
  limitMs = 20_000,
): Promise<BoundedResult> {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { module: moduleUrl.href, name, args, tsx: import.meta.resolve("tsx/esm/api") },
  });
  try {
    return await new Promise<BoundedResult>((resolve, reject) => {
      const timer = setTimeout(() => resolve({ finished: false }), limitMs);
      worker.once("message", (m: { result?: string; error?: string }) => {
        clearTimeout(timer);
        if (m.error !== undefined) reject(new Error(m.error));
        else resolve({ finished: true, result: JSON.parse(m.result ?? "null") });
      });
      worker.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  } finally {
    await worker.terminate();
  }
}
