/**
 * What generate() promises besides the numbers: random seeds reported, progress per step,
 * prompt validation, cancellation between steps, and ONNX-export folders.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { RequestError } from "../../src/engine/errors.js";
import { type GenerateRequest, loadPipeline, type Pipeline } from "../../src/engine/pipeline.js";
import { FIXTURE_MODELS, maxAbsDiff, modelDir, refTensor } from "../helpers/fixtures.js";
import { exportOnnxFolder } from "../helpers/onnx-export.js";

describe("generate behaviour (tiny-sd2v)", () => {
  let pipe: Pipeline;
  before(async () => {
    pipe = await loadPipeline(modelDir("tiny-sd2v"), { threads: 1 });
  });
  after(() => pipe.release());
  const base = { prompt: "a cat", width: 96, height: 64, numInferenceSteps: 3 };

  test("without a seed, a random one is chosen and reported, and it reproduces the image", async () => {
    const a = await pipe.generate(base);
    const b = await pipe.generate(base);
    assert.notEqual(a.seed, b.seed);
    const again = await pipe.generate({ ...base, seed: a.seed });
    assert.deepEqual(again.images[0]?.data, a.images[0]?.data);
    assert.equal(a.parameters.seed, a.seed);
  });

  test("onStep reports every step with its timestep", async () => {
    const events: [number, number][] = [];
    await pipe.generate(
      { ...base, seed: 1, scheduler: "DDIM" },
      { onStep: (e) => void events.push([e.step, e.total]) },
    );
    assert.deepEqual(events, [
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
  });

  test("an abort signal stops between steps with an AbortError", async () => {
    const controller = new AbortController();
    let steps = 0;
    await assert.rejects(
      pipe.generate(
        { ...base, numInferenceSteps: 20, seed: 2 },
        {
          signal: controller.signal,
          onStep: ({ step }) => {
            steps = step;
            if (step === 2) controller.abort();
          },
        },
      ),
      (err: Error) => err.name === "AbortError",
    );
    assert.equal(steps, 2);
    // An already-aborted signal does no work at all.
    await assert.rejects(pipe.generate(base, { signal: AbortSignal.abort() }), { name: "AbortError" });
    // The pipeline is still usable afterwards.
    assert.equal((await pipe.generate({ ...base, seed: 3 })).images.length, 1);
  });

  for (const [what, req, field] of [
    ["width not a multiple of 8", { width: 100 }, "width"],
    ["zero steps", { numInferenceSteps: 0 }, "numInferenceSteps"],
    ["negative guidance", { guidanceScale: -1 }, "guidanceScale"],
    ["an unknown scheduler", { scheduler: "Euler b" }, "scheduler"],
    ["Karras sigmas on DDIM", { scheduler: "DDIM", useKarrasSigmas: true }, "scheduler"],
    ["no outputs", { numOutputs: 0 }, "numOutputs"],
    ["a fractional seed", { seed: 1.5 }, "seed"],
    ["latents of the wrong shape", { latents: { data: new Float32Array(4), shape: [1, 4, 1, 1] } }, "latents"],
  ] as [string, Partial<GenerateRequest>, string][]) {
    test(`${what} is a RequestError naming ${field}`, async () => {
      await assert.rejects(pipe.generate({ ...base, ...req }), (err: unknown) => {
        assert.ok(err instanceof RequestError, String(err));
        assert.equal(err.field, field);
        return true;
      });
    });
  }
});

describe("a folder of ONNX exports", () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-onnx-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const model of FIXTURE_MODELS) {
    test(`${model}: networks saved as model.onnx files load and give the same results`, async () => {
      const out = path.join(tmp, model);
      await exportOnnxFolder(modelDir(model), out);
      for (const dir of ["text_encoder", "unet", "vae_decoder"])
        assert.ok(existsSync(path.join(out, dir, "model.onnx")));
      assert.ok(!existsSync(path.join(out, "unet", "diffusion_pytorch_model.safetensors")));
      const pipe = await loadPipeline(out, { threads: 1 });
      try {
        const sample = refTensor(model, "unet_in_sample");
        const context = refTensor(model, "unet_in_encoder_hidden_states");
        const got = await pipe.unet.run(sample, 999, context);
        assert.ok(maxAbsDiff(got.data, refTensor(model, "unet_out_t999").data) <= 2e-5);
        const decoded = await pipe.vae.decode(refTensor(model, "vae_in_latents"));
        assert.ok(maxAbsDiff(decoded.data, refTensor(model, "vae_decode_out").data) <= 5e-5);
        const r = await pipe.generate({ prompt: "a cat", width: 64, height: 64, numInferenceSteps: 2, seed: 4 });
        assert.equal(r.images.length, 1);
      } finally {
        await pipe.release();
      }
    });
  }
});
