/**
 * The route validator (schemas/validation.ts) on hostile query strings and bodies, through a real
 * Fastify app (no network): every bad value is a 422 in Replicate's shape or a 400, never a 500.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/server/app.js";
import { TokenAuth } from "../../src/server/auth.js";
import { STABLE_DIFFUSION_VERSION } from "../../src/server/models/stable-diffusion.js";
import type { PredictionRecord } from "../../src/server/predictions/prediction.js";
import { toApiPrediction } from "../../src/server/predictions/serialize.js";
import { compileValidator } from "../../src/server/schemas/validation.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { Worker } from "../../src/server/worker.js";
import { type Harness, newHarness } from "../helpers/prediction-service.js";

let h: Harness;
let app: FastifyInstance;
let worker: Worker;
const auth = { authorization: "Bearer r8_test" };

before(async () => {
  h = newHarness();
  app = buildApp({
    service: h.service,
    webhooks: new WebhookDispatcher(h.store, h.events, { allowPrivate: false, userAgent: "test" }),
    auth: new TokenAuth(["r8_test"]),
    bodyLimit: 1 << 16,
    publicBaseUrl: undefined,
    maxWaitSeconds: 60,
    corsOrigins: [],
    rateLimit: null,
    provider: "cpu",
    version: "0.0.0-test",
  });
  await app.ready();
  worker = new Worker(h.lifecycle, h.service.models, h.queue);
  worker.start();
});

after(async () => {
  await worker.stop();
  await app.close();
  await h.close();
});

async function list(query: string) {
  const res = await app.inject({ method: "GET", url: `/v1/predictions?${query}`, headers: auth });
  return { status: res.statusCode, json: res.json() as Record<string, unknown> };
}

test("list query: bad values are 422 with every field named; repeated keys count once", async () => {
  let r = await list("page_size=0&status=done&created_after=yesterday&created_before=2025-13-40T99:99:99Z");
  assert.equal(r.status, 422);
  const fields = (r.json["invalid_fields"] as { field: string; type: string }[]).map((f) => `${f.field}:${f.type}`);
  assert.deepEqual(fields.sort(), [
    "created_after:format",
    "created_before:format",
    "page_size:number_gte",
    "status:enum",
  ]);
  for (const q of [
    "page_size=101",
    "page_size=abc",
    "page_size=1e3",
    "page_size=-1",
    "page_size=2.5",
    "cursor=%00%ff",
  ]) {
    r = await list(q);
    assert.equal(r.status, 422, q);
  }
  r = await list("status=succeeded&status=bogus&page_size=5&page_size=nope");
  assert.equal(r.status, 200);
  assert.deepEqual(r.json["results"], []);
});

test("list query: prototype keys, huge values and many keys are harmless", async () => {
  let r = await list("__proto__=1&constructor=2&hasOwnProperty=3");
  assert.equal(r.status, 200);
  r = await list(`created_after=${"9".repeat(5000)}`);
  assert.equal(r.status, 422);
  r = await list(`model=${"x".repeat(5000)}&version=${"y".repeat(5000)}`);
  assert.deepEqual(r.json["results"], []);
  r = await list(Array.from({ length: 500 }, (_, i) => `k${i}=${i}`).join("&"));
  assert.equal(r.status, 200);
});

test("create body: not an object is 400; a missing body is the empty one (required fields named)", async () => {
  for (const payload of ["[1]", '"text"', "42", "null", "true"]) {
    const res = await app.inject({
      method: "POST",
      url: "/v1/predictions",
      headers: { ...auth, "content-type": "application/json" },
      payload,
    });
    assert.equal(res.statusCode, payload === "null" ? 422 : 400, payload);
  }
  const res = await app.inject({ method: "POST", url: "/v1/predictions", headers: auth });
  assert.equal(res.statusCode, 422);
  assert.deepEqual(
    (res.json() as { invalid_fields: { description: string }[] }).invalid_fields.map((f) => f.description),
    ["version is required", "input is required"],
  );
});

test("create body: the body's and the input's violations come back together", async () => {
  const res = await app.inject({
    method: "POST",
    url: "/v1/predictions",
    headers: { ...auth, "content-type": "application/json" },
    payload: JSON.stringify({
      version: STABLE_DIFFUSION_VERSION,
      input: { width: 3, unknown_key: 1 },
      webhook_events_filter: ["start", "nope"],
      extra: true,
    }),
  });
  assert.equal(res.statusCode, 422);
  const fields = (res.json() as { invalid_fields: { field: string; type: string }[] }).invalid_fields;
  assert.deepEqual(
    fields.map((f) => `${f.field}:${f.type}`),
    ["webhook_events_filter.1:enum", ":additional_property_not_allowed", "input.width:enum"],
  );
});

test("compileValidator: params of plain strings are not checked; query numbers are parsed", () => {
  const params = compileValidator({ type: "object", properties: { id: { type: "string" } } }, "params");
  assert.equal(params({ id: "x" }), true);
  const query = compileValidator(
    { type: "object", properties: { n: { type: "integer", maximum: 3 }, b: { type: "boolean" } } },
    "querystring",
  );
  assert.deepEqual(query({ n: ["2", "9"], b: "true" }), { value: { n: 2, b: true } });
  const bad = query({ n: "9" }) as { error?: { fields: unknown[] } };
  assert.equal(bad.error?.fields.length, 1);
});

test("OpenAI route: errors in OpenAI's envelope naming the parameter; null means not given", async () => {
  const generate = (body: unknown) =>
    app.inject({
      method: "POST",
      url: "/v1/images/generations",
      headers: { ...auth, "content-type": "application/json" },
      payload: JSON.stringify(body),
    });
  const cases: [unknown, string | null][] = [
    [{ prompt: "x", n: 5 }, "n"],
    [{ prompt: "x", n: "2" }, "n"],
    [{ n: 1 }, "prompt"],
    [{ prompt: 7 }, "prompt"],
    [{ prompt: "" }, "prompt"],
    [{ prompt: "x", size: "1024x1024" }, "size"],
    [{ prompt: "x", size: "128x128x2" }, "size"],
    [{ prompt: "x", response_format: "png" }, "response_format"],
    [{ prompt: "x", size: "128x128", num_inference_steps: 0 }, "num_inference_steps"],
    [[1, 2], null],
  ];
  for (const [body, param] of cases) {
    const res = await generate(body);
    assert.equal(res.statusCode, 400, JSON.stringify(body));
    const error = (res.json() as { error: { param: string | null; type: string } }).error;
    assert.equal(error.param, param, JSON.stringify(body));
    assert.equal(error.type, "invalid_request_error");
  }
  const res = await generate({ prompt: "x", n: null, size: "128x128", response_format: null, seed: null });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal((res.json() as { data: { url: string }[] }).data.length, 1);
});

test("the response schema sends the prediction exactly as serialize.ts makes it, key order included", async () => {
  const created = await app.inject({
    method: "POST",
    url: "/v1/predictions",
    headers: { ...auth, "content-type": "application/json", prefer: "wait=5", "cancel-after": "1h" },
    payload: JSON.stringify({
      version: STABLE_DIFFUSION_VERSION,
      input: { prompt: 'a "quoted"\nprompt', unknown: { deep: [1, null] } },
      webhook: "https://example.com/hook",
      webhook_events_filter: ["completed", "start"],
    }),
  });
  assert.equal(created.statusCode, 201, created.body);
  const id = (created.json() as { id: string }).id;
  const record = await h.store.get(id);
  assert.equal(record?.status, "succeeded");
  const res = await app.inject({ method: "GET", url: `/v1/predictions/${id}`, headers: auth });
  const base = { api: "http://localhost:80/v1", origin: "http://localhost:80" };
  assert.equal(res.body, JSON.stringify(toApiPrediction(record as PredictionRecord, base)));
  assert.deepEqual(Object.keys(res.json() as object).slice(-5), [
    "webhook",
    "webhook_events_filter",
    "deadline",
    "metrics",
    "urls",
  ]);
});
