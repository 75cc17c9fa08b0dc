/**
 * Which webhook targets may be called. A webhook is a request this server makes on a caller's
 * behalf, so by default it never reaches loopback, private, link-local or otherwise internal
 * addresses — in any spelling (127.1, 0x7f000001 and [::ffff:127.0.0.1] are all loopback) and
 * after DNS, checked on the address actually connected to, so a name that later resolves
 * elsewhere (DNS rebinding) cannot slip through. SDSERVE_WEBHOOK_ALLOW_PRIVATE=true lifts this.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";

const internal = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24], // 6to4 relay anycast
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  internal.addSubnet(net, prefix, "ipv4");
}
// IPv6 ranges refused whole. The forms that carry an IPv4 address (mapped, translated,
// compatible, 6to4, NAT64) are not listed: they are judged by the address they carry.
for (const [net, prefix] of [
  ["64:ff9b:1::", 48], // local-use NAT64
  ["100::", 64], // discard
  ["2001::", 23], // IETF protocol assignments, Teredo (2001::/32) among them
  ["2001:db8::", 32], // documentation
  ["3fff::", 20], // documentation
  ["5f00::", 16], // SRv6 segment identifiers
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated, still routed by some stacks)
  ["ff00::", 8], // multicast
] as const) {
  internal.addSubnet(net, prefix, "ipv6");
}

/** An IPv6 address as its eight 16-bit groups (a trailing dotted quad counts as two). */
function ipv6Groups(address: string): number[] {
  let a = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.split("::") as [string, string | undefined];
  const parse = (part: string) => (part ? part.split(":").map((g) => Number.parseInt(g, 16)) : []);
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}

const dottedQuad = (hi: number, lo: number) => [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");

/**
 * The IPv4 address an IPv6 address stands for, in each form that carries one: IPv4-mapped
 * (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d, :: and ::1
 * included, which decode to 0.0.0.0/8), 6to4 (2002:aabb:ccdd::/48) and NAT64 (64:ff9b::a.b.c.d).
 * Teredo (2001::/32, the client's address inverted in the last 32 bits) is refused whole.
 */
export function embeddedIpv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const zeros4 = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0;
  if (zeros4 && g4 === 0 && (g5 === 0 || g5 === 0xffff)) return dottedQuad(g6, g7); // compatible, mapped
  if (zeros4 && g4 === 0xffff && g5 === 0) return dottedQuad(g6, g7); // translated
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return dottedQuad(g6, g7);
  if (g0 === 0x2002) return dottedQuad(g1, g2);
  return undefined;
}

export function isInternalAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, "").split("%")[0] as string;
  const family = isIP(a);
  if (family === 4) return internal.check(a, "ipv4");
  if (family === 6) {
    const v4 = embeddedIpv4(a);
    return v4 !== undefined ? internal.check(v4, "ipv4") : internal.check(a, "ipv6");
  }
  return true; // not an address at all: refuse rather than guess
}

/** A target refused before any connection: an internal IP literal or a name for this machine. */
export class WebhookTargetError extends Error {
  override readonly name = "WebhookTargetError";
}

/**
 * A name that gave no address webhooks may go to. One message and one handling whatever the
 * cause (no such name, a resolver failure, or only internal addresses), so the delivery log
 * cannot be used to learn which internal names exist.
 */
export class WebhookLookupError extends Error {
  override readonly name = "WebhookLookupError";
  constructor(hostname: string) {
    super(`${hostname} did not resolve to an address webhooks may be sent to`);
  }
}

/**
 * The target's host, as the URL parser normalised it, if it is an IP literal; else undefined
 * (a name, to be resolved).
 */
function literalAddress(url: URL): string | undefined {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return isIP(host) ? host : undefined;
}

/**
 * A webhook as a create may give it: an absolute http or https URL with no control characters
 * or spaces. The URL parser quietly percent-encodes those; the webhook is kept and echoed as
 * sent, so such a string is refused rather than stored (PostgreSQL rejects a NUL).
 */
export function isWebhookUrl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
  }
  try {
    const u = new URL(text);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/** Refuses a URL whose host is an internal IP literal or a name for this machine. Names are checked at connect time. */
export function checkWebhookUrl(url: URL, allowPrivate: boolean): void {
  if (allowPrivate) return;
  const literal = literalAddress(url);
  const name = url.hostname.toLowerCase().replace(/\.$/, "");
  if ((literal && isInternalAddress(literal)) || name === "localhost" || name.endsWith(".localhost")) {
    throw new WebhookTargetError(
      `${url.hostname} is a loopback, private or otherwise internal address; webhooks are not sent there unless SDSERVE_WEBHOOK_ALLOW_PRIVATE=true`,
    );
  }
}

/** A lookup for http.request that resolves the name and refuses internal addresses (checked on what is connected to). */
export function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      const allowed = err ? [] : allowPrivate ? addresses : addresses.filter((a) => !isInternalAddress(a.address));
      if (allowed.length === 0) return callback(new WebhookLookupError(hostname), "", 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, allowed);
      const first = allowed[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}
