/**
 * Where SDXL meets the AUTOMATIC1111 prompt path: one CLIP graph serves both (SDXL's projected
 * pooled output beside clip skip's deeper states), and what sdxl.ts does not build (A1111 syntax,
 * clip skip across two encoders) is refused clearly, at load and per request, never run as
 * SD's single-encoder path.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelError, RequestError } from "../../src/engine/errors.js";
import { TextEncoder } from "../../src/engine/networks.js";
import { loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { GOLDEN_FAMILY, maxAbsDiff } from "../helpers/fixtures.js";

const BASE = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");

describe("the projected text encoder with clip skip outputs (tiny-sdxl text_encoder_2)", () => {
  let enc: TextEncoder;
  before(async () => {
    const folder = await openModelFolder(BASE);
    assert.ok(folder.textEncoder2);
    enc = await TextEncoder.load(folder.textEncoder2, { threads: 1 });
  });
  after(() => enc.session.release());

  test("has text_embeds and the deeper hidden states side by side", async () => {
    assert.ok(enc.projectionDim !== null);
    const names = enc.session.outputNames;
    for (const n of ["last_hidden_state", "penultimate_hidden_state", "text_embeds", "hidden_state_minus_3"]) {
      assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
    }
    const ids = [[49406, 320, 1125, 49407, 49407]];
    const out = await enc.outputs(ids, ["text_embeds", "penultimate_hidden_state"]);
    assert.deepEqual(out["text_embeds"]?.shape, [1, enc.projectionDim]);
    // Clip skip 2 is the penultimate state through the final norm: a different tensor of the same shape.
    const skipped = await enc.encode(ids, {}, 2);
    const raw = out["penultimate_hidden_state"];
    assert.ok(raw);
    assert.deepEqual(skipped.shape, raw.shape);
    assert.ok(maxAbsDiff(skipped.data, raw.data) > 1e-3);
    const last = await enc.encode(ids);
    assert.deepEqual(last.shape, raw.shape);
  });
});

describe("A1111 syntax and clip skip on SDXL are refused", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(BASE, { threads: 1 });
  });
  after(() => pipe.release());

  const refusedRequest = (extra: Record<string, unknown>, field: string) =>
    assert.rejects(
      () => pipe.generate({ prompt: "a (red:1.3) cube", numInferenceSteps: 1, width: 64, height: 64, ...extra }),
      (err: unknown) => {
        assert.ok(err instanceof RequestError, String(err));
        assert.equal(err.field, field);
        assert.match(err.message, /not supported on SDXL/);
        return true;
      },
    );

  test("a request asking for the a1111 syntax", () => refusedRequest({ promptSyntax: "a1111" }, "promptSyntax"));
  test("a request asking for clip skip", () => refusedRequest({ clipSkip: 2 }, "clipSkip"));
  test("encodePrompts likewise", () =>
    assert.rejects(() => pipe.encodePrompts(["x"], undefined, { promptSyntax: "a1111" }), RequestError));
  test("the diffusers syntax and clip skip 1 still run", async () => {
    const r = await pipe.generate({
      prompt: "a cube",
      numInferenceSteps: 1,
      width: 64,
      height: 64,
      seed: 1,
      promptSyntax: "diffusers",
      clipSkip: 1,
    });
    assert.equal(r.images.length, 1);
  });

  for (const [name, opts] of [
    ["the a1111 syntax", { promptSyntax: "a1111" as const }],
    ["clip skip", { clipSkip: 2 }],
  ] as const) {
    test(`a model loaded with ${name} is a ModelError`, () =>
      assert.rejects(
        () => loadPipeline(BASE, { threads: 1, ...opts }),
        (err: unknown) => err instanceof ModelError && /not supported on SDXL/.test(err.message),
      ));
  }
});
