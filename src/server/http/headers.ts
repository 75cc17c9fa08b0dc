/** Request headers with a grammar: Prefer (RFC 7240), Cancel-After, and the URLs a response is seen from. */
import type { FastifyRequest } from "fastify";
import { parseDuration } from "../../config.js";
import type { UrlBase } from "../predictions/serialize.js";

export interface WaitPreference {
  seconds: number;
  /** The Preference-Applied value: the form honoured (`wait`, or `wait=N` after clamping). */
  applied: string;
}

/**
 * `Prefer: wait` (60 s) or `wait=N`, among other comma-separated preferences. N above the
 * server's maximum is clamped rather than refused (the JS client sends whatever timeout its
 * caller chose); anything unparsable means no wait (spec §1.4).
 */
export function parsePreferWait(header: string | string[] | undefined, maxSeconds: number): WaitPreference | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const pref of values.flatMap((v) => v.split(","))) {
    const [token] = pref.split(";");
    const m = /^\s*wait\s*(?:=\s*"?([^"\s]*)"?)?\s*$/i.exec(token ?? "");
    if (!m) continue;
    if (m[1] === undefined) {
      const seconds = Math.min(60, maxSeconds);
      return { seconds, applied: seconds === 60 ? "wait" : `wait=${seconds}` };
    }
    if (!/^\d+$/.test(m[1])) return undefined;
    const n = Number(m[1]);
    if (n < 1) return undefined;
    const seconds = Math.min(n, maxSeconds);
    return { seconds, applied: `wait=${seconds}` };
  }
  return undefined;
}

/** Cancel-After: "90s", "5m", "1h30m45s" or bare seconds; at least 5 s. undefined if absent, NaN if invalid. */
export function parseCancelAfter(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? (header[0] ?? "") : header;
  const ms = /^\s*(\d+(h|m|s)?)+\s*$/.test(text) ? parseDuration(text) : undefined;
  return ms !== undefined && ms >= 5000 ? ms : Number.NaN;
}

function firstValue(h: string | string[] | undefined): string | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  return v?.split(",")[0]?.trim() || undefined;
}

/** The origin the client sees (X-Forwarded-* honoured), or the configured public URL, plus the route prefix. */
export function urlBaseOf(req: FastifyRequest, prefix: string, publicBaseUrl: string | undefined): UrlBase {
  let origin = publicBaseUrl;
  if (!origin) {
    const encrypted = "encrypted" in req.socket && Boolean(req.socket.encrypted);
    const proto = firstValue(req.headers["x-forwarded-proto"]) ?? (encrypted ? "https" : "http");
    const host =
      firstValue(req.headers["x-forwarded-host"]) ??
      req.headers.host ??
      `${req.socket.localAddress}:${req.socket.localPort}`;
    origin = `${proto === "https" ? "https" : "http"}://${host}`;
  }
  return { origin, api: `${origin}${prefix}` };
}
