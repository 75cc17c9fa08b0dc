/**
 * Model, version, account and hardware lookups through the real replicate client, and the
 * OpenAPI documents: the version's openapi_schema carries the same Input schema that validates
 * requests.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Replicate from "replicate";
import { api, MODEL, type Sdserve, SERVED_VERSION, smallInput, startSdserve, TOKEN, VERSION } from "./server.js";

type Schemas = Record<string, Record<string, unknown>>;

function schemasOf(version: { openapi_schema: object | null } | undefined): Schemas {
  assert.ok(version);
  return (version.openapi_schema as { components: { schemas: Schemas } }).components.schemas;
}

let server: Sdserve;
let replicate: Replicate;

before(async () => {
  server = await startSdserve();
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/replicate/v1` });
});
after(async () => {
  await server?.stop();
});

test("models.get: the model with its latest version and openapi_schema", async () => {
  const model = await replicate.models.get("stability-ai", "stable-diffusion");
  assert.equal(model.owner, "stability-ai");
  assert.equal(model.name, "stable-diffusion");
  assert.equal(model.visibility, "public");
  assert.equal(typeof model.run_count, "number");
  assert.equal(model.latest_version?.id, SERVED_VERSION);
  const schemas = schemasOf(model.latest_version);
  const input = schemas["Input"] as { properties: Record<string, Record<string, unknown>> };
  assert.deepEqual(Object.keys(input.properties), [
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_outputs",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "seed",
  ]);
  assert.deepEqual(input.properties["width"]?.["allOf"], [{ $ref: "#/components/schemas/width" }]);
  assert.equal(input.properties["num_inference_steps"]?.["default"], 50);
  assert.deepEqual(schemas["scheduler"]?.["enum"], [
    "DDIM",
    "K_EULER",
    "DPMSolverMultistep",
    "K_EULER_ANCESTRAL",
    "PNDM",
    "KLMS",
  ]);
  assert.deepEqual(schemas["Output"], { type: "array", title: "Output", items: { type: "string", format: "uri" } });
  assert.ok(schemas["PredictionRequest"] && schemas["PredictionResponse"] && schemas["Status"]);

  // The schema served is the schema enforced: each published width passes, anything else is 422.
  const widths = schemas["width"]?.["enum"] as number[];
  for (const width of widths) {
    assert.deepEqual(
      (await api(server, "POST", "/v1/predictions", { version: VERSION, input: { width: width + 1 } })).json[
        "invalid_fields"
      ],
      [
        {
          type: "enum",
          field: "input.width",
          description: `width must be one of the following: ${widths.join(", ")}`,
        },
      ],
    );
  }
});

test("versions.list and versions.get; an unknown version or model is 404", async () => {
  const versions = await replicate.models.versions.list("stability-ai", "stable-diffusion");
  assert.deepEqual(
    versions.results.map((v) => v.id),
    [SERVED_VERSION],
  );
  // Replicate's published id keeps naming the model, whatever weights serve it.
  for (const id of [SERVED_VERSION, VERSION]) {
    assert.equal((await replicate.models.versions.get("stability-ai", "stable-diffusion", id)).id, SERVED_VERSION);
  }
  const version = await replicate.models.versions.get("stability-ai", "stable-diffusion", SERVED_VERSION);
  assert.equal(typeof version.cog_version, "string");
  assert.match(version.created_at, /^\d{4}-\d\d-\d\dT/);
  assert.ok((version.openapi_schema as { openapi: string }).openapi.startsWith("3."));
  for (const route of [
    `/v1/models/${MODEL}/versions/${"0".repeat(64)}`,
    "/v1/models/nobody/nothing",
    "/v1/models/nobody/nothing/versions",
  ]) {
    assert.equal((await api(server, "GET", route)).status, 404, route);
  }
});

test("run_count counts the model's predictions", async () => {
  const before = (await replicate.models.get("stability-ai", "stable-diffusion")).run_count;
  await replicate.run(MODEL, { input: smallInput() });
  assert.equal((await replicate.models.get("stability-ai", "stable-diffusion")).run_count, before + 1);
});

test("models.list, accounts.current and hardware.list", async () => {
  const models = await replicate.models.list();
  assert.deepEqual(
    models.results.map((m) => `${m.owner}/${m.name}`),
    [MODEL, `${MODEL}-img2img`, `${MODEL}-inpainting`],
  );
  const account = await replicate.accounts.current();
  assert.equal(account.type, "user");
  assert.equal(typeof account.username, "string");
  const hardware = await replicate.hardware.list();
  assert.deepEqual(hardware, [{ name: "CPU", sku: "cpu" }]);
  assert.equal((await api(server, "GET", "/v1/account", undefined, {})).status, 401);
});

test("GET /openapi.json describes the server, with the model's Input schema for create", async () => {
  const res = await fetch(`${server.url}/openapi.json`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as {
    openapi: string;
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { $ref: string } }> } }>>;
    components: { schemas: Record<string, Record<string, unknown>> };
  };
  assert.match(doc.openapi, /^3\.1/);
  for (const path of [
    "/v1/predictions",
    "/v1/predictions/{prediction_id}",
    "/v1/predictions/{prediction_id}/cancel",
    "/v1/models/{model_owner}/{model_name}/predictions",
    "/v1/streams/{stream_key}",
  ]) {
    assert.ok(doc.paths[path], path);
  }
  const ref = doc.paths["/v1/predictions"]?.["post"]?.requestBody?.content["application/json"]?.schema.$ref ?? "";
  const body = doc.components.schemas[ref.replace("#/components/schemas/", "")] as {
    properties: Record<string, { anyOf?: unknown[] }>;
  };
  // The served model's components are named after it, and its own $refs point at its own enums.
  const prefix = "stability-ai.stable-diffusion.";
  // img2img and inpainting are served beside it, each with its own Input.
  assert.deepEqual(body.properties["input"]?.anyOf, [
    { $ref: `#/components/schemas/${prefix}Input` },
    { $ref: "#/components/schemas/stability-ai.stable-diffusion-img2img.Input" },
    { $ref: "#/components/schemas/stability-ai.stable-diffusion-inpainting.Input" },
  ]);
  const model = await replicate.models.get("stability-ai", "stable-diffusion");
  const published = schemasOf(model.latest_version);
  assert.deepEqual(
    doc.components.schemas[`${prefix}Input`],
    JSON.parse(
      JSON.stringify(published["Input"]).replaceAll("#/components/schemas/", `#/components/schemas/${prefix}`),
    ),
  );
  assert.deepEqual(doc.components.schemas[`${prefix}width`], published["width"]);
  assert.ok(doc.components.schemas[`${prefix}Output`]);
});
