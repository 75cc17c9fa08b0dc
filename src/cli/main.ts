#!/usr/bin/env node
/** The `sdserve` command line. */
import { ConfigError } from "../config.js";
import { ModelError, RequestError } from "../engine/errors.js";
import { SDSERVE_VERSION } from "../engine/version.js";
import { GENERATE_HELP, generateCommand, UsageError } from "./generate.js";
import { MODELS_HELP, modelsCommand } from "./models.js";
import { SERVE_HELP, serveCommand } from "./serve.js";
import { WORKER_HELP, workerCommand } from "./worker.js";

const VERSION = SDSERVE_VERSION;

const HELP = `sdserve ${VERSION} — self-hosted Stable Diffusion on ONNX Runtime

Usage:
  sdserve serve [--model <folder|owner/name|tiny-random>] [--models <file>] [options]
                              serve Replicate's predictions API, OpenAI's images API and
                              AUTOMATIC1111's /sdapi/v1
  sdserve worker [--model …] [--models <file>] [--concurrency <n>]
                              run predictions from the shared queue (REDIS_URL) for API nodes
  sdserve generate "prompt" --model <folder|owner/name|tiny-random> [options]
                              make images from text (or a picture: --image, --mask) and write PNG files
  sdserve models list | pull [<id>] | verify <id>
                              the served models, and their weights in the Hugging Face cache
  sdserve --help | --version

A model is a diffusers-format folder (SD 1.x, 2.x or SDXL), a single-file .safetensors checkpoint
(SD 1.x, 2.x or SDXL), a Hugging Face model id (owner/name[@revision], downloaded into the Hugging Face
cache on first use), or tiny-random (made on the spot).
Run "sdserve serve --help", "sdserve worker --help", "sdserve generate --help" or
"sdserve models --help" for options.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    const topic = cmd === "help" ? rest[0] : undefined;
    const topics: Record<string, string> = {
      generate: GENERATE_HELP,
      serve: SERVE_HELP,
      worker: WORKER_HELP,
      models: MODELS_HELP,
    };
    process.stdout.write((topic && topics[topic]) ?? HELP);
    return 0;
  }
  if (cmd === "--version" || cmd === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (cmd === "generate") return generateCommand(rest);
  if (cmd === "serve") return serveCommand(rest);
  if (cmd === "worker") return workerCommand(rest);
  if (cmd === "models") return modelsCommand(rest);
  throw new UsageError(`unknown command "${cmd}" (see sdserve --help)`);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Expected failures are one clear line; anything else keeps its stack for a bug report.
    const known =
      err instanceof UsageError ||
      err instanceof ConfigError ||
      err instanceof ModelError ||
      err instanceof RequestError;
    const isArgError = err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS");
    const message = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
    process.stderr.write(`sdserve: ${known || isArgError ? message : ((err as Error)?.stack ?? message)}\n`);
    process.exitCode = known || isArgError ? 2 : 1;
  },
);
