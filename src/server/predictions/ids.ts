/** Prediction ids, capability keys and timestamps. */
import { randomBytes } from "node:crypto";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base32, lowercase, without padding. */
function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** 26 characters of [a-z2-7] from 16 random bytes, the shape of Replicate's ids (spec §0.4). */
export function newPredictionId(): string {
  return base32(randomBytes(16));
}

/** 160 random bits: the unguessable part of a capability URL (output files, stream). */
export function newCapabilityKey(): string {
  return base32(randomBytes(20));
}

let lastMicros = 0;

/**
 * Now as RFC 3339 UTC with microseconds ("2025-03-02T10:15:30.120123Z"), strictly increasing
 * within this process, so that "newest first" is the order in which predictions were created.
 */
export function timestamp(): string {
  const micros = Math.max(Date.now() * 1000, lastMicros + 1);
  lastMicros = micros;
  return formatMicros(micros);
}

export function formatMicros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const iso = new Date(ms).toISOString(); // …:30.120Z
  return `${iso.slice(0, -1)}${String(micros % 1000).padStart(3, "0")}Z`;
}

/** Parses an RFC 3339 timestamp into the stored form (for comparisons); undefined if it is not one. */
export function normalizeTimestamp(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(text.trim());
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}T${m[2]}${m[4]?.toUpperCase()}`);
  if (Number.isNaN(ms)) return undefined;
  const frac = (m[3] ?? ".0").slice(1).padEnd(6, "0").slice(0, 6);
  return formatMicros(ms * 1000 + Number(frac));
}

/** Seconds between two stored timestamps. */
export function secondsBetween(from: string, to: string): number {
  return (parseMicros(to) - parseMicros(from)) / 1e6;
}

export function parseMicros(ts: string): number {
  // Stored form: 2025-03-02T10:15:30.123456Z (fraction optional, up to 6 digits). Read on every response.
  const dot = ts.indexOf(".", 19);
  if (dot < 0 || !ts.endsWith("Z")) return Date.parse(ts) * 1000;
  const fraction = ts.slice(dot + 1, -1);
  const base = Date.parse(`${ts.slice(0, dot)}Z`);
  return base * 1000 + (/^\d{1,6}$/.test(fraction) ? Number(fraction.padEnd(6, "0")) : 0);
}
