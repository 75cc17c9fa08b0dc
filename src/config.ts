/**
 * Every setting of sdserve, in one table (SETTINGS): its flag, its environment variables, its
 * type, its default and its help. `loadConfig` reads values through the table and each command's
 * --help prints its part of the table, so a default is written once, here. Modules receive the
 * parsed values, never process.env. A flag wins over its environment variables (the first one
 * set wins among those); a bad value fails at start with a message naming the flag or variable.
 *
 * To add a setting: add a row to SETTINGS (the help follows), then use `values.<key>` in
 * loadConfig to fill the Config field that carries it.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_HUB_ENDPOINT, type HubSettings } from "./engine/hub/settings.js";
import { CatalogError, DEFAULT_WEIGHTS, type ModelSpec, modelCatalog, withImageInputModels } from "./model-catalog.js";
import { allowedHostEntry } from "./server/files/file-inputs.js";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** The commands that read settings; each row says which of them take its flag and show it in --help. */
export type Command = "serve" | "worker" | "generate" | "models";
type Env = NodeJS.ProcessEnv;

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface S3Settings {
  bucket: string;
  /** Key prefix ("" or ending in /). */
  prefix: string;
  /** An S3-compatible server's URL; absent: AWS's endpoint for the region. */
  endpoint: string | undefined;
  region: string;
  /** Path-style URLs (endpoint/bucket/key), as most S3-compatible servers want. */
  forcePathStyle: boolean;
  /** Explicit keys; absent: the AWS SDK's default chain (AWS_* variables, profiles, instance roles). */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  /** Serve outputs as redirects to presigned URLs instead of through the API. */
  presign: boolean;
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
  /** Longest side of a TAESD step preview, in pixels (models with a preview_vae). */
  previewSize: number;
  /** The Hugging Face Hub, its cache and token (HF_* variables). */
  hub: HubSettings;
  /** sdserve's own cache (tiny-random is built there). */
  cacheDir: string;
  /** Where onnxruntime's optimised networks are kept; false: not kept. */
  optimizedCache: string | false;
  /** ONNX Runtime intra-op threads (undefined: one per core). */
  threads: number | undefined;
  provider: "cpu" | "cuda";
  /** Least severe log record written. */
  logLevel: LogLevel;
  /** json: one JSON object a line; pretty: readable lines; auto: pretty on a terminal, else json. */
  logFormat: "auto" | "json" | "pretty";
  /** Accepted API tokens; empty: one is generated on first start and kept in the data directory. */
  apiTokens: string[];
  /** AUTOMATIC1111's --api-auth: HTTP Basic users of the /sdapi/v1 routes. */
  apiAuth: { user: string; password: string }[];
  /** How long outputs are kept after a prediction completes, in ms; null keeps them forever. */
  outputRetentionMs: number | null;
  /** Most predictions waiting or running at once; beyond it create answers 429. */
  queueMax: number;
  /** Most unfinished predictions of one token, so that one token cannot fill the queue for all (429 beyond). */
  queueMaxPerToken: number;
  /** Largest request body accepted, in bytes (413 beyond). */
  bodyLimit: number;
  /** Largest /sdapi/v1/img2img body (its pictures come as base64 in the JSON), in bytes (413 beyond). */
  a1111BodyLimit: number;
  /** Memory for the served JSON of finished predictions (the read path's cache), in bytes; 0: none. */
  readCacheBytes: number;
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
  /** How long Files API uploads are kept, in ms. */
  fileRetentionMs: number;
  /** Fetch URL file inputs from loopback/private/link-local addresses too (SDSERVE_ALLOW_PRIVATE_URLS). */
  allowPrivateUrls: boolean;
  /** Hosts (host or host:port) whose URL file inputs may be internal; their redirects are still checked (SDSERVE_ALLOWED_URL_HOSTS). */
  allowedUrlHosts: string[];
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

// ---------------------------------------------------------------------------------------------
// Value parsers. Each gets the text and the name it came from (the flag or variable used), and
// `label`, every name of the setting ("--variant / SDSERVE_VARIANT"), for messages about choices.

type Parse<T> = (text: string, name: string, label: string) => T;

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

function parseBytes(text: string): number | undefined {
  const m = /^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? "b").toLowerCase();
  const scale = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? 1024 ** 2 : unit.startsWith("g") ? 1024 ** 3 : 1;
  return Number(m[1]) * scale;
}

const text: Parse<string> = (t) => t;

function integer(min: number, max: number): Parse<number> {
  return (t, name) => {
    if (!/^\d+$/.test(t.trim()) || Number(t) < min || Number(t) > max) {
      throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${t}"`);
    }
    return Number(t);
  };
}

const boolean: Parse<boolean> = (t, name) => {
  const v = t.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off", ""].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got "${t}"`);
};

function oneOf<const C extends readonly string[]>(choices: C): Parse<C[number]> {
  return (t, _name, label) => {
    const v = t.trim();
    if (!(choices as readonly string[]).includes(v)) {
      throw new ConfigError(`${label} must be ${choices.slice(0, -1).join(", ")} or ${choices.at(-1)}, got "${t}"`);
    }
    return v as C[number];
  };
}

/** A duration within [min, max] ms, given as in `examples`; with `never`, "never" reads as null. */
function duration(opts: { min: number; max?: number; examples: string; never: true }): Parse<number | null>;
function duration(opts: { min: number; max?: number; examples: string; never?: false }): Parse<number>;
function duration(opts: { min: number; max?: number; examples: string; never?: boolean }): Parse<number | null> {
  const range =
    opts.max === undefined ? `of ${showMs(opts.min)} or more` : `from ${showMs(opts.min)} to ${showMs(opts.max)}`;
  return (t, name) => {
    if (opts.never && t.trim().toLowerCase() === "never") return null;
    const ms = parseDuration(t);
    if (ms === undefined || ms < opts.min || (opts.max !== undefined && ms > opts.max)) {
      throw new ConfigError(
        `${name} must be a duration ${range} (such as ${opts.examples})${opts.never ? " or never" : ""}, got "${t}"`,
      );
    }
    return ms;
  };
}

function showMs(ms: number): string {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

function bytes(min: number): Parse<number> {
  return (t, name) => {
    const b = parseBytes(t);
    if (b === undefined || b < min) {
      throw new ConfigError(
        `${name} must be a size${min > 0 ? ` of at least ${min / 1024}kb` : ""} (such as 1048576, 512kb, 2mb), got "${t}"`,
      );
    }
    return b;
  };
}

function commaList(clean: (item: string) => string = (s) => s): Parse<string[]> {
  return (t) =>
    t
      .split(",")
      .map((s) => clean(s.trim()))
      .filter(Boolean);
}

/** A service URL, checked for its scheme; the error never echoes a password. */
function serviceUrl(schemes: string[]): Parse<string | undefined> {
  return (t, name) => {
    if (t.trim() === "") return undefined;
    let u: URL;
    try {
      u = new URL(t.trim());
    } catch {
      throw new ConfigError(`${name} must be a URL (${schemes[0]}//…)`);
    }
    if (!schemes.includes(u.protocol)) {
      throw new ConfigError(`${name} must be a ${schemes.map((s) => `${s}//`).join(" or ")} URL, not ${u.protocol}//…`);
    }
    return t.trim();
  };
}

const publicUrl: Parse<string> = (t, name) => {
  let u: URL;
  try {
    u = new URL(t);
  } catch {
    throw new ConfigError(`${name} must be an absolute http(s) URL, got "${t}"`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new ConfigError(`${name} must be an http or https URL, got "${t}"`);
  }
  return `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
};

const PROXY_KEYWORDS = ["loopback", "linklocal", "uniquelocal"];

/** A comma-separated list of proxy addresses, CIDRs and proxy-addr's keywords, each checked. */
const trustProxy: Parse<string[]> = (text, name) => {
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
};

const rateLimit: Parse<Config["rateLimit"]> = (t, name) => {
  if (t.trim().toLowerCase() === "off") return null;
  const m = /^(\d+)\s*\/\s*(\d*)\s*(s|m|h)$/.exec(t.trim());
  const max = m ? Number(m[1]) : 0;
  if (!m || max < 1) throw new ConfigError(`${name} must look like 600/m, 10/s or 5000/h, got "${t}"`);
  return { max, windowMs: Number(m[2] || 1) * (UNITS_MS[m[3] as string] as number) };
};

function matching(re: RegExp, what: string): Parse<string> {
  return (t, name) => {
    if (!re.test(t)) throw new ConfigError(`${name} must be ${what}, got "${t}"`);
    return t;
  };
}

const apiTokens: Parse<string[]> = (t, name) => {
  const tokens = commaList()(t, name, name);
  if (tokens.some((tok) => !/^[\x21-\x7e]+$/.test(tok)))
    throw new ConfigError(`${name}: tokens must be printable ASCII without spaces`);
  return tokens;
};

/** SDSERVE_ALLOWED_URL_HOSTS: hosts, normalised as file-inputs.ts matches them. */
const allowedHosts: Parse<string[]> = (t, name) =>
  commaList()(t, name, name).map((entry) => {
    const host = allowedHostEntry(entry);
    if (!host)
      throw new ConfigError(`${name}: each entry must be a host or host:port (IPv6 in brackets), got "${entry}"`);
    return host;
  });

/** AUTOMATIC1111's --api-auth: user:pass[,user2:pass2]; the password may hold colons, the user may not. */
const apiAuth: Parse<{ user: string; password: string }[]> = (t, name) =>
  commaList()(t, name, name).map((pair) => {
    const colon = pair.indexOf(":");
    if (colon <= 0 || colon === pair.length - 1 || !/^[\x21-\x7e]+$/.test(pair)) {
      throw new ConfigError(`${name}: each entry must be user:password, printable ASCII without spaces`);
    }
    return { user: pair.slice(0, colon), password: pair.slice(colon + 1) };
  });

/** huggingface_hub's reading of HF_HUB_OFFLINE: these words are true, anything else false. */
const hubFlag: Parse<boolean> = (t) => ["1", "true", "yes", "on"].includes(t.trim().toLowerCase());

const folder: Parse<string> = (t) => path.resolve(t);

// ---------------------------------------------------------------------------------------------
// The table.

type Section = "options" | "environment" | "scale-out" | "hub";

interface DefaultContext {
  env: Env;
  command: Command;
}

/** The default as text, parsed like a value given by the user; per command; or computed. */
type Default = string | Partial<Record<Command, string>> | ((ctx: DefaultContext) => string);

interface SettingSpec<T> {
  /** The flag without its dashes; absent: environment only. */
  flag?: string;
  /** The flag's argument as --help shows it ("<n>"); absent with a flag: a switch, read as true when given. */
  arg?: string;
  /** Environment variables, in precedence order. */
  env?: readonly string[];
  /** The commands taking the flag and listing the setting in --help. */
  commands: readonly Command[];
  section: Section;
  default?: Default;
  /** How --help names a computed default (or a default that the code works out elsewhere). */
  shownDefault?: string;
  parse: Parse<T>;
  help: string;
}

interface Setting<T, HasDefault extends boolean> extends SettingSpec<T> {
  /** Types only: whether a value is always there. */
  readonly hasDefault?: HasDefault;
}

function setting<T>(s: SettingSpec<T> & { default: Default }): Setting<T, true>;
function setting<T>(s: SettingSpec<T> & { default?: undefined }): Setting<T, false>;
function setting<T>(s: SettingSpec<T>): Setting<T, boolean> {
  return s;
}

const ENGINE: Command[] = ["serve", "worker", "generate"];
const SERVED: Command[] = ["serve", "worker", "models"];
const SERVICE: Command[] = ["serve", "worker"];
const SERVE: Command[] = ["serve"];
const ALL: Command[] = ["serve", "worker", "generate", "models"];

function xdg(env: Env, name: string, fallback: string[]): string {
  return env[name] || path.join(os.homedir(), ...fallback);
}

export const SETTINGS = {
  model: setting({
    flag: "model",
    arg: "<source>",
    env: ["SDSERVE_MODEL"],
    commands: SERVED,
    section: "options",
    shownDefault: DEFAULT_WEIGHTS,
    parse: text,
    help: "weights of stability-ai/stable-diffusion: a diffusers-format SD 1.x/2.x folder, a Hugging Face model id (owner/name[@revision], downloaded on first start), or tiny-random; SDXL weights are served as stability-ai/sdxl",
  }),
  modelsFile: setting({
    flag: "models",
    arg: "<file>",
    env: ["SDSERVE_MODELS"],
    commands: SERVED,
    section: "options",
    parse: text,
    help: "a JSON models file mapping owner/name to weights and input defaults",
  }),
  previewVae: setting({
    flag: "preview-vae",
    arg: "<folder>",
    env: ["SDSERVE_PREVIEW_VAE"],
    commands: SERVICE,
    section: "options",
    shownDefault: "the linear latent map",
    parse: folder,
    help: "an AutoencoderTiny (TAESD) folder, e.g. madebyollin/taesd, that draws the live previews (stream ?preview=1, the web page) of models whose models-file entry names no preview_vae",
  }),
  previewSize: setting({
    flag: "preview-size",
    arg: "<px>",
    env: ["SDSERVE_PREVIEW_SIZE"],
    commands: SERVICE,
    section: "options",
    default: "256",
    parse: integer(8, 1024),
    help: "longest side of a TAESD preview; larger images are previewed from averaged latents, at a quarter of the cost per halving",
  }),
  variant: setting({
    flag: "variant",
    arg: "<fp32|fp16>",
    env: ["SDSERVE_VARIANT"],
    commands: ALL,
    section: "options",
    default: "fp32",
    parse: oneOf(["fp32", "fp16"] as const),
    help: "which weights to use where a model has both",
  }),
  workerConcurrency: setting({
    flag: "concurrency",
    arg: "<n>",
    env: ["SDSERVE_WORKER_CONCURRENCY"],
    commands: ["worker"],
    section: "scale-out",
    default: "1",
    parse: integer(1, 64),
    help: "predictions a worker process runs at once, with REDIS_URL",
  }),
  port: setting({
    flag: "port",
    arg: "<n>",
    env: ["SDSERVE_PORT", "PORT"],
    commands: SERVICE,
    section: "options",
    default: { serve: "8080", worker: "9090" },
    parse: integer(0, 65535),
    help: "port to listen on (a worker's: /health-check and /metrics); 0 picks a free one",
  }),
  host: setting({
    flag: "host",
    arg: "<addr>",
    env: ["SDSERVE_HOST"],
    commands: SERVICE,
    section: "options",
    default: "127.0.0.1",
    parse: text,
    help: "address to bind; 0.0.0.0 for all",
  }),
  dataDir: setting({
    flag: "data-dir",
    arg: "<dir>",
    env: ["SDSERVE_DATA_DIR"],
    commands: SERVICE,
    section: "options",
    default: ({ env }) => path.join(xdg(env, "XDG_DATA_HOME", [".local", "share"]), "sdserve"),
    shownDefault: "~/.local/share/sdserve",
    parse: folder,
    help: "SQLite database, outputs, the API token (where no DATABASE_URL / S3_BUCKET says otherwise)",
  }),
  threads: setting({
    flag: "threads",
    arg: "<n>",
    env: ["SDSERVE_THREADS"],
    commands: ENGINE,
    section: "options",
    shownDefault: "one per core",
    parse: integer(1, 1024),
    help: "CPU threads for ONNX Runtime",
  }),
  provider: setting({
    flag: "provider",
    arg: "<cpu|cuda>",
    env: ["SDSERVE_PROVIDER"],
    commands: ENGINE,
    section: "options",
    default: "cpu",
    parse: oneOf(["cpu", "cuda"] as const),
    help: "execution provider",
  }),
  publicBaseUrl: setting({
    flag: "public-url",
    arg: "<url>",
    env: ["SDSERVE_PUBLIC_URL"],
    commands: SERVE,
    section: "options",
    shownDefault: "from each request",
    parse: publicUrl,
    help: "external base URL for links in responses",
  }),
  trustProxy: setting({
    flag: "trust-proxy",
    arg: "<list>",
    env: ["SDSERVE_TRUST_PROXY"],
    commands: SERVE,
    section: "options",
    shownDefault: "none; the headers are ignored",
    parse: trustProxy,
    help: "reverse proxies whose X-Forwarded-Host/-Proto are honoured: addresses or CIDRs, comma-separated, or loopback",
  }),
  logLevel: setting({
    flag: "log-level",
    arg: "<level>",
    env: ["LOG_LEVEL"],
    commands: SERVICE,
    section: "options",
    default: "info",
    parse: oneOf(LOG_LEVELS),
    help: "least severe log record written: fatal, error, warn, info, debug, trace or silent (debug adds every step)",
  }),
  logFormat: setting({
    env: ["SDSERVE_LOG_FORMAT"],
    commands: SERVICE,
    section: "environment",
    default: "auto",
    parse: oneOf(["auto", "json", "pretty"] as const),
    help: "json: one JSON object a line; pretty: readable lines; auto: pretty on a terminal, json otherwise",
  }),
  noWorker: setting({
    flag: "no-worker",
    commands: SERVE,
    section: "options",
    default: "false",
    parse: boolean,
    help: "API only: run no predictions here; `sdserve worker` processes do (needs REDIS_URL)",
  }),
  apiTokens: setting({
    env: ["SDSERVE_API_TOKENS"],
    commands: SERVE,
    section: "environment",
    default: "",
    shownDefault: "one generated and printed on first start",
    parse: apiTokens,
    help: "comma-separated bearer tokens",
  }),
  apiAuth: setting({
    flag: "api-auth",
    arg: "<user:pass,...>",
    env: ["SDSERVE_API_AUTH"],
    commands: SERVE,
    section: "options",
    default: "",
    shownDefault: "none; Basic auth takes an API token as the password",
    parse: apiAuth,
    help: "AUTOMATIC1111's --api-auth: HTTP Basic users of /sdapi/v1, each with its own predictions",
  }),
  outputRetentionMs: setting({
    env: ["SDSERVE_OUTPUT_RETENTION"],
    commands: SERVE,
    section: "environment",
    default: "1h",
    parse: duration({ min: 1, examples: "90s, 1h, 7d", never: true }),
    help: "how long outputs are kept after completion: 90s, 1h, 7d, never",
  }),
  queueMax: setting({
    env: ["SDSERVE_QUEUE_MAX"],
    commands: SERVE,
    section: "environment",
    default: "100",
    parse: integer(1, 1_000_000),
    help: "most predictions waiting or running; beyond: 429",
  }),
  queueMaxPerToken: setting({
    env: ["SDSERVE_QUEUE_MAX_PER_TOKEN"],
    commands: SERVE,
    section: "environment",
    shownDefault: "half of SDSERVE_QUEUE_MAX",
    parse: integer(1, 1_000_000),
    help: "most of them from one token; beyond: 429",
  }),
  bodyLimit: setting({
    env: ["SDSERVE_BODY_LIMIT"],
    commands: SERVE,
    section: "environment",
    default: "1mb",
    parse: bytes(1024),
    help: "largest request body: 1048576, 512kb, 2mb; beyond: 413",
  }),
  a1111BodyLimit: setting({
    env: ["SDSERVE_A1111_BODY_LIMIT"],
    commands: SERVE,
    section: "environment",
    default: "48mb",
    parse: bytes(1024),
    help: "largest /sdapi/v1/img2img body, whose pictures come as base64 in the JSON; beyond: 413",
  }),
  readCacheBytes: setting({
    env: ["SDSERVE_READ_CACHE"],
    commands: SERVE,
    section: "environment",
    default: "32mb",
    parse: bytes(0),
    help: "memory for finished predictions' JSON, served again without a store read; 0: none",
  }),
  maxWaitSeconds: setting({
    env: ["SDSERVE_MAX_WAIT"],
    commands: SERVE,
    section: "environment",
    default: "60",
    parse: integer(1, 3600),
    help: "longest Prefer: wait, in seconds",
  }),
  maxRunTimeMs: setting({
    env: ["SDSERVE_MAX_RUN_TIME"],
    commands: SERVE,
    section: "environment",
    default: "never",
    parse: duration({ min: 1000, examples: "10m, 1h", never: true }),
    help: "cancel predictions older than this: 10m, 1h, never",
  }),
  streamKeepaliveMs: setting({
    env: ["SDSERVE_STREAM_KEEPALIVE"],
    commands: SERVE,
    section: "environment",
    default: "10s",
    parse: duration({ min: 100, max: 3_600_000, examples: "10s, 500ms" }),
    help: 'a ": ping" comment on open event streams this often, for proxies that close quiet connections sooner; a client that takes nothing for three of these loses its stream',
  }),
  streamsPerPrediction: setting({
    env: ["SDSERVE_STREAMS_PER_PREDICTION"],
    commands: SERVE,
    section: "environment",
    default: "20",
    parse: integer(1, 100_000),
    help: "most event streams open on one prediction; beyond: 429",
  }),
  streamsPerClient: setting({
    env: ["SDSERVE_STREAMS_PER_CLIENT"],
    commands: SERVE,
    section: "environment",
    default: "50",
    parse: integer(1, 100_000),
    help: "most event streams open from one client address; beyond: 429",
  }),
  webhookAllowPrivate: setting({
    env: ["SDSERVE_WEBHOOK_ALLOW_PRIVATE"],
    commands: SERVICE,
    section: "environment",
    default: "false",
    parse: boolean,
    help: "true: allow webhooks to loopback and private addresses",
  }),
  fileRetentionMs: setting({
    env: ["SDSERVE_FILE_RETENTION"],
    commands: SERVICE,
    section: "environment",
    default: "24h",
    parse: duration({ min: 1000, examples: "1h, 24h, 7d" }),
    help: "how long a file uploaded through the Files API (POST /v1/files) is kept",
  }),
  allowPrivateUrls: setting({
    env: ["SDSERVE_ALLOW_PRIVATE_URLS"],
    commands: [...SERVICE, "generate"],
    section: "environment",
    default: "false",
    parse: boolean,
    help: "true: fetch file inputs (image URLs) from loopback and private addresses, and send webhooks there",
  }),
  allowedUrlHosts: setting({
    env: ["SDSERVE_ALLOWED_URL_HOSTS"],
    commands: SERVICE,
    section: "environment",
    default: "",
    shownDefault: "none",
    parse: allowedHosts,
    help: "comma-separated hosts (host or host:port) whose file input URLs may be on private addresses, such as an internal image store; where they redirect is checked as any URL",
  }),
  corsOrigins: setting({
    env: ["SDSERVE_CORS_ORIGINS"],
    commands: SERVE,
    section: "environment",
    default: "",
    shownDefault: "none",
    parse: commaList((o) => o.replace(/\/+$/, "")),
    help: "comma-separated origins allowed by CORS, or *",
  }),
  rateLimit: setting({
    env: ["SDSERVE_RATE_LIMIT"],
    commands: SERVE,
    section: "environment",
    default: "off",
    parse: rateLimit,
    help: "per-token request limit such as 600/m or 10/s",
  }),
  cacheDir: setting({
    env: ["SDSERVE_CACHE"],
    commands: ENGINE,
    section: "environment",
    default: ({ env }) => path.join(xdg(env, "XDG_CACHE_HOME", [".cache"]), "sdserve"),
    shownDefault: "~/.cache/sdserve",
    parse: folder,
    help: "sdserve's cache: tiny-random, optimised models",
  }),
  optimizedCache: setting({
    env: ["SDSERVE_OPTIMIZED_CACHE"],
    commands: ENGINE,
    section: "environment",
    shownDefault: "$SDSERVE_CACHE/optimized",
    parse: (t): string | false => (/^(0|off|false|no)$/i.test(t.trim()) ? false : path.resolve(t.trim())),
    help: "where ONNX Runtime's optimised form of each network is kept so later loads skip optimising; off: not kept",
  }),
  databaseUrl: setting({
    env: ["DATABASE_URL"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "SQLite in --data-dir",
    parse: serviceUrl(["postgres:", "postgresql:"]),
    help: "postgres://user:pass@host:5432/db: predictions in PostgreSQL, shared by every node and worker; the schema is migrated on start",
  }),
  redisUrl: setting({
    env: ["REDIS_URL"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "in-process",
    parse: serviceUrl(["redis:", "rediss:"]),
    help: "redis://host:6379[/db]: the queue (BullMQ) and prediction events on Redis, so that Prefer: wait, streams and webhooks work on any node",
  }),
  redisPrefix: setting({
    env: ["SDSERVE_REDIS_PREFIX"],
    commands: SERVICE,
    section: "scale-out",
    default: "sdserve",
    parse: matching(/^[A-Za-z0-9_.-]{1,64}$/, "1-64 letters, digits, _ . or -"),
    help: "prefix of Redis keys and channels",
  }),
  jobLockMs: setting({
    env: ["SDSERVE_JOB_LOCK"],
    commands: SERVICE,
    section: "scale-out",
    default: "30s",
    parse: duration({ min: 1000, examples: "30s, 2m" }),
    help: "a worker's claim on a running job; when a worker dies, its job runs again elsewhere after about this long",
  }),
  s3Bucket: setting({
    env: ["S3_BUCKET"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "files in --data-dir",
    parse: (t, name) =>
      t.trim() === ""
        ? undefined
        : matching(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "a bucket name (3-63 of a-z 0-9 . -)")(t.trim(), name, name),
    help: "outputs in this S3 bucket, shared by every node and worker; retention deletes them",
  }),
  s3Endpoint: setting({
    env: ["S3_ENDPOINT"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "AWS S3 of S3_REGION",
    parse: serviceUrl(["http:", "https:"]),
    help: "an S3-compatible server's URL",
  }),
  s3Region: setting({
    env: ["S3_REGION", "AWS_REGION"],
    commands: SERVICE,
    section: "scale-out",
    default: "us-east-1",
    parse: text,
    help: "the bucket's region",
  }),
  s3AccessKeyId: setting({
    env: ["S3_ACCESS_KEY_ID"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "the AWS SDK's chain: AWS_ACCESS_KEY_ID, profiles, roles",
    parse: text,
    help: "access key; goes with S3_SECRET_ACCESS_KEY",
  }),
  s3SecretAccessKey: setting({
    env: ["S3_SECRET_ACCESS_KEY"],
    commands: SERVICE,
    section: "scale-out",
    parse: text,
    help: "secret key; goes with S3_ACCESS_KEY_ID",
  }),
  s3ForcePathStyle: setting({
    env: ["S3_FORCE_PATH_STYLE"],
    commands: SERVICE,
    section: "scale-out",
    shownDefault: "true with S3_ENDPOINT, else false",
    parse: boolean,
    help: "true: endpoint/bucket/key URLs",
  }),
  s3Prefix: setting({
    env: ["S3_PREFIX"],
    commands: SERVICE,
    section: "scale-out",
    default: "",
    shownDefault: "none",
    parse: (t) => {
      const p = t.trim().replace(/^\/+/, "");
      return p && !p.endsWith("/") ? `${p}/` : p;
    },
    help: "key prefix inside the bucket, such as sdserve/",
  }),
  outputUrls: setting({
    env: ["SDSERVE_OUTPUT_URLS"],
    commands: SERVE,
    section: "scale-out",
    default: "proxy",
    parse: (t, name, label) => oneOf(["proxy", "presigned"] as const)(t.trim().toLowerCase(), name, label),
    help: "proxy: the API serves output files; presigned: it redirects each download to a presigned S3 URL (needs S3_BUCKET)",
  }),
  hubCache: setting({
    env: ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"],
    commands: ALL,
    section: "hub",
    shownDefault: "$HF_HOME/hub",
    parse: folder,
    help: "where downloaded weights are kept",
  }),
  hubHome: setting({
    env: ["HF_HOME"],
    commands: ALL,
    section: "hub",
    default: ({ env }) => path.join(xdg(env, "XDG_CACHE_HOME", [".cache"]), "huggingface"),
    shownDefault: "~/.cache/huggingface",
    parse: text,
    help: "the Hugging Face folder: the hub cache and the saved token",
  }),
  hubToken: setting({
    env: ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"],
    commands: ALL,
    section: "hub",
    shownDefault: 'the one saved by "huggingface-cli login"',
    parse: (t) => t.trim(),
    help: "token for gated or private repositories",
  }),
  hubTokenPath: setting({
    env: ["HF_TOKEN_PATH"],
    commands: ALL,
    section: "hub",
    shownDefault: "$HF_HOME/token",
    parse: text,
    help: 'the file "huggingface-cli login" writes the token to',
  }),
  hubEndpoint: setting({
    env: ["HF_ENDPOINT"],
    commands: ALL,
    section: "hub",
    default: DEFAULT_HUB_ENDPOINT,
    parse: (t) => t.trim().replace(/\/+$/, ""),
    help: "the hub, or a mirror of it",
  }),
  hubOffline: setting({
    env: ["HF_HUB_OFFLINE"],
    commands: ALL,
    section: "hub",
    default: "0",
    parse: hubFlag,
    help: "1: never use the network: weights from the cache only",
  }),
} as const;

type Settings = typeof SETTINGS;
export type SettingKey = keyof Settings;
/** The value of each setting after reading: undefined only for those with no default. */
export type SettingValues = {
  -readonly [K in SettingKey]: Settings[K] extends Setting<infer T, infer D>
    ? D extends true
      ? T
      : T | undefined
    : never;
};

const rows = (): [SettingKey, SettingSpec<unknown>][] =>
  Object.entries(SETTINGS) as [SettingKey, SettingSpec<unknown>][];

function labelOf(s: SettingSpec<unknown>): string {
  return [...(s.flag ? [`--${s.flag}`] : []), ...(s.env ?? [])].join(" / ");
}

function defaultText(s: SettingSpec<unknown>, ctx: DefaultContext): string | undefined {
  const d = s.default;
  if (d === undefined || typeof d === "string") return d;
  if (typeof d === "function") return d(ctx);
  return d[ctx.command] ?? Object.values(d)[0];
}

/** The parseArgs options for a command's flags. */
export function settingFlags(command: Command): Record<string, { type: "string" | "boolean" }> {
  const flags: Record<string, { type: "string" | "boolean" }> = {};
  for (const [, s] of rows()) {
    if (s.flag && s.commands.includes(command)) flags[s.flag] = { type: s.arg ? "string" : "boolean" };
  }
  return flags;
}

/** The flag or variable a setting's value comes from; undefined when it is its default. */
export function settingSource(
  command: Command,
  key: SettingKey,
  flags: Record<string, string | boolean | undefined>,
  env: Env,
): string | undefined {
  const s: SettingSpec<unknown> = SETTINGS[key];
  const given = s.flag && s.commands.includes(command) ? flags[s.flag] : undefined;
  if (given !== undefined && given !== false) return `--${s.flag}`;
  return s.env?.find((v) => env[v] !== undefined && env[v] !== "");
}

/**
 * Every setting's value: the command's flag (from parseArgs), else the first environment
 * variable set (empty counts as unset), else the default; parsed and checked by the row.
 */
export function readSettings(
  command: Command,
  flags: Record<string, string | boolean | undefined>,
  env: Env,
): SettingValues {
  const values: Record<string, unknown> = {};
  for (const [key, s] of rows()) {
    const label = labelOf(s);
    const from = settingSource(command, key, flags, env);
    const fallback = defaultText(s, { env, command });
    if (from) {
      const given = from.startsWith("--") ? flags[s.flag as string] : env[from];
      values[key] = s.parse(given === true ? "true" : String(given), from, label);
    } else if (fallback !== undefined) values[key] = s.parse(fallback, `the default of ${label}`, label);
    else values[key] = undefined;
  }
  return values as SettingValues;
}

// ---------------------------------------------------------------------------------------------
// --help: the table's rows for one command, in sections.

const WIDTH = 108;

function wrap(words: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const w of words.split(" ")) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

function rowHelp(s: SettingSpec<unknown>, command: Command): string {
  if (s.flag && !s.arg) return s.help; // a switch: off unless given
  const shown =
    s.shownDefault ?? (typeof s.default === "function" ? undefined : defaultText(s, { env: {}, command }) || undefined);
  return shown === undefined ? s.help : `${s.help} (default ${shown})`;
}

function table(entries: [string, string][], column: number): string {
  const out: string[] = [];
  for (const [left, help] of entries) {
    const lines = wrap(help, WIDTH - column);
    const first = left.length + 2 < column ? `  ${left.padEnd(column - 2)}${lines.shift() ?? ""}` : `  ${left}`;
    out.push(first.trimEnd(), ...lines.map((l) => `${" ".repeat(column)}${l}`));
  }
  return out.join("\n");
}

const SECTION_TITLES: Record<Section, string> = {
  options: "Options (each also read from the environment variable shown):",
  environment: "Environment only:",
  "scale-out": "Scale-out (each unset: the embedded default shown):",
  hub: "Hugging Face Hub (as Python's huggingface_hub reads them; the cache is shared with it):",
};

/** The settings part of a command's --help, generated from SETTINGS. */
export function settingsHelp(
  command: Command,
  sections: readonly Section[] = ["options", "environment", "scale-out", "hub"],
): string {
  const parts: string[] = [];
  for (const section of sections) {
    const mine = rows().filter(([, s]) => s.section === section && s.commands.includes(command));
    if (mine.length === 0) continue;
    const entries: [string, string][] = mine.map(([, s]) => {
      if (section === "options" && s.flag) {
        const flag = `--${s.flag}${s.arg ? ` ${s.arg}` : ""}`.padEnd(24);
        return [`${flag}${(s.env ?? []).join(", ")}`, rowHelp(s, command)];
      }
      const names = [
        ...(s.flag && s.commands.includes(command) ? [`--${s.flag} ${s.arg ?? ""}`.trim()] : []),
        ...(s.env ?? []),
      ];
      return [names.join(", "), rowHelp(s, command)];
    });
    parts.push(`${SECTION_TITLES[section]}\n${table(entries, section === "options" ? 48 : 34)}`);
  }
  return `${parts.join("\n\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// Config: the settings read and assembled for `sdserve serve` / `sdserve worker`.

export const SERVE_HELP = `Usage: sdserve serve [--model <folder|owner/name|tiny-random>] [--models <file>] [options]

Serves Replicate's predictions API (and OpenAI's images API) for stability-ai/stable-diffusion
(on ${DEFAULT_WEIGHTS} unless --model says otherwise) or the models a models file lists.
The API answers at once; weights are downloaded and loaded in the background (see /health-check).
GET /metrics serves Prometheus metrics. Logs are JSON lines (pino) unless on a terminal.

${settingsHelp("serve")}`;

export const WORKER_HELP = `Usage: sdserve worker [--model <folder|owner/name|tiny-random>] [--models <file>] [options]

Runs predictions that API nodes (sdserve serve --no-worker, or any sdserve serve on the same Redis)
put in the shared queue: takes jobs from Redis, runs them on this machine's engine, writes the
outputs and the predictions' progress to the shared store and files, and announces every change
on Redis. Serve the same models as the API nodes. /health-check and /metrics answer on --port.

Needs REDIS_URL, and DATABASE_URL and S3_BUCKET unless every process shares one --data-dir.
Retention, deadlines and limits are the API nodes' settings (see sdserve serve --help).

${settingsHelp("worker")}`;

/** The Hugging Face Hub settings, with huggingface_hub's precedence (the token file read last). */
export function hubSettings(values: SettingValues): HubSettings {
  let token = values.hubToken || undefined;
  if (token === undefined) {
    try {
      token = readFileSync(values.hubTokenPath ?? path.join(values.hubHome, "token"), "utf8").trim() || undefined;
    } catch {
      // No login: anonymous access, which is all that public models need.
    }
  }
  return {
    endpoint: values.hubEndpoint,
    token,
    cacheDir: path.resolve(values.hubCache ?? path.join(values.hubHome, "hub")),
    offline: values.hubOffline,
  };
}

/** The HF_* variables read as Python's huggingface_hub reads them (for the library and `sdserve models`). */
export function hubSettingsFromEnv(env: Env = process.env): HubSettings {
  return hubSettings(readSettings("models", {}, env));
}

/** What the engine needs from the settings: its caches and the hub. */
export interface EngineSettings {
  cacheDir: string;
  optimizedCache: string | false;
  hub: HubSettings;
}

export function engineSettings(values: SettingValues): EngineSettings {
  return {
    cacheDir: values.cacheDir,
    optimizedCache: values.optimizedCache ?? path.join(values.cacheDir, "optimized"),
    hub: hubSettings(values),
  };
}

function catalog(
  model: string | undefined,
  modelsFile: string | undefined,
  variant: "fp32" | "fp16",
  previewVae: string | undefined,
): ModelSpec[] {
  try {
    return withImageInputModels(modelCatalog({ model, modelsFile, variant, previewVae }));
  } catch (err) {
    if (err instanceof CatalogError) throw new ConfigError(err.message);
    throw err;
  }
}

function s3Settings(v: SettingValues): S3Settings | undefined {
  if (!v.s3Bucket) {
    if (v.outputUrls === "presigned") throw new ConfigError("SDSERVE_OUTPUT_URLS=presigned needs S3_BUCKET");
    return undefined;
  }
  if (Boolean(v.s3AccessKeyId) !== Boolean(v.s3SecretAccessKey)) {
    throw new ConfigError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together: set both, or neither");
  }
  return {
    bucket: v.s3Bucket,
    prefix: v.s3Prefix,
    endpoint: v.s3Endpoint,
    region: v.s3Region,
    forcePathStyle: v.s3ForcePathStyle ?? v.s3Endpoint !== undefined,
    credentials:
      v.s3AccessKeyId && v.s3SecretAccessKey
        ? { accessKeyId: v.s3AccessKeyId, secretAccessKey: v.s3SecretAccessKey }
        : undefined,
    presign: v.outputUrls === "presigned",
  };
}

/** Reads `sdserve serve`'s (or `sdserve worker`'s) flags and the environment. */
export function loadConfig(argv: string[], env: Env = process.env, command: "serve" | "worker" = "serve"): Config {
  const { values: flags, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: settingFlags(command),
  });
  if (positionals.length > 0)
    throw new ConfigError(`unexpected argument "${positionals[0]}" (see sdserve ${command} --help)`);
  const v = readSettings(command, flags, env);

  const runWorker = !v.noWorker;
  if (!runWorker && !v.redisUrl) {
    throw new ConfigError("--no-worker needs REDIS_URL: an API-only node hands predictions to workers through Redis");
  }
  if (command === "worker" && !v.redisUrl) {
    throw new ConfigError("sdserve worker needs REDIS_URL: it takes its jobs from the shared queue on Redis");
  }
  const s3 = s3Settings(v);
  return {
    port: v.port,
    host: v.host,
    dataDir: v.dataDir,
    model: v.model,
    modelsFile: v.modelsFile,
    models: catalog(v.model, v.modelsFile, v.variant, v.previewVae),
    variant: v.variant,
    previewSize: v.previewSize,
    ...engineSettings(v),
    threads: v.threads,
    provider: v.provider,
    logLevel: v.logLevel,
    logFormat: v.logFormat,
    apiTokens: v.apiTokens,
    apiAuth: v.apiAuth,
    outputRetentionMs: v.outputRetentionMs,
    queueMax: v.queueMax,
    queueMaxPerToken: v.queueMaxPerToken ?? Math.ceil(v.queueMax / 2),
    bodyLimit: v.bodyLimit,
    a1111BodyLimit: v.a1111BodyLimit,
    readCacheBytes: v.readCacheBytes,
    publicBaseUrl: v.publicBaseUrl,
    trustProxy: v.trustProxy ?? [],
    maxWaitSeconds: v.maxWaitSeconds,
    maxRunTimeMs: v.maxRunTimeMs,
    streamKeepaliveMs: v.streamKeepaliveMs,
    streamsPerPrediction: v.streamsPerPrediction,
    streamsPerClient: v.streamsPerClient,
    // One setting opens both kinds of request this server makes on a caller's behalf.
    webhookAllowPrivate: v.webhookAllowPrivate || v.allowPrivateUrls,
    allowPrivateUrls: v.allowPrivateUrls,
    allowedUrlHosts: v.allowedUrlHosts,
    fileRetentionMs: v.fileRetentionMs,
    corsOrigins: v.corsOrigins,
    rateLimit: v.rateLimit,
    databaseUrl: v.databaseUrl,
    redisUrl: v.redisUrl,
    redisPrefix: v.redisPrefix,
    workerConcurrency: v.workerConcurrency,
    jobLockMs: v.jobLockMs,
    runWorker,
    s3,
  };
}
