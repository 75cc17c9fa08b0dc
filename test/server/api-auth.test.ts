/** --api-auth (AUTOMATIC1111's): HTTP Basic users, and a token as a Basic password. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.js";
import { TokenAuth } from "../../src/server/auth.js";

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

test("--api-auth user:pass[,user2:pass2]; a password may hold colons; bad entries refused naming the setting", () => {
  assert.deepEqual(loadConfig(["--model", "m"], {}).apiAuth, []);
  assert.deepEqual(loadConfig(["--model", "m", "--api-auth", "a:b, c:d:e"], {}).apiAuth, [
    { user: "a", password: "b" },
    { user: "c", password: "d:e" },
  ]);
  for (const bad of ["nopassword", ":pw", "user:", "us er:pw", "a:b,c"]) {
    assert.throws(
      () => loadConfig(["--model", "m"], { SDSERVE_API_AUTH: bad }),
      (err: Error) => err instanceof ConfigError && /SDSERVE_API_AUTH/.test(err.message),
      bad,
    );
  }
});

test("Basic: each user its own account, a token as password is the token's account, anything else nobody", () => {
  const auth = new TokenAuth(
    ["r8_token"],
    [
      { user: "a", password: "pw" },
      { user: "b", password: "pw" },
    ],
  );
  const a = auth.authenticateWithBasic(basic("a", "pw"));
  const b = auth.authenticateWithBasic(basic("b", "pw"));
  assert.ok(a && b && a !== b);
  assert.equal(auth.authenticateWithBasic(basic("x", "r8_token")), auth.authenticate("Bearer r8_token"));
  assert.equal(auth.authenticateWithBasic("Bearer r8_token"), auth.authenticate("Bearer r8_token"));
  for (const bad of [basic("a", "wrong"), basic("c", "pw"), basic("a", ""), "Basic", "Basic @@@", "Basic YQ==", ""]) {
    assert.equal(auth.authenticateWithBasic(bad), undefined, bad);
  }
  // The Replicate routes keep to tokens.
  assert.equal(auth.authenticate(basic("a", "pw")), undefined);
});
