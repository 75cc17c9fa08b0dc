/** `sdserve serve`: the Replicate-compatible HTTP service. */
import { type Config, ConfigError, loadConfig, SERVE_HELP } from "../config.js";
import { createLogger, type Logger } from "../server/log.js";
import { type ServerOutput, startServer } from "../server/server.js";

export { SERVE_HELP };

export function serveCommand(argv: string[]): Promise<number> {
  return runService(argv, "serve", SERVE_HELP, (config, out) => startServer(config, out));
}

/**
 * `sdserve serve` and `sdserve worker`: --help, the settings, the start (a port that cannot be
 * listened on is a settings error that says which), then running until a signal.
 */
export async function runService(
  argv: string[],
  command: "serve" | "worker",
  help: string,
  start: (config: Config, out: ServerOutput) => Promise<{ close(): Promise<void> }>,
): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(help);
    return 0;
  }
  const config = loadConfig(argv, process.env, command);
  const log = createLogger(config);
  const service = await start(config, log).catch((err: unknown) => {
    const code = (err as { code?: string }).code;
    if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
      throw new ConfigError(
        `cannot listen on ${config.host}:${config.port} (${code}): choose another --port or --host`,
      );
    }
    throw err;
  });
  await untilSignal(service, log);
  return 0;
}

/** Runs until SIGTERM / SIGINT, then shuts down gracefully; a second signal exits at once. */
async function untilSignal(server: { close(): Promise<void> }, log: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(1);
      stopping = true;
      log.info({ signal }, `${signal}: shutting down`);
      server.close().then(
        () => {
          log.info("stopped");
          resolve();
        },
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          resolve();
        },
      );
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
