/** --trust-proxy / SDSERVE_TRUST_PROXY: which peers' X-Forwarded-Host/-Proto are believed. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.js";

test("off by default; addresses, CIDRs and proxy-addr's keywords are taken, the flag over the variable", () => {
  assert.deepEqual(loadConfig(["--model", "m"], {}).trustProxy, []);
  assert.deepEqual(
    loadConfig(["--model", "m"], { SDSERVE_TRUST_PROXY: "127.0.0.1, 10.0.0.0/8,::1,fd00::/8,loopback" }).trustProxy,
    ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "loopback"],
  );
  assert.deepEqual(
    loadConfig(["--model", "m", "--trust-proxy", "192.168.1.10"], { SDSERVE_TRUST_PROXY: "10.0.0.1" }).trustProxy,
    ["192.168.1.10"],
  );
});

test("anything else is refused at start-up, naming the setting", () => {
  for (const bad of ["true", "*", "proxy.example.org", "10.0.0.0/33", "::1/129", "10.0.0.1/8/8", "10.0.0.0/x", ","]) {
    assert.throws(
      () => loadConfig(["--model", "m"], { SDSERVE_TRUST_PROXY: bad }),
      (err: Error) => err instanceof ConfigError && /SDSERVE_TRUST_PROXY/.test(err.message),
      bad,
    );
  }
  assert.throws(
    () => loadConfig(["--model", "m", "--trust-proxy", "nope"], {}),
    (err: Error) => err instanceof ConfigError && /--trust-proxy/.test(err.message),
  );
});
