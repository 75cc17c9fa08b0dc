/** Webhook targets: internal addresses in any spelling are refused; signatures verify. */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { newWebhookSecret, signWebhook } from "../../src/server/webhooks/signing.js";
import { checkWebhookUrl, guardedLookup, isInternalAddress } from "../../src/server/webhooks/targets.js";

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
  assert.match(String(err?.message), /resolves to an internal address/);
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
