/** Webhook targets: internal addresses in any spelling are refused; signatures verify. */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { newWebhookSecret, signWebhook } from "../../src/server/webhooks/signing.js";
import { checkWebhookUrl, embeddedIpv4, guardedLookup, isInternalAddress } from "../../src/server/webhooks/targets.js";

test("internal addresses, IPv4 and IPv6, mapped or not", () => {
  for (const a of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]) {
    assert.equal(isInternalAddress(a), true, a);
  }
  for (const a of [
    "::1",
    "::",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",
  ]) {
    assert.equal(isInternalAddress(a), true, a);
  }
  for (const a of ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"]) {
    assert.equal(isInternalAddress(a), false, a);
  }
});

// Every IPv6 form that carries an IPv4 address, decoded; [address, what it carries, internal?].
const ipv6Forms: [string, string | undefined, boolean][] = [
  ["::ffff:127.0.0.1", "127.0.0.1", true], // IPv4-mapped
  ["::ffff:7f00:1", "127.0.0.1", true],
  ["::ffff:0:7f00:1", "127.0.0.1", true], // IPv4-translated
  ["::ffff:0:10.0.0.1", "10.0.0.1", true],
  ["::ffff:0:808:808", "8.8.8.8", false],
  ["::127.0.0.1", "127.0.0.1", true], // IPv4-compatible
  ["::a9fe:a9fe", "169.254.169.254", true],
  ["::1", "0.0.0.1", true],
  ["::", "0.0.0.0", true],
  ["::8.8.8.8", "8.8.8.8", false],
  ["2002:7f00:1::", "127.0.0.1", true], // 6to4
  ["2002:c0a8:101::1", "192.168.1.1", true],
  ["2002:a9fe:a9fe:1:2:3:4:5", "169.254.169.254", true],
  ["2002:808:808::1", "8.8.8.8", false],
  ["64:ff9b::7f00:1", "127.0.0.1", true], // NAT64
  ["64:ff9b::a00:1", "10.0.0.1", true],
  ["64:ff9b::192.168.0.1", "192.168.0.1", true],
  ["64:ff9b::808:808", "8.8.8.8", false],
  ["2001:0:4136:e378:8000:63bf:80ff:fffe", undefined, true], // Teredo (client 127.0.0.1): refused whole
  ["2001:0:4136:e378:8000:63bf:f7f7:f7f7", undefined, true], // Teredo (client 8.8.8.8): refused whole
  ["64:ff9b:1::1", undefined, true], // local-use NAT64
  ["fec0::1", undefined, true], // site-local
  ["3fff::1", undefined, true], // documentation
  ["2001:db8::1", undefined, true],
  ["fe80::1%eth0", undefined, true],
  ["2606:4700::1111", undefined, false],
  ["2001:4860:4860::8888", undefined, false], // public, though it starts 2001:
];

test("IPv6 forms carrying an IPv4 address are judged by what they carry", () => {
  for (const [address, carried, internal] of ipv6Forms) {
    assert.equal(embeddedIpv4(address.split("%")[0] as string), carried, address);
    assert.equal(isInternalAddress(address), internal, address);
  }
});

test("URLs with an IPv6 literal: the forms carrying internal IPv4 addresses are refused", () => {
  for (const [address, , internal] of ipv6Forms) {
    if (address.includes("%")) continue;
    const url = new URL(`http://[${address}]/hook`);
    if (internal) assert.throws(() => checkWebhookUrl(url, false), /internal address/, address);
    else assert.doesNotThrow(() => checkWebhookUrl(url, false), address);
  }
});

test("a name that does not resolve and one that resolves to loopback are refused alike", async () => {
  const lookup = guardedLookup(false);
  const failure = (host: string) =>
    new Promise<Error | null>((resolve) => lookup(host, {}, (e) => resolve(e as Error | null)));
  const internal = await failure("localhost");
  const missing = await failure("no-such-host.invalid");
  assert.ok(internal && missing);
  assert.equal(internal.name, missing.name);
  assert.equal(internal.message.replace("localhost", "HOST"), missing.message.replace("no-such-host.invalid", "HOST"));
  assert.doesNotMatch(missing.message, /ENOTFOUND|EAI_|getaddrinfo/);
  assert.doesNotMatch(internal.message, /internal|loopback|private/);
});

test("URLs: every spelling of loopback is refused, public hosts pass, and the config lifts it", () => {
  for (const u of [
    "http://127.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://[::ffff:127.0.0.1]/",
    "http://LOCALHOST./",
  ]) {
    assert.throws(() => checkWebhookUrl(new URL(u), false), /internal address/, u);
    assert.doesNotThrow(() => checkWebhookUrl(new URL(u), true));
  }
  assert.doesNotThrow(() => checkWebhookUrl(new URL("https://example.org/hook"), false));
});

test("names are checked on the addresses they resolve to", async () => {
  const lookup = guardedLookup(false);
  const err = await new Promise<Error | null>((resolve) => lookup("localhost", {}, (e) => resolve(e)));
  assert.match(String(err?.message), /did not resolve to an address webhooks may be sent to/);
  const ok = await new Promise<string>((resolve, reject) =>
    guardedLookup(true)("localhost", {}, (e, address) => (e ? reject(e) : resolve(address as string))),
  );
  assert.ok(isInternalAddress(ok));
});

test("Standard Webhooks signature: HMAC-SHA256 of id.timestamp.body with the decoded secret", () => {
  const secret = newWebhookSecret();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  const expected = createHmac("sha256", Buffer.from(secret.slice(6), "base64"))
    .update("msg_1.1700000000.{}")
    .digest("base64");
  assert.equal(signWebhook(secret, "msg_1", 1700000000, "{}"), `v1,${expected}`);
});
