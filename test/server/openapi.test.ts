/**
 * /openapi.json is made from the registered routes and the served models: it must be valid
 * OpenAPI 3.1 (checked by a real validator), list every route Fastify has, and every served
 * model's Input and Output.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/server/app.js";
import { TokenAuth } from "../../src/server/auth.js";
import { modelComponentPrefix } from "../../src/server/schemas/openapi.js";
import { WebhookDispatcher } from "../../src/server/webhooks/dispatcher.js";
import { type Harness, newHarness, TestAdapter } from "../helpers/prediction-service.js";

let h: Harness;
let app: FastifyInstance;
let doc: {
  openapi: string;
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
  components: { schemas: Record<string, Record<string, unknown>> };
};

before(async () => {
  h = newHarness({}, [new TestAdapter("me", "product-shots")]);
  app = buildApp({
    service: h.service,
    webhooks: new WebhookDispatcher(h.store, h.events, { allowPrivate: false, userAgent: "test" }),
    auth: new TokenAuth(["r8_test"]),
    bodyLimit: 1 << 20,
    publicBaseUrl: undefined,
    maxWaitSeconds: 60,
    corsOrigins: [],
    rateLimit: null,
    provider: "cpu",
    version: "0.0.0-test",
    metrics: undefined,
  });
  await app.ready();
  const res = await app.inject({ method: "GET", url: "/openapi.json" });
  assert.equal(res.statusCode, 200);
  doc = res.json();
});

after(async () => {
  await app.close();
  await h.close();
});

/** Every (method, path) Fastify serves, from its own route tree (HEAD aside: it follows GET). */
function registeredRoutes(): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split("\n")) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([^)]*)\))?/.exec(line);
    if (!m) continue;
    const depth = (m[1] ?? "").length / 4;
    stack.length = depth;
    stack.push(m[2] as string);
    const path = stack.join("").replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    for (const method of (m[3] ?? "").split(", ").filter((x) => x && x !== "HEAD")) {
      out.push(`${method} ${path}`);
    }
  }
  return out.sort();
}

test("/openapi.json is valid OpenAPI 3.1", async () => {
  assert.match(doc.openapi, /^3\.1\./);
  const validator = new Validator();
  const result = await validator.validate(doc);
  assert.equal(validator.version, "3.1");
  assert.deepEqual(result.errors ?? [], [], JSON.stringify(result.errors, null, 1));
  assert.equal(result.valid, true);
  // The validator does refuse a broken document (so this test can fail).
  const broken = structuredClone(doc) as Record<string, unknown>;
  (broken["paths"] as Record<string, unknown>)["/v1/predictions"] = { get: { responses: "none" } };
  assert.equal((await new Validator().validate(broken)).valid, false);
});

test("/openapi.json lists every route Fastify has registered", () => {
  const routes = registeredRoutes();
  assert.ok(routes.includes("GET /v1/predictions/{prediction_id}"), routes.join("\n"));
  assert.ok(routes.includes("POST /v1/images/generations"), routes.join("\n"));
  const documented = Object.entries(doc.paths)
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
    .sort();
  assert.deepEqual(documented, routes);
});

test("every served model's Input and Output are components, and the create bodies refer to each Input", () => {
  const bodyRef = doc.paths["/v1/predictions"]?.["post"]?.requestBody?.content["application/json"]?.schema as {
    $ref: string;
  };
  const body = doc.components.schemas[bodyRef.$ref.replace("#/components/schemas/", "")] as {
    properties: { input: { anyOf: { $ref: string }[] } };
  };
  const refs = body.properties.input.anyOf.map((r) => r.$ref);
  for (const model of h.service.models) {
    const prefix = modelComponentPrefix(model);
    assert.ok(refs.includes(`#/components/schemas/${prefix}Input`), refs.join(", "));
    const input = doc.components.schemas[`${prefix}Input`];
    assert.ok(input && doc.components.schemas[`${prefix}Output`], prefix);
    // Each model's own $refs point at its own enums.
    assert.deepEqual((input["properties"] as Record<string, { allOf?: unknown }>)["width"]?.allOf, [
      { $ref: `#/components/schemas/${prefix}width` },
    ]);
    assert.deepEqual(doc.components.schemas[`${prefix}width`], model.schemas["width"]);
  }
});

test("one status enum and one webhook-event enum, shared by reference", () => {
  const text = JSON.stringify(doc);
  assert.equal(text.split('"starting","processing"').length - 1, 1);
  assert.equal(text.split('"start","output","logs","completed"').length - 1, 1);
  const prediction = doc.components.schemas["Prediction"] as { properties: Record<string, unknown> };
  assert.deepEqual(prediction.properties["status"], { $ref: "#/components/schemas/Status" });
});
