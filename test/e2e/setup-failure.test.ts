/**
 * When the weights cannot be loaded the server still starts: the health check says
 * SETUP_FAILED with the reason, and predictions fail with a clear error instead of waiting
 * forever. And the server-side maximum run time cancels what runs too long.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { api, authHeaders, eventually, slowInput, smallInput, startSdserve, VERSION } from "./server.js";

test("a model folder that does not exist: SETUP_FAILED, and predictions fail saying why", async () => {
  const server = await startSdserve({ args: ["--model", "./no-such-model-folder"] });
  try {
    const health = await eventually(async () => {
      const r = await api(server, "GET", "/health-check", undefined, {});
      return r.json["status"] === "SETUP_FAILED" ? r.json : undefined;
    }, "SETUP_FAILED");
    assert.match(JSON.stringify(health["setup"]), /no such model folder/);
    const r = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      {
        ...authHeaders(),
        Prefer: "wait",
      },
    );
    assert.equal(r.status, 201);
    assert.equal(r.json["status"], "failed");
    assert.match(r.json["error"] as string, /^The model could not be loaded: .*no such model folder/);
  } finally {
    await server.stop();
  }
});

test("SDSERVE_MAX_RUN_TIME cancels a prediction that outlives it", async () => {
  const server = await startSdserve({ env: { SDSERVE_MAX_RUN_TIME: "3s" } });
  try {
    const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput() });
    assert.ok(r.json["deadline"]);
    const done = await eventually(async () => {
      const g = await api(server, "GET", `/v1/predictions/${r.json["id"]}`);
      return g.json["status"] === "canceled" ? g.json : undefined;
    }, "the deadline");
    assert.match(done["logs"] as string, /reached its deadline/);
    // A short one finishes well inside the limit.
    const ok = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      {
        ...authHeaders(),
        Prefer: "wait",
      },
    );
    assert.equal(ok.json["status"], "succeeded");
  } finally {
    await server.stop();
  }
});
