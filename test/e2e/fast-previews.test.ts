/**
 * Live previews drawn by the tiny autoencoder (--preview-vae): the stream's preview events carry
 * TAESD's decode of the step's latents, made in the engine process, instead of the linear latent
 * map. Checked against the engine's own TAESD preview of the same latents, run here in-process.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  decodeImage,
  encodePng,
  ensureTinyRandomModel,
  latentsToPreviewImages,
  loadPipeline,
  type StepEvent,
} from "../../src/engine/index.js";
import { GOLDEN_FAMILY } from "../helpers/fixtures.js";
import { api, readSseResponse, type Sdserve, smallInput, startSdserve, VERSION } from "./server.js";

const TAESD = path.join(GOLDEN_FAMILY, "taesd/tiny-taesd");

let server: Sdserve;
const scratch = mkdtempSync(path.join(os.tmpdir(), "sdserve-fast-previews-"));

before(async () => {
  server = await startSdserve({ args: ["--preview-vae", TAESD, "--preview-size", "128"] });
});
after(async () => {
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

interface PreviewData {
  step: number;
  total: number;
  images: string[];
}

function pngOf(dataUri: string): Buffer {
  assert.match(dataUri, /^data:image\/png;base64,/);
  return Buffer.from(dataUri.slice(dataUri.indexOf(",") + 1), "base64");
}

test("?preview=1 sends TAESD's picture of the step's latents, as the engine draws it", {
  timeout: 180_000,
}, async () => {
  // 256×128 with previews at most 128 px a side: TAESD decodes latents averaged over 2×2 blocks.
  const input = smallInput({ width: 256, height: 128, num_inference_steps: 120, seed: 31 });
  const created = await api(server, "POST", "/v1/predictions", { version: VERSION, input });
  assert.equal(created.status, 201);
  const stream = (created.json["urls"] as Record<string, string>)["stream"] as string;
  const { events } = await readSseResponse(`${stream}?preview=1`);
  const previews = events.filter((e) => e.event === "preview").map((e) => JSON.parse(e.data) as PreviewData);
  assert.ok(previews.length >= 1, `${previews.length} previews`);
  assert.equal(events[events.length - 1]?.event, "done");

  // The same generation in-process: the latents after each step, and the engine's previews of them.
  const model = await ensureTinyRandomModel(scratch);
  const pipeline = await loadPipeline(model, { threads: 1, previewVae: TAESD, previewMaxSize: 128 });
  const wanted = new Set(previews.map((p) => p.step));
  const expected = new Map<number, { taesd: Uint8Array; linear: Uint8Array }>();
  try {
    await pipeline.generate(
      {
        prompt: input["prompt"] as string,
        width: 256,
        height: 128,
        numInferenceSteps: 120,
        guidanceScale: 7.5,
        scheduler: "DPMSolverMultistep",
        seed: 31,
      },
      {
        onStep: async (event: StepEvent) => {
          if (!wanted.has(event.step)) return;
          const [taesd] = (await pipeline.preview(event)) ?? [];
          const [linear] = latentsToPreviewImages(event.latents);
          assert.ok(taesd && linear);
          expected.set(event.step, { taesd: encodePng(taesd), linear: encodePng(linear) });
        },
      },
    );
  } finally {
    await pipeline.release();
  }

  for (const preview of previews) {
    assert.equal(preview.total, 120);
    assert.equal(preview.images.length, 1);
    const png = pngOf(preview.images[0] as string);
    const image = await decodeImage(png);
    // TAESD's full resolution of 2×2-averaged latents: 128×64 (the linear map is 32×16).
    assert.deepEqual([image.width, image.height], [128, 64]);
    const want = expected.get(preview.step);
    assert.ok(want, `step ${preview.step} previewed`);
    assert.notDeepEqual(png, Buffer.from(want.linear));
    const mine = await decodeImage(want.taesd);
    let maxDiff = 0;
    for (let i = 0; i < mine.data.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs((mine.data[i] as number) - (image.data[i] as number)));
    }
    // The same networks on the same latents, one thread each: 8-bit pixels agree within 1 (measured: identical).
    assert.ok(maxDiff <= 1, `step ${preview.step}: pixels differ by up to ${maxDiff}`);
  }
});

test("no preview of the last step: the output follows at once (a one-step Turbo run sends none)", async () => {
  const input = smallInput({ num_inference_steps: 1, seed: 2 });
  const created = await api(server, "POST", "/v1/predictions", { version: VERSION, input });
  const stream = (created.json["urls"] as Record<string, string>)["stream"] as string;
  const { events } = await readSseResponse(`${stream}?preview=1`);
  assert.equal(events[events.length - 1]?.event, "done");
  assert.equal(events.filter((e) => e.event === "output").length, 1);
  assert.deepEqual(
    events.filter((e) => e.event === "preview"),
    [],
  );
});
