/**
 * A seeded fuzz run against a real sdserve on both API prefixes (and the routes beside them):
 * a few thousand hostile requests, random and mutated methods, paths, query strings, headers,
 * content types, encodings and bodies, some of them huge, some sent as raw bytes. The server
 * must answer each (no hangs: every request has a deadline) with a non-5xx status and, for an
 * error, a JSON body; /health-check answers throughout. The same seed gives the same requests,
 * so a failure names the seed and the request's index to replay it (FUZZ_SEED=…).
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { MODEL, OTHER_TOKEN, type Sdserve, startSdserve, TOKEN, VERSION } from "./server.js";

const SEED = Number(process.env["FUZZ_SEED"] ?? 20261202);
const REQUESTS = 3000;
const PARALLEL = 8;
/** Per request: the server may be busy, but no answer this late is a hang. */
const DEADLINE_MS = 20_000;

let server: Sdserve;
let host: string;
let port: number;

before(async () => {
  // A short queue and Prefer: wait cap keep accepted creates from piling up behind each other.
  server = await startSdserve({ env: { SDSERVE_QUEUE_MAX: "3", SDSERVE_MAX_WAIT: "1" } });
  const u = new URL(server.url);
  host = u.hostname;
  port = Number(u.port);
});
after(async () => {
  await server?.stop();
});

/** mulberry32: small, seedable, good enough to pick cases. */
function generator(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  const chance = (p: number) => next() < p;
  return { next, int, pick, chance };
}
type Rng = ReturnType<typeof generator>;

const HOSTILE_STRINGS = [
  "",
  " ",
  "\u0000",
  "%00",
  "%",
  "%ZZ",
  "../../../etc/passwd",
  "..%2F..%2Fetc%2Fpasswd",
  "<script>alert(1)</script>",
  "' OR 1=1 --",
  "toString",
  "__proto__",
  "constructor",
  "prototype",
  "hasOwnProperty",
  `${"1".repeat(29)}x`,
  "9".repeat(400),
  "99999999999999999999s",
  "-1",
  "0",
  "1e309",
  "NaN",
  "Infinity",
  "null",
  "true",
  "[]",
  "{}",
  "🦊🦊🦊",
  "\uD800",
  "\uFEFF",
  "a\u202Eb",
  "ſ",
  "wait",
  "wait=0",
  "wait=99999999999999999999",
  "1h30m45s",
  "2026-13-45T25:61:61Z",
  "2026-01-01T00:00:00.000000Z",
  VERSION,
  MODEL,
  `${MODEL}:${VERSION}`,
];

function hostileString(r: Rng): string {
  switch (r.int(8)) {
    case 0:
      return r.pick(["a", " ", "[", "{", "\\", '"', "%", "1", "🦊", "\u0000", "<"]).repeat(r.pick([100, 5000, 70_000]));
    case 1:
      return Array.from({ length: r.int(40) }, () => String.fromCharCode(r.int(0x10000))).join("");
    case 2:
      return Array.from({ length: r.int(40) }, () => String.fromCharCode(32 + r.int(95))).join("");
    default:
      return r.pick(HOSTILE_STRINGS);
  }
}

function hostileValue(r: Rng, depth = 0): unknown {
  switch (r.int(12)) {
    case 0:
      return null;
    case 1:
      return r.pick([true, false]);
    case 2:
      return r.pick([0, -1, 1.5, 128, 512.0, 1e308, -1e308, 2 ** 53 + 1, 4, 5, 501, 20.5, Number.MIN_VALUE]);
    case 3:
      return depth < 3 ? Array.from({ length: r.int(4) }, () => hostileValue(r, depth + 1)) : [];
    case 4:
      return depth < 3 ? hostileObject(r, depth + 1) : {};
    default:
      return hostileString(r);
  }
}

function hostileObject(r: Rng, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = r.int(4); i > 0; i--) out[hostileString(r).slice(0, 200)] = hostileValue(r, depth);
  return out;
}

/** A cheap valid input: a prediction the fuzz does get accepted runs in well under a second. */
function cheapInput(r: Rng): Record<string, unknown> {
  return {
    prompt: r.chance(0.5) ? "a fox" : hostileString(r).slice(0, 500),
    width: 128,
    height: 128,
    num_inference_steps: 1,
    ...(r.chance(0.3) ? { seed: r.int(1000) } : {}),
  };
}

/** A create body, valid or nearly so, then mutated. */
function createBody(r: Rng, openai: boolean): unknown {
  const body: Record<string, unknown> = openai
    ? { prompt: "a fox", size: "128x128", n: 1, num_inference_steps: 1 }
    : { version: r.pick([VERSION, MODEL, `${MODEL}:${VERSION}`, hostileString(r)]), input: cheapInput(r) };
  for (let i = r.int(4); i > 0; i--) {
    const target = !openai && r.chance(0.6) ? (body["input"] as Record<string, unknown>) : body;
    if (typeof target !== "object" || target === null) break;
    const key = r.chance(0.6)
      ? r.pick(
          openai
            ? ["prompt", "size", "n", "response_format", "model", "seed", "negative_prompt", "scheduler", "user"]
            : [
                "prompt",
                "negative_prompt",
                "width",
                "height",
                "num_outputs",
                "scheduler",
                "seed",
                "guidance_scale",
                "webhook",
                "webhook_events_filter",
                "input",
                "version",
                "stream",
              ],
        )
      : hostileString(r).slice(0, 100);
    // Keep accepted predictions cheap: steps and size are never mutated into valid large values.
    target[key] = hostileValue(r);
  }
  if (r.chance(0.05)) return hostileValue(r);
  return body;
}

function nested(levels: number): string {
  return `{"version":"${VERSION}","input":{"prompt":"x","deep":${"[".repeat(levels)}${"]".repeat(levels)}}}`;
}

/** The bytes of a body: JSON, broken JSON, other encodings, or huge. */
function bodyBytes(r: Rng, value: unknown): Buffer {
  const json = JSON.stringify(value) ?? "null";
  switch (r.int(14)) {
    case 0:
      return Buffer.from(json.slice(0, r.int(json.length + 1)));
    case 1:
      return Buffer.from(nested(r.pick([33, 1000, 200_000])));
    case 2:
      return Buffer.from(`{"input":{"prompt":"${"a".repeat(1_100_000)}"}}`);
    case 3:
      return Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0xc3, 0x28, 0xa0, 0xa1]);
    case 4:
      return Buffer.from(json, "utf16le");
    case 5:
      return Buffer.from(`version=${VERSION}&input[prompt]=x`);
    case 6:
      return Buffer.from(
        `{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}},"version":"${VERSION}","input":{}}`,
      );
    default:
      return Buffer.from(json);
  }
}

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/json; charset=utf-16",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=xyz",
  "application/problem+json",
  "image/png",
  "",
  "*/*",
  ";;;",
  `application/json; ${"a=b; ".repeat(500)}`,
];

/** encodeURIComponent, which throws on a lone surrogate: those become U+FFFD first. */
function enc(text: string): string {
  return encodeURIComponent(
    text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD"),
  );
}

function queryString(r: Rng): string {
  if (r.chance(0.4)) return "";
  const keys = [
    "page_size",
    "status",
    "cursor",
    "created_after",
    "created_before",
    "model",
    "version",
    "preview",
    "fragment",
    "__proto__[x]",
    "constructor",
  ];
  const parts: string[] = [];
  for (let i = 1 + r.int(4); i > 0; i--) {
    const key = r.chance(0.8) ? r.pick(keys) : hostileString(r).slice(0, 50);
    parts.push(
      `${enc(key)}=${
        r.chance(0.2)
          ? hostileString(r)
              .slice(0, 2000)
              .replace(/[^!-~]|#/g, "")
          : enc(hostileString(r).slice(0, 2000))
      }`,
    );
  }
  return `?${parts.join("&")}`;
}

function apiPath(r: Rng, prefix: string): string {
  const id = r.chance(0.7) ? "a".repeat(26) : enc(hostileString(r).slice(0, 300));
  const seg = () =>
    r.chance(0.7) ? r.pick(["stability-ai", "stable-diffusion", "x"]) : enc(hostileString(r).slice(0, 300));
  return r.pick([
    `${prefix}/predictions`,
    `${prefix}/predictions/${id}`,
    `${prefix}/predictions/${id}/cancel`,
    `${prefix}/predictions/${id}/webhook_deliveries`,
    `${prefix}/models`,
    `${prefix}/models/${seg()}/${seg()}`,
    `${prefix}/models/${seg()}/${seg()}/versions`,
    `${prefix}/models/${seg()}/${seg()}/versions/${r.chance(0.5) ? VERSION : id}`,
    `${prefix}/models/${seg()}/${seg()}/predictions`,
    `${prefix}/account`,
    `${prefix}/hardware`,
    `${prefix}/webhooks/default/secret`,
    `${prefix}/collections`,
    `${prefix}/streams/${id}`,
    `${prefix}/images/generations`,
    `${prefix}/${enc(hostileString(r).slice(0, 100))}`,
  ]);
}

function anyPath(r: Rng): string {
  const prefix = r.pick(["/v1", "/replicate/v1"]);
  // The create routes take the richest input: a good share of the run goes to them.
  if (r.chance(0.35)) {
    return r.pick([`${prefix}/predictions`, `${prefix}/models/${MODEL}/predictions`, "/v1/images/generations"]);
  }
  if (r.chance(0.7)) return apiPath(r, prefix);
  return r.pick([
    "/",
    "/openapi.json",
    "/health-check",
    "/metrics",
    `/p/${"k".repeat(32)}`,
    `/files/${"k".repeat(32)}/out-0.png`,
    "/static/..%2F..%2Fpackage.json",
    `/static/${enc(hostileString(r).slice(0, 100))}`,
    "/%",
    "/%00",
    "//v1//predictions",
    "/v1/../v1/predictions",
    `/${"x/".repeat(2000)}`,
    `/v1/predictions/${"a".repeat(7000)}`,
  ]);
}

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

function request(r: Rng): FuzzRequest {
  let path = `${anyPath(r)}${queryString(r)}`;
  const creates = /\/(predictions|images\/generations)$/.test(path.split("?")[0] ?? "");
  const method = r.chance(0.85)
    ? creates
      ? r.pick(["POST", "POST", "POST", "GET"])
      : r.pick(["GET", "GET", "POST", "HEAD"])
    : r.pick(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"]);
  // HEAD keeps its request line and headers short: a 414 or 431 is written before the method is
  // known, with a body, which Node's client then cannot parse (the server is fine).
  if (method === "HEAD") path = path.slice(0, 1000);
  const headers: Record<string, string> = {};
  if (r.chance(0.85)) headers["authorization"] = `Bearer ${r.pick([TOKEN, TOKEN, OTHER_TOKEN])}`;
  else if (r.chance(0.5))
    headers["authorization"] = r.pick([
      "Bearer",
      "Token ",
      "Basic eDp5",
      `Bearer ${" ".repeat(8000)}x`,
      `bearer ${TOKEN} extra`,
    ]);
  const ct = r.pick(CONTENT_TYPES);
  if (ct) headers["content-type"] = ct;
  const optional: [string, () => string][] = [
    [
      "prefer",
      () =>
        r.pick([
          "wait",
          "wait=1",
          `wait${" ".repeat(8000)}x`,
          "respond-async, wait=5",
          hostileString(r).slice(0, 4000),
        ]),
    ],
    [
      "cancel-after",
      () => r.pick(["5s", "90s", `${"1".repeat(29)}x`, "99999999999999999999s", hostileString(r).slice(0, 4000)]),
    ],
    ["idempotency-key", () => hostileString(r).slice(0, 4000)],
    ["last-event-id", () => hostileString(r).slice(0, 4000)],
    ["x-forwarded-host", () => hostileString(r).slice(0, 4000)],
    ["x-forwarded-proto", () => r.pick(["https", "gopher", hostileString(r).slice(0, 100)])],
    ["origin", () => r.pick(["http://evil.example", "null", hostileString(r).slice(0, 100)])],
    ["accept", () => r.pick(["text/event-stream", "*/*", "application/json", hostileString(r).slice(0, 100)])],
    ["accept-encoding", () => r.pick(["gzip", "br, deflate", "*;q=0", hostileString(r).slice(0, 100)])],
    ["range", () => r.pick(["bytes=0-0", "bytes=-1", "bytes=99999999999999999999-", hostileString(r).slice(0, 100)])],
    ["if-none-match", () => hostileString(r).slice(0, 100)],
  ];
  for (const [name, value] of optional) if (r.chance(0.12)) headers[name] = value();
  let body: Buffer | undefined;
  if (method !== "GET" && method !== "HEAD" && r.chance(0.9)) {
    body = bodyBytes(r, createBody(r, path.includes("/images/")));
    if (r.chance(0.05)) {
      headers["content-encoding"] = r.pick(["gzip", "br", "identity", "x-bogus"]);
      if (headers["content-encoding"] === "gzip" && r.chance(0.5)) body = gzipSync(body);
    }
  }
  // Header values must be Latin-1 without control characters on the wire: keep only those.
  for (const [k, v] of Object.entries(headers)) {
    headers[k] = v.replace(/[^\t\x20-\x7e\x80-\xff]/g, "?").slice(0, method === "HEAD" ? 1000 : undefined);
  }
  // Node's client sends DELETE and OPTIONS bodies unframed unless told their length.
  if (body) headers["content-length"] = String(body.length);
  return { method, path, headers, body };
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

function send(req: FuzzRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const out = http.request(
      { host, port, method: req.method, path: req.path, headers: req.headers, agent: false, timeout: DEADLINE_MS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers["content-type"] ?? ""),
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", reject);
      },
    );
    out.on("timeout", () => out.destroy(new Error(`no answer within ${DEADLINE_MS} ms`)));
    out.on("error", reject);
    out.end(req.body);
  });
}

/** Requests the HTTP client will not form: bad framing, odd request lines, oversized headers. */
function rawRequest(r: Rng): string {
  const auth = `Authorization: Bearer ${TOKEN}\r\n`;
  const body = JSON.stringify({
    version: VERSION,
    input: { prompt: "x", width: 128, height: 128, num_inference_steps: 1 },
  });
  return r.pick([
    `GET /v1/predictions HTTP/1.0\r\n${auth}\r\n`,
    `GET http://evil.example/v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`,
    `POST /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 5\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{}{}{}{`,
    `POST /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
    `POST /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0\r\n\r\n`,
    `GET /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${"a".repeat(20_000)}\r\nConnection: close\r\n\r\n`,
    `GET /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Bad Header: y\r\nConnection: close\r\n\r\n`,
    `GET /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}X-Fold: a\r\n b\r\nConnection: close\r\n\r\n`,
    `GET /v1/pre\u0000dictions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    `BREW /v1/predictions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    `GET /v1/predictions HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n`,
    `GET /health-check HTTP/1.1\r\nHost: ${"h".repeat(300)}\r\nHost: y\r\nConnection: close\r\n\r\n`,
    `POST /v1/predictions HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  ]);
}

function sendRaw(text: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${DEADLINE_MS} ms`)), DEADLINE_MS);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", (err) => {
      clearTimeout(timer);
      // The server may close a connection it refuses while the request is still being written.
      if ((err as NodeJS.ErrnoException).code === "EPIPE" || (err as NodeJS.ErrnoException).code === "ECONNRESET") {
        finish();
      } else reject(err);
    });
    socket.on("close", () => finish());
    let done = false;
    function finish() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString("latin1");
      const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const contentType = /\r\ncontent-type: *([^\r]*)/i.exec(head)?.[1] ?? "";
      let body = raw.slice(head.length + 4);
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        let out = "";
        let rest = body;
        for (;;) {
          const eol = rest.indexOf("\r\n");
          const size = Number.parseInt(rest.slice(0, eol), 16);
          if (!(size > 0)) break;
          out += rest.slice(eol + 2, eol + 2 + size);
          rest = rest.slice(eol + 2 + size + 2);
        }
        body = out;
      }
      resolve({ status, contentType, body: Buffer.from(body, "latin1").toString("utf8") });
    }
    socket.end(Buffer.from(text, "latin1"));
  });
}

test(`fuzz: ${REQUESTS} seeded hostile requests, no 5xx, no hang, every error JSON, health-check throughout`, {
  timeout: 240_000,
}, async () => {
  const r = generator(SEED);
  const cases = Array.from({ length: REQUESTS }, (_, i) => {
    if (r.chance(0.06)) return { i, raw: rawRequest(r) };
    return { i, req: request(r) };
  });
  const failures: string[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  let running = true;

  const health = (async () => {
    let checks = 0;
    while (running) {
      const a = await send({ method: "GET", path: "/health-check", headers: {} }).catch((e: Error) => ({
        status: 0,
        contentType: "",
        body: e.message,
      }));
      checks++;
      if (a.status !== 200) failures.push(`/health-check answered ${a.status}: ${a.body.slice(0, 200)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return checks;
  })();

  const describe = (c: (typeof cases)[number]) =>
    c.raw !== undefined
      ? `#${c.i} raw ${JSON.stringify(c.raw.slice(0, 120))}`
      : `#${c.i} ${c.req?.method} ${c.req?.path.slice(0, 150)} ${JSON.stringify(c.req?.headers).slice(0, 300)} body ${c.req?.body?.subarray(0, 150).toString()}`;

  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      // Twenty failures tell enough: stop there rather than wait out every deadline.
      while (next < cases.length && failures.length < 20) {
        const c = cases[next++] as (typeof cases)[number];
        let a: Answer;
        try {
          a = c.raw !== undefined ? await sendRaw(c.raw) : await send(c.req as FuzzRequest);
        } catch (err) {
          failures.push(`${(err as Error).message} ← ${describe(c)}`);
          continue;
        }
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
        // A raw request the server drops without an answer (status 0) is not a fault: HTTP lets it.
        if (a.status >= 500) failures.push(`${a.status} ${a.body.slice(0, 300)} ← ${describe(c)}`);
        else if (a.status >= 400 && c.req?.method !== "HEAD") {
          try {
            JSON.parse(a.body);
            if (!/json/.test(a.contentType)) throw new Error(`content-type ${a.contentType}`);
          } catch (err) {
            failures.push(`${a.status} not JSON (${(err as Error).message}): ${a.body.slice(0, 200)} ← ${describe(c)}`);
          }
        }
      }
    }),
  );
  running = false;
  const checks = await health;
  const summary = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`);
  console.log(`fuzz seed ${SEED}: ${summary.join(" ")}; ${checks} health checks`);
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} failures (seed ${SEED})`);
  assert.ok(checks > 0);
  // The run reached the API, not just the edge: some requests were accepted, some validated.
  assert.ok((statuses.get(201) ?? 0) + (statuses.get(200) ?? 0) > 0);
  assert.ok((statuses.get(422) ?? 0) > 0);
});
