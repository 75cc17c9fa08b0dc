/** `sdserve worker`: runs predictions from the shared queue (REDIS_URL); serves no API. */
import { ConfigError, loadConfig, WORKER_HELP } from "../config.js";
import { startWorkerProcess } from "../server/worker-process.js";
import { untilSignal } from "./serve.js";

export { WORKER_HELP };

export async function workerCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(WORKER_HELP);
    return 0;
  }
  const config = loadConfig(argv, process.env, "worker");
  const worker = await startWorkerProcess(config, {
    info: (line) => process.stdout.write(`${line}\n`),
    error: (line) => process.stderr.write(`${line}\n`),
  }).catch((err: unknown) => {
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      throw new ConfigError(
        `cannot listen on ${config.host}:${config.port} (${code}): choose another --port or --host`,
      );
    }
    throw err;
  });
  await untilSignal(worker);
  return 0;
}
