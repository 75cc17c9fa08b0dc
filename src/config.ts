/**
 * Every setting of `sdserve serve`, read from command-line flags and the environment and
 * validated here, in one place. Modules receive the parsed values, never process.env.
 * A flag wins over its environment variable; a bad value fails at start with a message
 * naming the flag or variable.
 */
import { isIP } from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { type HubSettings, hubSettingsFromEnv } from "./engine/hub/settings.js";
import { CatalogError, DEFAULT_WEIGHTS, type ModelSpec, modelCatalog } from "./model-catalog.js";
import type { S3Settings } from "./server/files/s3.js";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export interface Config {
  /** TCP port to listen on (0: any free port; the chosen one is printed). */
  port: number;
  host: string;
  /** Holds the SQLite database, output files, the generated API token and webhook secrets. */
  dataDir: string;
  /** --model: what backs stability-ai/stable-diffusion (a diffusers-format folder, a Hugging Face model id, or tiny-random). */
  model: string | undefined;
  /** --models: the models file, if any. */
  modelsFile: string | undefined;
  /** The models served: from the models file and --model (default: stability-ai/stable-diffusion on SD 2.1). */
  models: ModelSpec[];
  /** Which weights to use where a model has both fp32 and fp16 files (a models file may say otherwise per model). */
  variant: "fp32" | "fp16";
  /** The Hugging Face Hub, its cache and token (HF_* variables). */
  hub: HubSettings;
  /** ONNX Runtime intra-op threads (undefined: one per core). */
  threads: number | undefined;
  provider: "cpu" | "cuda";
  /** Accepted API tokens; empty: one is generated on first start and kept in the data directory. */
  apiTokens: string[];
  /** How long outputs are kept after a prediction completes, in ms; null keeps them forever. */
  outputRetentionMs: number | null;
  /** Most predictions waiting or running at once; beyond it create answers 429. */
  queueMax: number;
  /** Most unfinished predictions of one token, so that one token cannot fill the queue for all (429 beyond). */
  queueMaxPerToken: number;
  /** Largest request body accepted, in bytes (413 beyond). */
  bodyLimit: number;
  /** External origin (scheme://host[:port][/path]) for the URLs in responses; absent: taken from each request. */
  publicBaseUrl: string | undefined;
  /**
   * Proxies whose X-Forwarded-Host/-Proto are believed (addresses, CIDRs, or loopback /
   * linklocal / uniquelocal, as Fastify's trustProxy takes them); empty: those headers are ignored.
   */
  trustProxy: string[];
  /** Longest `Prefer: wait=N` honoured, in seconds (Replicate: 60); longer asks are clamped. */
  maxWaitSeconds: number;
  /** Server-side limit on a prediction's lifetime, in ms; past it the prediction is canceled. null: none. */
  maxRunTimeMs: number | null;
  /** Interval of the `: ping` comments on open event streams, in ms. */
  streamKeepaliveMs: number;
  /** Most event streams open at once on one prediction, and from one client address (429 beyond). */
  streamsPerPrediction: number;
  streamsPerClient: number;
  /** Deliver webhooks to loopback/private/link-local addresses too (a receiver on the same machine or network). */
  webhookAllowPrivate: boolean;
  /** Origins allowed by CORS; empty: no CORS headers (as Replicate). ["*"] allows any. */
  corsOrigins: string[];
  /** Per-token request limit: at most `max` requests per `windowMs`; null: off. */
  rateLimit: { max: number; windowMs: number } | null;
  /** DATABASE_URL: predictions in PostgreSQL instead of the SQLite file (migrated on start). */
  databaseUrl: string | undefined;
  /** REDIS_URL: the queue (BullMQ) and the prediction events on Redis, shared by every node and worker. */
  redisUrl: string | undefined;
  /** Prefix of every Redis key and channel, so that several deployments can share one Redis. */
  redisPrefix: string;
  /** Predictions one worker process runs at once (shared queue only; the in-process worker runs one). */
  workerConcurrency: number;
  /** How long a worker's claim on a job lasts unrenewed: after a worker dies its job runs elsewhere within about this. */
  jobLockMs: number;
  /** Whether this process runs predictions: false for `sdserve serve --no-worker`. */
  runWorker: boolean;
  /** S3_BUCKET and friends: outputs in S3-compatible object storage instead of --data-dir. */
  s3: S3Settings | undefined;
}

export const SERVE_HELP = `Usage: sdserve serve [--model <folder|owner/name|tiny-random>] [--models <file>] [options]

Serves Replicate's predictions API (and OpenAI's images API) for stability-ai/stable-diffusion
(on ${DEFAULT_WEIGHTS} unless --model says otherwise) or the models a models file lists.
The API answers at once; weights are downloaded and loaded in the background (see /health-check).
GET /metrics serves Prometheus metrics.

Options (each also read from the environment variable shown):
  --model <source>       SDSERVE_MODEL        weights of stability-ai/stable-diffusion: a diffusers-format SD 1.x/2.x
                                              folder, a Hugging Face model id (owner/name[@revision], downloaded
                                              on first start), or tiny-random (default ${DEFAULT_WEIGHTS})
  --models <file>        SDSERVE_MODELS       a JSON models file mapping owner/name to weights and input defaults
  --variant <fp32|fp16>  SDSERVE_VARIANT      which weights to use where a model has both (default fp32)
  --port <n>             SDSERVE_PORT, PORT   port to listen on (default 8080; 0 picks a free one)
  --host <addr>          SDSERVE_HOST         address to bind (default 127.0.0.1; 0.0.0.0 for all)
  --data-dir <dir>       SDSERVE_DATA_DIR     database, outputs, API token (default ~/.local/share/sdserve)
  --threads <n>          SDSERVE_THREADS      CPU threads for ONNX Runtime (default: one per core)
  --provider <cpu|cuda>  SDSERVE_PROVIDER     execution provider (default cpu)
  --public-url <url>     SDSERVE_PUBLIC_URL   external base URL for links in responses (default: from each request)
  --trust-proxy <list>   SDSERVE_TRUST_PROXY  reverse proxies whose X-Forwarded-Host/-Proto are honoured: addresses
                                              or CIDRs, comma-separated, or loopback (default: none; the headers
                                              are ignored)
  --no-worker                                 API only: run no predictions here; \`sdserve worker\` processes do
                                              (needs REDIS_URL)

Environment only:
  SDSERVE_API_TOKENS              comma-separated bearer tokens (default: one generated and printed on first start)
  SDSERVE_OUTPUT_RETENTION        how long outputs are kept after completion: 90s, 1h, 7d, never (default 1h)
  SDSERVE_QUEUE_MAX               most predictions waiting or running (default 100; beyond: 429)
  SDSERVE_QUEUE_MAX_PER_TOKEN     most of them from one token (default half of SDSERVE_QUEUE_MAX; beyond: 429)
  SDSERVE_BODY_LIMIT              largest request body: 1048576, 512kb, 2mb (default 1mb; beyond: 413)
  SDSERVE_MAX_WAIT                longest Prefer: wait in seconds (default 60)
  SDSERVE_MAX_RUN_TIME            cancel predictions older than this: 10m, 1h, never (default never)
  SDSERVE_STREAM_KEEPALIVE        a ": ping" comment on open event streams this often (default 10s), for proxies
                                  that close quiet connections sooner; a client that takes nothing for three
                                  of these loses its stream
  SDSERVE_STREAMS_PER_PREDICTION  most event streams open on one prediction (default 20; beyond: 429)
  SDSERVE_STREAMS_PER_CLIENT      most event streams open from one client address (default 50; beyond: 429)
  SDSERVE_WEBHOOK_ALLOW_PRIVATE   true: allow webhooks to loopback and private addresses (default false)
  SDSERVE_CORS_ORIGINS            comma-separated origins allowed by CORS, or * (default: none)
  SDSERVE_RATE_LIMIT              per-token request limit such as 600/m or 10/s (default: off)
  SDSERVE_CACHE                   sdserve's cache: tiny-random, optimised models (default ~/.cache/sdserve)
  SDSERVE_OPTIMIZED_CACHE         where ONNX Runtime's optimised form of each network is kept so later
                                  loads skip optimising (default $SDSERVE_CACHE/optimized; off: not kept)

Scale-out (each unset: the embedded default beside it):
  DATABASE_URL                    postgres://user:pass@host:5432/db: predictions in PostgreSQL, shared by every
                                  node and worker; the schema is migrated on start (default: SQLite in --data-dir)
  REDIS_URL                       redis://host:6379[/db]: the queue (BullMQ) and prediction events on Redis, so
                                  that Prefer: wait, streams and webhooks work on any node (default: in-process)
  SDSERVE_REDIS_PREFIX            prefix of Redis keys and channels (default sdserve)
  SDSERVE_WORKER_CONCURRENCY      predictions a worker process runs at once, with REDIS_URL (default 1)
  SDSERVE_JOB_LOCK                a worker's claim on a running job; when a worker dies, its job runs again
                                  elsewhere after about this long: 30s, 2m (default 30s)
  S3_BUCKET                       outputs in this S3 bucket, shared by every node and worker (default: files in
                                  --data-dir); retention deletes them
  S3_ENDPOINT                     an S3-compatible server's URL (default: AWS S3 of S3_REGION)
  S3_REGION                       (default AWS_REGION, else us-east-1)
  S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY
                                  keys (default: the AWS SDK's chain: AWS_ACCESS_KEY_ID, profiles, roles)
  S3_FORCE_PATH_STYLE             true: endpoint/bucket/key URLs (default true with S3_ENDPOINT, else false)
  S3_PREFIX                       key prefix inside the bucket, such as sdserve/ (default none)
  SDSERVE_OUTPUT_URLS             proxy: the API serves output files; presigned: it redirects each download
                                  to a presigned S3 URL (needs S3_BUCKET; default proxy)

Hugging Face Hub (as Python's huggingface_hub reads them; the cache is shared with it):
  HF_HUB_CACHE, HF_HOME           where downloaded weights are kept (default ~/.cache/huggingface/hub)
  HF_TOKEN                        token for gated or private repositories (default: the one saved
                                  by "huggingface-cli login")
  HF_ENDPOINT                     a hub mirror (default https://huggingface.co)
  HF_HUB_OFFLINE=1                never use the network: weights from the cache only
`;

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "1h30m", "7d", "500ms", or a bare number of seconds. */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (UNITS_MS[m[2] as string] as number);
    end = re.lastIndex;
  }
  return end === s.length && end > 0 ? total : undefined;
}

const PROXY_KEYWORDS = ["loopback", "linklocal", "uniquelocal"];

/** A comma-separated list of proxy addresses, CIDRs and proxy-addr's keywords, each checked. */
function parseTrustProxy(name: string, text: string): string[] {
  const entries = text
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
  for (const entry of entries) {
    if (PROXY_KEYWORDS.includes(entry)) continue;
    const [address = "", prefix, extra] = entry.split("/");
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits);
    if (family === 0 || !prefixOk || extra !== undefined) {
      throw new ConfigError(
        `${name} must list proxy addresses or CIDRs (127.0.0.1, 10.0.0.0/8, ::1) or loopback, linklocal, uniquelocal; got "${entry}"`,
      );
    }
  }
  if (entries.length === 0) throw new ConfigError(`${name} is empty`);
  return entries;
}

function parseBytes(text: string): number | undefined {
  const m = /^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? "b").toLowerCase();
  const scale = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? 1024 ** 2 : unit.startsWith("g") ? 1024 ** 3 : 1;
  return Number(m[1]) * scale;
}

function integer(name: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return Number(text);
}

function boolean(name: string, text: string): boolean {
  const t = text.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(t)) return true;
  if (["0", "false", "no", "off", ""].includes(t)) return false;
  throw new ConfigError(`${name} must be true or false, got "${text}"`);
}

function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const base = env["XDG_DATA_HOME"] || path.join(os.homedir(), ".local", "share");
  return path.join(base, "sdserve");
}

function catalog(model: string | undefined, modelsFile: string | undefined, variant: "fp32" | "fp16"): ModelSpec[] {
  try {
    return modelCatalog({ model, modelsFile, variant });
  } catch (err) {
    if (err instanceof CatalogError) throw new ConfigError(err.message);
    throw err;
  }
}

export const WORKER_HELP = `Usage: sdserve worker [--model <folder|owner/name|tiny-random>] [--models <file>] [options]

Runs predictions that API nodes (sdserve serve --no-worker, or any sdserve serve on the same Redis)
put in the shared queue: takes jobs from Redis, runs them on this machine's engine, writes the
outputs and the predictions' progress to the shared store and files, and announces every change
on Redis. Serve the same models as the API nodes. /health-check and /metrics answer on --port.

Needs REDIS_URL, and DATABASE_URL and S3_BUCKET unless every process shares one --data-dir
(see sdserve serve --help).

Options (each also read from the environment variable shown):
  --model <source>       SDSERVE_MODEL        as for sdserve serve
  --models <file>        SDSERVE_MODELS       as for sdserve serve
  --variant <fp32|fp16>  SDSERVE_VARIANT      as for sdserve serve
  --concurrency <n>      SDSERVE_WORKER_CONCURRENCY  predictions run at once (default 1)
  --port <n>             SDSERVE_PORT, PORT   port of /health-check and /metrics (default 9090; 0 picks a free one)
  --host <addr>          SDSERVE_HOST         address to bind (default 127.0.0.1)
  --data-dir <dir>       SDSERVE_DATA_DIR     SQLite file and outputs where no DATABASE_URL / S3 is set
  --threads <n>          SDSERVE_THREADS      CPU threads for ONNX Runtime (default: one per core)
  --provider <cpu|cuda>  SDSERVE_PROVIDER     execution provider (default cpu)

These environment variables of sdserve serve apply as well: REDIS_URL, DATABASE_URL, S3_*,
SDSERVE_REDIS_PREFIX, SDSERVE_JOB_LOCK, SDSERVE_WEBHOOK_ALLOW_PRIVATE (the webhooks of the changes
made here are sent from here), SDSERVE_CACHE, SDSERVE_OPTIMIZED_CACHE and HF_*. Retention,
deadlines and limits are the API nodes' settings.
`;

/** Reads `sdserve serve`'s (or `sdserve worker`'s) flags and the environment. */
export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  command: "serve" | "worker" = "serve",
): Config {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      models: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "data-dir": { type: "string" },
      threads: { type: "string" },
      provider: { type: "string" },
      variant: { type: "string" },
      ...(command === "serve"
        ? { "public-url": { type: "string" }, "trust-proxy": { type: "string" }, "no-worker": { type: "boolean" } }
        : { concurrency: { type: "string" } }),
    } as const,
  });
  if (positionals.length > 0)
    throw new ConfigError(`unexpected argument "${positionals[0]}" (see sdserve ${command} --help)`);

  // Each setting: the flag, else the environment variable(s), else the default; the error names what was used.
  const pick = (flag: string | undefined, ...vars: string[]): [string, string] | undefined => {
    const fromFlag = flag === undefined ? undefined : (values as Record<string, string | undefined>)[flag];
    if (fromFlag !== undefined) return [`--${flag}`, fromFlag];
    for (const v of vars) if (env[v] !== undefined && env[v] !== "") return [v, env[v] as string];
    return undefined;
  };

  const model = pick("model", "SDSERVE_MODEL");
  const modelsFile = pick("models", "SDSERVE_MODELS");

  const port = pick("port", "SDSERVE_PORT", "PORT");
  const threads = pick("threads", "SDSERVE_THREADS");
  const provider = pick("provider", "SDSERVE_PROVIDER")?.[1] ?? "cpu";
  if (provider !== "cpu" && provider !== "cuda") {
    throw new ConfigError(`--provider / SDSERVE_PROVIDER must be cpu or cuda, got "${provider}"`);
  }

  const variant = pick("variant", "SDSERVE_VARIANT")?.[1] ?? "fp32";
  if (variant !== "fp32" && variant !== "fp16") {
    throw new ConfigError(`--variant / SDSERVE_VARIANT must be fp32 or fp16, got "${variant}"`);
  }

  const publicUrl = pick("public-url", "SDSERVE_PUBLIC_URL");
  let publicBaseUrl: string | undefined;
  if (publicUrl) {
    let u: URL;
    try {
      u = new URL(publicUrl[1]);
    } catch {
      throw new ConfigError(`${publicUrl[0]} must be an absolute http(s) URL, got "${publicUrl[1]}"`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new ConfigError(`${publicUrl[0]} must be an http or https URL, got "${publicUrl[1]}"`);
    }
    publicBaseUrl = `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
  }

  const trustProxySetting = pick("trust-proxy", "SDSERVE_TRUST_PROXY");
  const trustProxy = trustProxySetting ? parseTrustProxy(trustProxySetting[0], trustProxySetting[1]) : [];

  const apiTokens = (env["SDSERVE_API_TOKENS"] ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  for (const t of apiTokens) {
    if (!/^[\x21-\x7e]+$/.test(t))
      throw new ConfigError("SDSERVE_API_TOKENS: tokens must be printable ASCII without spaces");
  }

  let outputRetentionMs: number | null = 3_600_000;
  const retention = env["SDSERVE_OUTPUT_RETENTION"];
  if (retention !== undefined && retention !== "") {
    if (retention.trim().toLowerCase() === "never") outputRetentionMs = null;
    else {
      const ms = parseDuration(retention);
      if (ms === undefined || ms <= 0) {
        throw new ConfigError(
          `SDSERVE_OUTPUT_RETENTION must be a duration such as 90s, 1h, 7d, or never, got "${retention}"`,
        );
      }
      outputRetentionMs = ms;
    }
  }

  let maxRunTimeMs: number | null = null;
  const maxRun = env["SDSERVE_MAX_RUN_TIME"];
  if (maxRun !== undefined && maxRun !== "" && maxRun.trim().toLowerCase() !== "never") {
    const ms = parseDuration(maxRun);
    if (ms === undefined || ms < 1000) {
      throw new ConfigError(
        `SDSERVE_MAX_RUN_TIME must be a duration of 1s or more (10m, 1h) or never, got "${maxRun}"`,
      );
    }
    maxRunTimeMs = ms;
  }

  let streamKeepaliveMs = 10_000;
  const keepalive = env["SDSERVE_STREAM_KEEPALIVE"];
  if (keepalive !== undefined && keepalive !== "") {
    const ms = parseDuration(keepalive);
    if (ms === undefined || ms < 100 || ms > 3_600_000) {
      throw new ConfigError(
        `SDSERVE_STREAM_KEEPALIVE must be a duration from 100ms to 1h (10s, 500ms), got "${keepalive}"`,
      );
    }
    streamKeepaliveMs = ms;
  }

  let bodyLimit = 1024 * 1024;
  const body = env["SDSERVE_BODY_LIMIT"];
  if (body !== undefined && body !== "") {
    const b = parseBytes(body);
    if (b === undefined || b < 1024) {
      throw new ConfigError(
        `SDSERVE_BODY_LIMIT must be a size of at least 1kb (such as 1048576, 512kb, 2mb), got "${body}"`,
      );
    }
    bodyLimit = b;
  }

  let rateLimit: Config["rateLimit"] = null;
  const rate = env["SDSERVE_RATE_LIMIT"];
  if (rate !== undefined && rate !== "" && rate.trim().toLowerCase() !== "off") {
    const m = /^(\d+)\s*\/\s*(\d*)\s*(s|m|h)$/.exec(rate.trim());
    const max = m ? Number(m[1]) : 0;
    if (!m || max < 1) throw new ConfigError(`SDSERVE_RATE_LIMIT must look like 600/m, 10/s or 5000/h, got "${rate}"`);
    rateLimit = { max, windowMs: Number(m[2] || 1) * (UNITS_MS[m[3] as string] as number) };
  }

  const databaseUrl = serviceUrl("DATABASE_URL", env["DATABASE_URL"], ["postgres:", "postgresql:"]);
  const redisUrl = serviceUrl("REDIS_URL", env["REDIS_URL"], ["redis:", "rediss:"]);
  const runWorker = !(values as { "no-worker"?: boolean })["no-worker"];
  if (!runWorker && !redisUrl) {
    throw new ConfigError("--no-worker needs REDIS_URL: an API-only node hands predictions to workers through Redis");
  }
  if (command === "worker" && !redisUrl) {
    throw new ConfigError("sdserve worker needs REDIS_URL: it takes its jobs from the shared queue on Redis");
  }
  const concurrency = pick("concurrency", "SDSERVE_WORKER_CONCURRENCY");
  const redisPrefix = env["SDSERVE_REDIS_PREFIX"] || "sdserve";
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(redisPrefix)) {
    throw new ConfigError(`SDSERVE_REDIS_PREFIX must be 1-64 letters, digits, _ . or -, got "${redisPrefix}"`);
  }
  let jobLockMs = 30_000;
  const lock = env["SDSERVE_JOB_LOCK"];
  if (lock !== undefined && lock !== "") {
    const ms = parseDuration(lock);
    if (ms === undefined || ms < 1000) {
      throw new ConfigError(`SDSERVE_JOB_LOCK must be a duration of 1s or more (30s, 2m), got "${lock}"`);
    }
    jobLockMs = ms;
  }

  const s3 = s3Settings(env);

  const corsOrigins = (env["SDSERVE_CORS_ORIGINS"] ?? "")
    .split(",")
    .map((o) => o.trim().replace(/\/+$/, ""))
    .filter(Boolean);

  const queueMax = env["SDSERVE_QUEUE_MAX"]
    ? integer("SDSERVE_QUEUE_MAX", env["SDSERVE_QUEUE_MAX"], 1, 1_000_000)
    : 100;
  return {
    port: port ? integer(port[0], port[1], 0, 65535) : command === "worker" ? 9090 : 8080,
    host: pick("host", "SDSERVE_HOST")?.[1] ?? "127.0.0.1",
    dataDir: path.resolve(pick("data-dir", "SDSERVE_DATA_DIR")?.[1] ?? defaultDataDir(env)),
    model: model?.[1],
    modelsFile: modelsFile?.[1],
    models: catalog(model?.[1], modelsFile?.[1], variant),
    variant,
    hub: hubSettingsFromEnv(env),
    threads: threads ? integer(threads[0], threads[1], 1, 1024) : undefined,
    provider,
    apiTokens,
    outputRetentionMs,
    queueMax,
    queueMaxPerToken: env["SDSERVE_QUEUE_MAX_PER_TOKEN"]
      ? integer("SDSERVE_QUEUE_MAX_PER_TOKEN", env["SDSERVE_QUEUE_MAX_PER_TOKEN"], 1, 1_000_000)
      : Math.ceil(queueMax / 2),
    bodyLimit,
    publicBaseUrl,
    trustProxy,
    maxWaitSeconds: env["SDSERVE_MAX_WAIT"] ? integer("SDSERVE_MAX_WAIT", env["SDSERVE_MAX_WAIT"], 1, 3600) : 60,
    maxRunTimeMs,
    streamKeepaliveMs,
    streamsPerPrediction: env["SDSERVE_STREAMS_PER_PREDICTION"]
      ? integer("SDSERVE_STREAMS_PER_PREDICTION", env["SDSERVE_STREAMS_PER_PREDICTION"], 1, 100_000)
      : 20,
    streamsPerClient: env["SDSERVE_STREAMS_PER_CLIENT"]
      ? integer("SDSERVE_STREAMS_PER_CLIENT", env["SDSERVE_STREAMS_PER_CLIENT"], 1, 100_000)
      : 50,
    webhookAllowPrivate: boolean("SDSERVE_WEBHOOK_ALLOW_PRIVATE", env["SDSERVE_WEBHOOK_ALLOW_PRIVATE"] ?? ""),
    corsOrigins,
    rateLimit,
    databaseUrl,
    redisUrl,
    redisPrefix,
    workerConcurrency: concurrency ? integer(concurrency[0], concurrency[1], 1, 64) : 1,
    jobLockMs,
    runWorker,
    s3,
  };
}

function s3Settings(env: NodeJS.ProcessEnv): S3Settings | undefined {
  const outputUrls = (env["SDSERVE_OUTPUT_URLS"] || "proxy").trim().toLowerCase();
  if (outputUrls !== "proxy" && outputUrls !== "presigned") {
    throw new ConfigError(`SDSERVE_OUTPUT_URLS must be proxy or presigned, got "${env["SDSERVE_OUTPUT_URLS"]}"`);
  }
  const bucket = env["S3_BUCKET"]?.trim();
  if (!bucket) {
    if (outputUrls === "presigned") throw new ConfigError("SDSERVE_OUTPUT_URLS=presigned needs S3_BUCKET");
    return undefined;
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError(`S3_BUCKET must be a bucket name (3-63 of a-z 0-9 . -), got "${bucket}"`);
  }
  const endpoint = serviceUrl("S3_ENDPOINT", env["S3_ENDPOINT"], ["http:", "https:"]);
  const keyId = env["S3_ACCESS_KEY_ID"];
  const secret = env["S3_SECRET_ACCESS_KEY"];
  if (Boolean(keyId) !== Boolean(secret)) {
    throw new ConfigError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together: set both, or neither");
  }
  let prefix = (env["S3_PREFIX"] ?? "").trim().replace(/^\/+/, "");
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return {
    bucket,
    prefix,
    endpoint,
    region: env["S3_REGION"] || env["AWS_REGION"] || "us-east-1",
    forcePathStyle: boolean("S3_FORCE_PATH_STYLE", env["S3_FORCE_PATH_STYLE"] ?? (endpoint ? "true" : "false")),
    credentials: keyId && secret ? { accessKeyId: keyId, secretAccessKey: secret } : undefined,
    presign: outputUrls === "presigned",
  };
}

/** A service URL from the environment, checked for its scheme; the error never echoes a password. */
function serviceUrl(name: string, text: string | undefined, schemes: string[]): string | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  let u: URL;
  try {
    u = new URL(text.trim());
  } catch {
    throw new ConfigError(`${name} must be a URL (${schemes[0]}//…)`);
  }
  if (!schemes.includes(u.protocol)) {
    throw new ConfigError(`${name} must be a ${schemes.map((s) => `${s}//`).join(" or ")} URL, not ${u.protocol}//…`);
  }
  return text.trim();
}
