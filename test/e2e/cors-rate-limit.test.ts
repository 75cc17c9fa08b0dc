/** Opt-in behaviour beyond Replicate: CORS for browsers and a per-token rate limit. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, authHeaders, OTHER_TOKEN, type Sdserve, startSdserve } from "./server.js";

let server: Sdserve;

before(async () => {
  server = await startSdserve({ env: { SDSERVE_CORS_ORIGINS: "https://app.example.org", SDSERVE_RATE_LIMIT: "5/m" } });
});
after(async () => {
  await server?.stop();
});

test("CORS: a preflight from an allowed origin is answered; others get no CORS headers", async () => {
  const pre = await fetch(`${server.url}/v1/predictions`, {
    method: "OPTIONS",
    headers: {
      Origin: "https://app.example.org",
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "authorization, content-type, prefer",
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "https://app.example.org");
  assert.match(pre.headers.get("access-control-allow-headers") ?? "", /prefer/);
  assert.match(pre.headers.get("access-control-allow-methods") ?? "", /POST/);

  const get = await fetch(`${server.url}/v1/predictions`, {
    headers: { ...authHeaders(OTHER_TOKEN), Origin: "https://app.example.org" },
  });
  assert.equal(get.headers.get("access-control-allow-origin"), "https://app.example.org");
  assert.match(get.headers.get("access-control-expose-headers") ?? "", /Preference-Applied/);
  const other = await fetch(`${server.url}/v1/predictions`, {
    headers: { ...authHeaders(OTHER_TOKEN), Origin: "https://evil.example" },
  });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});

test("rate limit: past the limit a token gets 429 with Retry-After and retry_after; other tokens are unaffected", async () => {
  const statuses: number[] = [];
  let last: Awaited<ReturnType<typeof api>> | undefined;
  for (let i = 0; i < 6; i++) {
    last = await api(server, "GET", "/v1/predictions");
    statuses.push(last.status);
  }
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
  const retry = Number(last?.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 60);
  assert.equal(last?.json["retry_after"], retry);
  assert.match(last?.json["detail"] as string, /throttled/);
  // OTHER_TOKEN used 2 requests in the CORS test.
  assert.equal((await api(server, "GET", "/v1/predictions", undefined, authHeaders(OTHER_TOKEN))).status, 200);
});
