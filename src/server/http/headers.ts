/** Request headers with a grammar: Prefer (RFC 7240), Cancel-After, and the URLs a response is seen from. */
import type { FastifyRequest } from "fastify";
import type { UrlBase } from "../predictions/serialize.js";

export interface WaitPreference {
  seconds: number;
  /** The Preference-Applied value: the form honoured (`wait`, or `wait=N` after clamping). */
  applied: string;
}

/**
 * Header values longer than these are not parsed at all: no valid value comes close, and the
 * parsers below then cost a bounded amount whatever a client sends.
 */
export const MAX_PREFER_LENGTH = 1024;
export const MAX_CANCEL_AFTER_LENGTH = 64;
/** Longest Cancel-After honoured: a week. A longer one is a 422, not a deadline past Date's range. */
export const MAX_CANCEL_AFTER_MS = 7 * 24 * 3_600_000;
/** Idempotency keys are stored and compared: 255 characters is plenty for a UUID or an order id. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** RFC 9110's optional whitespace (space and tab) only, so that trimming stays a linear scan. */
function trimOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s[start] === " " || s[start] === "\t")) start++;
  while (end > start && (s[end - 1] === " " || s[end - 1] === "\t")) end--;
  return s.slice(start, end);
}

function isDigits(s: string): boolean {
  if (s === "") return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * `Prefer: wait` (60 s) or `wait=N`, among other comma-separated preferences. N above the
 * server's maximum is clamped rather than refused (the JS client sends whatever timeout its
 * caller chose); anything unparsable means no wait (spec §1.4). Parsed by hand, without
 * regexes, in one pass over each value.
 */
export function parsePreferWait(header: string | string[] | undefined, maxSeconds: number): WaitPreference | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const value of values) {
    if (value.length > MAX_PREFER_LENGTH) continue;
    for (const pref of value.split(",")) {
      const token = trimOws(pref.split(";", 1)[0] ?? "");
      if (token.length < 4 || token.slice(0, 4).toLowerCase() !== "wait") continue;
      const rest = trimOws(token.slice(4));
      if (rest === "") {
        const seconds = Math.min(60, maxSeconds);
        return { seconds, applied: seconds === 60 ? "wait" : `wait=${seconds}` };
      }
      if (rest[0] !== "=") continue;
      let n = trimOws(rest.slice(1));
      if (n.length >= 2 && n.startsWith('"') && n.endsWith('"')) n = n.slice(1, -1);
      if (!isDigits(n) || Number(n) < 1) return undefined;
      const seconds = Math.min(Number(n), maxSeconds);
      return { seconds, applied: `wait=${seconds}` };
    }
  }
  return undefined;
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000 };

/**
 * Cancel-After: "90s", "5m", "1h30m45s" or bare seconds, from 5 s to MAX_CANCEL_AFTER_MS.
 * undefined if absent, NaN if invalid or out of range. One left-to-right scan: digits, then a
 * unit, repeated; a bare number is seconds.
 */
export function parseCancelAfter(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const raw = Array.isArray(header) ? (header[0] ?? "") : header;
  if (raw.length > MAX_CANCEL_AFTER_LENGTH) return Number.NaN;
  const text = trimOws(raw);
  if (isDigits(text)) return inRange(Number(text) * 1000);
  let total = 0;
  let digits = "";
  for (const ch of text) {
    if (ch >= "0" && ch <= "9") {
      digits += ch;
      continue;
    }
    const unit = Object.hasOwn(UNIT_MS, ch) ? (UNIT_MS[ch] as number) : undefined;
    if (unit === undefined || digits === "") return Number.NaN;
    total += Number(digits) * unit;
    digits = "";
  }
  if (digits !== "" || text === "") return Number.NaN;
  return inRange(total);
}

function inRange(ms: number): number {
  return Number.isFinite(ms) && ms >= 5000 && ms <= MAX_CANCEL_AFTER_MS ? ms : Number.NaN;
}

/** What a Host (or a trusted X-Forwarded-Host) may hold: a name or address and a port. */
const HOST_VALUE = /^[A-Za-z0-9._~:[\]-]{1,255}$/;

/**
 * The origin the client sees, or the configured public URL, plus the route prefix. Fastify
 * answers request.host and request.protocol from X-Forwarded-Host/-Proto only when the peer is
 * a configured trusted proxy (--trust-proxy); from anyone else those headers are ignored.
 */
export function urlBaseOf(req: FastifyRequest, prefix: string, publicBaseUrl: string | undefined): UrlBase {
  let origin = publicBaseUrl;
  if (!origin) {
    const local = req.socket.localAddress ?? "127.0.0.1";
    const host = HOST_VALUE.test(req.host)
      ? req.host
      : `${local.includes(":") ? `[${local}]` : local}:${req.socket.localPort}`;
    origin = `${req.protocol === "https" ? "https" : "http"}://${host}`;
  }
  return { origin, api: `${origin}${prefix}` };
}
