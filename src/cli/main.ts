#!/usr/bin/env node
/** The `sdserve` command line. */

const HELP = `sdserve — self-hosted, Replicate-compatible Stable Diffusion

Usage:
  sdserve --help        this text
  sdserve --version     the version
`;

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (cmd === "--version" || cmd === "-v") {
    process.stdout.write("0.1.0\n");
    return 0;
  }
  process.stderr.write(`sdserve: unknown command "${cmd}" (see sdserve --help)\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sdserve: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
