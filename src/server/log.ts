/**
 * The service's log: Fastify's own logger (pino). One JSON object a line where nobody reads it
 * live (a service manager, a container), readable lines on a terminal. Secrets stay out: the
 * redact paths below cover headers and any field named after a token or a secret, and the URLs
 * logged have their capability keys (output files, streams, prediction pages) masked.
 */
import { type FastifyBaseLogger, type FastifyServerOptions, LogController } from "fastify";
import pino, { type Logger } from "pino";
import type { LogLevel } from "../config.js";

export type { Logger };

export interface LogSettings {
  logLevel: LogLevel;
  logFormat: "auto" | "json" | "pretty";
}

/** Fields never written whole, wherever a record carries them. */
export const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "headers.cookie",
  "token",
  "*.token",
  "secret",
  "*.secret",
  "webhook",
  "*.webhook",
];

/** The capability key of a files, stream or prediction-page URL: whoever has it can read. */
const CAPABILITY = /(\/(?:files|streams|p)\/)[^/?#]+/g;
const HAS_CAPABILITY = /\/(?:files|streams|p)\//;

/** A URL or path as it may be logged: capability keys masked, the query left out. */
export function loggableUrl(url: string): string {
  const query = url.indexOf("?");
  const path = query < 0 ? url : url.slice(0, query);
  // Every request's record passes here: most paths hold no key, and a test costs less than a replace.
  return HAS_CAPABILITY.test(path) ? path.replace(CAPABILITY, "$1…") : path;
}

let lastMs = 0;
let lastTime = "";

/**
 * pino's isoTime, made once a millisecond: a busy server writes many records in one, and a Date
 * and its ISO string per record showed in the read path's profile at LOG_LEVEL=info.
 */
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

/** The service's logger; `destination` is for tests (default: standard output). */
export function createLogger(settings: LogSettings, destination?: NodeJS.WritableStream): Logger {
  const out = destination ?? process.stdout;
  const pretty =
    settings.logFormat === "pretty" || (settings.logFormat === "auto" && (out as NodeJS.WriteStream).isTTY === true);
  return pino(
    {
      level: settings.logLevel,
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      base: { pid: process.pid },
      timestamp: isoTime,
    },
    pretty ? prettyStream(out) : (out as pino.DestinationStream),
  );
}

/**
 * Fastify's logger options: this logger, and none of Fastify's own two records per request
 * (their URL holds capability keys); app.ts writes one record per request instead. Each
 * request's logger (request.log) is made when the request first writes through it.
 */
export function fastifyLogging(log: Logger): {
  loggerInstance: Logger;
  logController: LogController;
  childLoggerFactory: NonNullable<FastifyServerOptions["childLoggerFactory"]>;
} {
  return {
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent, bindings, options) =>
      // A route's own log level or serializers: the child as Fastify would make it.
      Object.keys(options).length > 0
        ? parent.child(bindings, options)
        : (new RequestLogger(parent as Logger, bindings) as unknown as FastifyBaseLogger),
  };
}

type LevelName = "fatal" | "error" | "warn" | "info" | "debug" | "trace";

/**
 * request.log, bound to the request's id, made when first written through. pino's child
 * stringifies its bindings through the redaction at once, which every request paid (the read
 * path's profile), though most write nothing through it.
 */
class RequestLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly ownBindings: pino.Bindings,
  ) {}

  private get log(): Logger {
    this.made ??= this.parent.child(this.ownBindings);
    return this.made;
  }

  get level(): string {
    return (this.made ?? this.parent).level;
  }

  set level(level: string) {
    this.log.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (this.made ?? this.parent).isLevelEnabled(level);
  }

  private write(level: LevelName, args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return;
    const log = this.log;
    (log[level] as (...a: unknown[]) => void).apply(log, args);
  }

  fatal(...args: unknown[]): void {
    this.write("fatal", args);
  }
  error(...args: unknown[]): void {
    this.write("error", args);
  }
  warn(...args: unknown[]): void {
    this.write("warn", args);
  }
  info(...args: unknown[]): void {
    this.write("info", args);
  }
  debug(...args: unknown[]): void {
    this.write("debug", args);
  }
  trace(...args: unknown[]): void {
    this.write("trace", args);
  }
  silent(): void {}

  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return this.log.child(bindings, options);
  }

  bindings(): pino.Bindings {
    return this.log.bindings();
  }
}

/** A logger that writes nothing (library use and tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** `(line) => void` callbacks of the older modules, as records of one component at one level. */
export function lineLogger(log: Logger, level: "info" | "warn" | "error"): (line: string) => void {
  return (line) => log[level](line);
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const OMITTED = new Set(["level", "time", "msg", "pid", "hostname"]);

/** Readable lines for a terminal: `12:00:01.234 INFO  message key=value …`, the error stack below. */
export function prettyLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  const time = typeof record["time"] === "string" ? (record["time"] as string).slice(11, 23) : "";
  const level = (LEVEL_NAMES[record["level"] as number] ?? String(record["level"])).padEnd(5);
  const fields: string[] = [];
  let stack = "";
  for (const [k, v] of Object.entries(record)) {
    if (OMITTED.has(k)) continue;
    if (k === "err" && v && typeof v === "object" && "stack" in v) {
      stack = `\n${String((v as { stack: unknown }).stack).replace(/^/gm, "    ")}`;
      continue;
    }
    fields.push(`${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  }
  return `${time} ${level} ${String(record["msg"] ?? "")}${fields.length ? ` ${fields.join(" ")}` : ""}${stack}\n`;
}

function prettyStream(out: NodeJS.WritableStream): pino.DestinationStream {
  return { write: (line: string) => void out.write(prettyLine(line.trimEnd())) };
}
