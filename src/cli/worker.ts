/** `sdserve worker`: runs predictions from the shared queue (REDIS_URL); serves no API. */
import { WORKER_HELP } from "../config.js";
import { startWorkerProcess } from "../server/worker-process.js";
import { runService } from "./serve.js";

export { WORKER_HELP };

export function workerCommand(argv: string[]): Promise<number> {
  return runService(argv, "worker", WORKER_HELP, startWorkerProcess);
}
