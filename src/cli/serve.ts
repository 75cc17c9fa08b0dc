/** `sdserve serve`: the Replicate-compatible HTTP service. */
import { loadConfig, SERVE_HELP } from "../config.js";
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
  });
  // SIGTERM / SIGINT: graceful shutdown; a second signal exits at once.
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
  return 0;
}
