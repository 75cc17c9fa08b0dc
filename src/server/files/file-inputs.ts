/**
 * File inputs (an input whose schema says `format: "uri"`, such as img2img's `image`): a
 * `data:` URI, an http(s) URL, or the URL of a file uploaded to this server's Files API. They
 * are turned into bytes once, by the worker before the model runs, so that a slow URL never
 * holds a create request and the engine only ever sees bytes.
 *
 * Fetching a URL is a request this server makes on a caller's behalf, so it follows the webhook
 * rules (webhooks/targets.ts): no loopback, private or link-local targets, checked on every
 * redirect and on the address actually connected to, unless SDSERVE_ALLOW_PRIVATE_URLS=true.
 * SDSERVE_ALLOWED_URL_HOSTS names hosts (or host:port) that may be internal (an image store on
 * the private network): a URL there is fetched, but where it redirects is checked as any URL.
 * Size and time are bounded; what the bytes are (PNG, JPEG, WebP, within the pixel limit) is
 * the engine's decoder's to say.
 */
import http from "node:http";
import https from "node:https";
import { checkWebhookUrl, guardedLookup } from "../webhooks/targets.js";

/** A file input that cannot be had: the message names the input and says why. */
export class FileInputError extends Error {
  override readonly name = "FileInputError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** 32 MiB: a 4096² PNG of photographic content is well under it. */
export const MAX_FILE_INPUT_BYTES = 32 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 5;

/** The path of a Files API download URL (ours), under /v1 or /replicate/v1. */
const OWN_FILE_PATH = /^(?:\/replicate)?\/v1\/files\/([a-z0-9]{1,64})(?:\/download)?$/;

/** The file id in a URL of the Files API's shape, if it is one. */
export function ownFileId(url: URL): string | undefined {
  return OWN_FILE_PATH.exec(url.pathname)?.[1];
}

interface DataUri {
  mediaType: string;
  base64: boolean;
  payload: string;
}

function parseDataUri(value: string): DataUri | undefined {
  const comma = value.indexOf(",");
  if (comma < 0) return undefined;
  const head = value.slice(5, comma);
  const m = /^([a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+)?((?:;[a-z0-9_.-]+=[^;,]*)*)(;base64)?$/i.exec(head);
  if (!m) return undefined;
  return {
    mediaType: (m[1] ?? "text/plain").toLowerCase(),
    base64: m[3] !== undefined,
    payload: value.slice(comma + 1),
  };
}

/**
 * What can be said of a file input when the prediction is created, before anything is fetched:
 * undefined when it may be fine, else why it cannot be (a 422 then).
 */
export function fileInputProblem(value: unknown): string | undefined {
  if (typeof value !== "string") return "must be a URL (http, https or data:) of a PNG, JPEG or WebP image";
  if (value.length < 5) return "must be an http(s) URL or a data: URI";
  const scheme = value.slice(0, 5).toLowerCase();
  if (scheme === "data:") {
    const d = parseDataUri(value);
    if (!d) return "is not a well-formed data: URI (data:image/png;base64,…)";
    if (d.base64 && !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(d.payload)) return "has invalid base64 in its data: URI";
    if (d.payload.trim() === "") return "is an empty data: URI";
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "is not a valid URL";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `has the scheme ${url.protocol.replace(/:$/, "")}; http, https or data: expected`;
  }
  if (url.username || url.password) return "must not carry a user name or password";
  return undefined;
}

/** Reads this server's own uploaded file for `account`; "missing" when there is none of that id, "foreign" when it is another token's. */
export type OwnFileReader = (id: string, account: string) => Promise<Uint8Array | "missing" | "foreign">;

export interface FileInputOptions {
  allowPrivate: boolean;
  /** Hosts whose URLs may be on internal addresses (entries made by allowedHostEntry). */
  allowHosts?: readonly string[];
  maxBytes?: number;
  timeoutMs?: number;
  /** The Files API's files, resolved inside rather than over HTTP. */
  ownFile?: OwnFileReader;
  /** Where weights inputs (weights-inputs.ts: LoRAs by URL) are kept once fetched and unpacked. */
  weightsCacheDir?: string;
}

/**
 * An SDSERVE_ALLOWED_URL_HOSTS entry as it is matched: the host as the URL parser writes it
 * (127.1 is 127.0.0.1, names lower case, IPv6 in brackets), with `:port` when one was given.
 * Undefined when it is not a host or host:port.
 */
export function allowedHostEntry(text: string): string | undefined {
  const t = text.trim();
  let u: URL;
  try {
    u = new URL(`http://${t}/`);
  } catch {
    return undefined;
  }
  if (t === "" || u.username || u.password || u.pathname !== "/" || u.search || u.hash || t.includes("/")) {
    return undefined;
  }
  const host = u.hostname.toLowerCase().replace(/\.$/, "");
  const port = /(?:^|[^:]):(\d{1,5})$/.exec(t)?.[1];
  if (port === undefined) return t.endsWith(":") ? undefined : host;
  const n = Number(port);
  return n >= 1 && n <= 65535 ? `${host}:${n}` : undefined;
}

/** Whether `url` may be on an internal address: with SDSERVE_ALLOW_PRIVATE_URLS any may, else those of the allowed hosts. */
export function mayBeInternal(url: URL, opts: Pick<FileInputOptions, "allowPrivate" | "allowHosts">): boolean {
  if (opts.allowPrivate) return true;
  if (!opts.allowHosts || opts.allowHosts.length === 0) return false;
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return opts.allowHosts.includes(host) || opts.allowHosts.includes(`${host}:${port}`);
}

/** The bytes of one file input (validated at create by fileInputProblem). */
export async function resolveFileInput(
  value: string,
  field: string,
  account: string,
  opts: FileInputOptions,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const maxBytes = opts.maxBytes ?? MAX_FILE_INPUT_BYTES;
  const problem = fileInputProblem(value);
  if (problem) throw new FileInputError(field, problem);
  if (value.slice(0, 5).toLowerCase() === "data:") {
    const d = parseDataUri(value) as DataUri;
    const bytes = d.base64 ? Buffer.from(d.payload, "base64") : Buffer.from(decodeURIComponent(d.payload), "latin1");
    if (bytes.length > maxBytes) throw new FileInputError(field, `is over ${maxBytes} bytes`);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  const url = new URL(value);
  const id = ownFileId(url);
  if (id !== undefined && opts.ownFile) {
    const own = await opts.ownFile(id, account);
    if (own === "foreign") {
      throw new FileInputError(field, `file ${id} belongs to another API token; upload it with your own token`);
    }
    if (own !== "missing") return own;
  }
  return fetchUrl(url, field, maxBytes, opts, signal);
}

async function fetchUrl(
  first: URL,
  field: string,
  maxBytes: number,
  opts: FileInputOptions,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const deadline = AbortSignal.timeout(opts.timeoutMs ?? FETCH_TIMEOUT_MS);
  const abort = signal ? AbortSignal.any([signal, deadline]) : deadline;
  let url = first;
  checkTarget(url, field, mayBeInternal(url, opts));
  for (let hop = 0; ; hop++) {
    // Every hop on its own: an allowed host's redirect elsewhere is checked as any URL.
    const res = await get(url, field, maxBytes, mayBeInternal(url, opts), abort);
    if (!("location" in res)) return res.body;
    if (hop >= MAX_REDIRECTS) throw new FileInputError(field, `the URL redirected more than ${MAX_REDIRECTS} times`);
    url = redirectTarget(url, res.location, field, opts);
  }
}

/**
 * Where a redirect leads, checked as the first URL was (scheme, internal addresses); throws
 * FileInputError. `allow`: SDSERVE_ALLOW_PRIVATE_URLS, or the options with the allowed hosts.
 */
export function redirectTarget(
  from: URL,
  location: string,
  field: string,
  allow: boolean | Pick<FileInputOptions, "allowPrivate" | "allowHosts">,
): URL {
  let url: URL;
  try {
    url = new URL(location, from);
  } catch {
    throw new FileInputError(field, "the URL redirected to an invalid location");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new FileInputError(field, `the URL redirected to a ${url.protocol} URL; only http and https are followed`);
  }
  checkTarget(url, field, typeof allow === "boolean" ? allow : mayBeInternal(url, allow));
  return url;
}

function checkTarget(url: URL, field: string, allowPrivate: boolean): void {
  try {
    checkWebhookUrl(url, allowPrivate);
  } catch {
    throw refused(field, url.hostname);
  }
}

function refused(field: string, host: string): FileInputError {
  return new FileInputError(
    field,
    `${host} is a loopback, private or otherwise internal address; URLs there are not fetched unless SDSERVE_ALLOW_PRIVATE_URLS=true`,
  );
}

function get(
  url: URL,
  field: string,
  maxBytes: number,
  /** This URL may be on an internal address (checked on the address connected to). */
  allowPrivate: boolean,
  signal: AbortSignal,
): Promise<{ body: Uint8Array } | { location: string }> {
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const fail = (message: string) => reject(new FileInputError(field, message));
    const req = client.request(
      url,
      {
        method: "GET",
        headers: { Accept: "image/png, image/jpeg, image/webp, */*;q=0.1", "User-Agent": "sdserve" },
        lookup: guardedLookup(allowPrivate),
        signal,
      },
      (res) => {
        const code = res.statusCode ?? 0;
        if (code >= 300 && code < 400 && res.headers.location) {
          res.resume();
          resolve({ location: res.headers.location });
          return;
        }
        if (code !== 200) {
          res.resume();
          fail(`fetching the URL answered HTTP ${code}`);
          return;
        }
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > maxBytes) {
          req.destroy();
          fail(`the file at the URL is ${declared} bytes, over the limit of ${maxBytes}`);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            req.destroy();
            fail(`the file at the URL is over the limit of ${maxBytes} bytes`);
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          resolve({ body: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) });
        });
        res.on("error", (err) => fail(`reading the URL failed: ${err.message}`));
      },
    );
    req.on("error", (err) => {
      if (err.name === "WebhookTargetError") reject(refused(field, url.hostname));
      else if (signal.aborted) fail("fetching the URL took too long (or the prediction was canceled)");
      else fail(`the URL could not be fetched: ${err.message}`);
    });
    req.end();
  });
}
