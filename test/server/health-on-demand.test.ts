/** /health-check with a model set up on demand: ON_DEMAND until asked for, and it does not hold the status at STARTING. */
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import type { ModelAdapter, ModelState } from "../../src/server/models/model.js";
import { healthRoutes } from "../../src/server/routes/health.js";

function model(name: string, state: ModelState, onDemand: { started: boolean } | undefined): ModelAdapter {
  return {
    model: { owner: "o", name },
    state,
    setupError: undefined,
    ...(onDemand ? { setupOnDemand: true, setupStarted: onDemand.started } : {}),
  } as unknown as ModelAdapter;
}

test("an on-demand model nobody asked for is ON_DEMAND; once its setup starts it counts like any other", async () => {
  for (const [started, status, own] of [
    [false, "READY", { status: "ON_DEMAND" }],
    [true, "STARTING", { status: "STARTING" }],
  ] as const) {
    const app = Fastify();
    await app.register(healthRoutes, {
      models: [model("main", "READY", undefined), model("inpainting", "STARTING", { started })],
    });
    const body = (await app.inject({ method: "GET", url: "/health-check" })).json();
    assert.equal(body.status, status);
    assert.deepEqual(body.setup["o/inpainting"], own);
    await app.close();
  }
});
