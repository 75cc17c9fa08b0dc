/** `sdserve serve`: the Replicate-compatible HTTP service. */
import { ConfigError, loadConfig, SERVE_HELP } from "../config.js";
import { startServer } from "../server/server.js";

export { SERVE_HELP };

export async function serveCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const config = loadConfig(argv);
  const server = await startServer(config, {
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
  await untilSignal(server);
  return 0;
}

/** Runs until SIGTERM / SIGINT, then shuts down gracefully; a second signal exits at once. */
export async function untilSignal(server: { close(): Promise<void> }): Promise<void> {
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(1);
      stopping = true;
      process.stdout.write(`${signal}: shutting down\n`);
      server.close().then(resolve, (err: unknown) => {
        process.stderr.write(`shutdown: ${err instanceof Error ? err.message : String(err)}\n`);
        resolve();
      });
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
