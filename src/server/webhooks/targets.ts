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
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  internal.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b::", 96], // NAT64 of any IPv4 address
  ["100::", 64],
  ["2001:db8::", 32],
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
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

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or -compatible (::a.b.c.d) IPv6 address. */
function embeddedIpv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const zeros = g.slice(0, 5).every((x) => x === 0);
  const mapped = zeros && g[5] === 0xffff;
  const compatible = zeros && g[5] === 0 && (g[6] as number) !== 0;
  if (!mapped && !compatible) return undefined;
  const hi = g[6] as number;
  const lo = g[7] as number;
  return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
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

export class WebhookTargetError extends Error {
  override readonly name = "WebhookTargetError";
}

/**
 * The target's host, as the URL parser normalised it, if it is an IP literal; else undefined
 * (a name, to be resolved).
 */
function literalAddress(url: URL): string | undefined {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return isIP(host) ? host : undefined;
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
      if (err) return callback(err, "", 0);
      const allowed = allowPrivate ? addresses : addresses.filter((a) => !isInternalAddress(a.address));
      if (allowed.length === 0) {
        return callback(
          new WebhookTargetError(`${hostname} resolves to an internal address; webhooks are not sent there`),
          "",
          0,
        );
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, allowed);
      const first = allowed[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}
