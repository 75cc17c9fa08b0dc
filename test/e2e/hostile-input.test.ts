/**
 * Hostile requests against a real sdserve: deep nesting, prototype-named keys, over-long
 * prompts, forged X-Forwarded-* headers, and a seeded fuzz run over both API prefixes. Every
 * answer is a 4xx (or a success), never a 500 or a hang, and every error is JSON.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import { MAX_PROMPT_LENGTH } from "../../src/server/models/stable-diffusion.js";
import { api, authHeaders, type Sdserve, smallInput, startSdserve, VERSION } from "./server.js";

let server: Sdserve;

before(async () => {
  server = await startSdserve();
});
after(async () => {
  await server?.stop();
});

const PREFIXES = ["/v1", "/replicate/v1"];

async function post(route: string, body: string, headers = authHeaders()) {
  const res = await fetch(`${server.url}${route}`, { method: "POST", headers, body });
  return { status: res.status, type: res.headers.get("content-type") ?? "", json: JSON.parse(await res.text()) };
}

test("400k levels of nested arrays in an input: a 400, not a stack overflow; the server carries on", async () => {
  const levels = 400_000;
  const body = `{"version":"${VERSION}","input":{"prompt":"x","foo":${"[".repeat(levels)}${"]".repeat(levels)}}}`;
  for (const prefix of PREFIXES) {
    const r = await post(`${prefix}/predictions`, body);
    assert.equal(r.status, 400, prefix);
    assert.match(r.type, /^application\/problem\+json/);
    assert.match(r.json.detail, /deeper than 32 levels/);
  }
  const openai = await post(
    "/v1/images/generations",
    `{"prompt":"x","user":${"[".repeat(levels)}${"]".repeat(levels)}}`,
  );
  assert.equal(openai.status, 400);
  assert.match(openai.json.error.message, /deeper than 32 levels/);
  assert.equal((await api(server, "GET", "/health-check", undefined, {})).status, 200);
});

test("unknown input keys are accepted and ignored: not stored, not echoed", async () => {
  const r = await api(server, "POST", "/v1/predictions", {
    version: VERSION,
    input: { ...smallInput(), steps: 20, nested: [[[[{ a: [1] }]]]], toString: "x" },
  });
  assert.equal(r.status, 201);
  assert.deepEqual(r.json["input"], smallInput());
  const again = await api(server, "GET", `/v1/predictions/${r.json["id"]}`);
  assert.deepEqual(again.json["input"], smallInput());
});

test("a top-level key named after an Object.prototype member is refused like any unknown key", async () => {
  for (const key of ["toString", "constructor", "bogus"]) {
    const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput(), [key]: "x" });
    assert.equal(r.status, 422, key);
    assert.deepEqual(r.json["invalid_fields"], [
      { type: "additional_property_not_allowed", field: "", description: `Additional property ${key} is not allowed` },
    ]);
  }
});

test("prompts longer than the schema's maxLength are a 422 (an OpenAI 400 on the images route)", async () => {
  const long = "a".repeat(MAX_PROMPT_LENGTH + 1);
  for (const key of ["prompt", "negative_prompt"]) {
    const r = await api(server, "POST", "/replicate/v1/predictions", { version: VERSION, input: { [key]: long } });
    assert.equal(r.status, 422, key);
    assert.equal((r.json["invalid_fields"] as { type: string }[])[0]?.type, "string_lte");
  }
  const openai = await api(server, "POST", "/v1/images/generations", { prompt: long, size: "128x128" });
  assert.equal(openai.status, 400);
  const error = openai.json["error"] as Record<string, unknown>;
  assert.equal(error["param"], "prompt");
  assert.match(error["message"] as string, /less than or equal to 10000/);
});

/** A create through node:http, which (unlike fetch) lets a test set Host itself. */
function createWith(
  target: Sdserve,
  headers: Record<string, string>,
): Promise<{ status: number; location: string; body: Record<string, unknown> }> {
  const body = JSON.stringify({ version: VERSION, input: smallInput() });
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${target.url}/v1/predictions`,
      { method: "POST", headers: { ...authHeaders(), ...headers } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, location: String(res.headers.location), body: JSON.parse(text) }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const FORWARDED = { "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https" };

test("X-Forwarded-Host/-Proto from a peer that is not a trusted proxy are ignored", async () => {
  const r = await createWith(server, FORWARDED);
  assert.equal(r.status, 201);
  assert.ok(r.location.startsWith(`${server.url}/v1/predictions/`), r.location);
  const urls = r.body["urls"] as Record<string, string>;
  for (const url of Object.values(urls)) assert.ok(url.startsWith(server.url), url);
  // A Host that is no host name (a path, a query) does not make its way into URLs either.
  const odd = await createWith(server, { Host: "evil.example/x?y=" });
  assert.equal(odd.status, 201);
  assert.ok(odd.location.startsWith(`${server.url}/v1/predictions/`), odd.location);
});

test("behind a configured trusted proxy they are honoured; a proxy list without the peer still ignores them", async () => {
  const trusting = await startSdserve({ args: ["--trust-proxy", "127.0.0.1/8,::1"] });
  const elsewhere = await startSdserve({ env: { SDSERVE_TRUST_PROXY: "10.1.2.3" } });
  try {
    const r = await createWith(trusting, FORWARDED);
    assert.equal(r.status, 201);
    assert.match(r.location, /^https:\/\/evil\.example\/v1\/predictions\/[a-z2-7]{26}$/);
    assert.match((r.body["urls"] as Record<string, string>)["stream"] ?? "", /^https:\/\/evil\.example\/v1\/streams\//);
    // A chain of proxies: the entry the nearest one added (the last) counts.
    const chain = await createWith(trusting, { "X-Forwarded-Host": "client.example, proxy.example" });
    assert.match(chain.location, /^http:\/\/proxy\.example\/v1\//);
    const ignored = await createWith(elsewhere, FORWARDED);
    assert.ok(ignored.location.startsWith(`${elsewhere.url}/v1/predictions/`), ignored.location);
  } finally {
    await Promise.all([trusting.stop(), elsewhere.stop()]);
  }
});

test("a webhook URL longer than 2048 characters is a 422, not a stored and delivered megabyte", async () => {
  for (const key of ["webhook", "webhook_completed"]) {
    const url = `https://hooks.example.org/${"a".repeat(2048)}`;
    const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput(), [key]: url });
    assert.equal(r.status, 422, key);
    assert.deepEqual((r.json["invalid_fields"] as unknown[])[0], {
      type: "string_lte",
      field: key,
      description: "String length must be less than or equal to 2048",
    });
  }
});
