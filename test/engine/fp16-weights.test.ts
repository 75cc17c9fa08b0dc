/**
 * fp16 / bf16 weight files: the graph casts them to float32 on load, so a UNet from
 * `*.fp16.safetensors` must compute exactly what float32 weights holding the same rounded
 * values compute.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { UNet } from "../../src/engine/networks.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { halfToFloat, readSafetensors, readTensor } from "../../src/engine/weights/safetensors.js";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { maxAbsDiff, refTensor } from "../helpers/fixtures.js";
import { copyModel } from "../helpers/model-copy.js";

const copies: { remove(): void }[] = [];
after(() => {
  for (const c of copies) c.remove();
});

function toHalf(x: number): number {
  // Round-to-nearest-even float32 → float16 via a lookup-free bit method.
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0] as number;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
  }
  const half = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && half & 1) ? 1 : 0));
}

test("a UNet from an fp16 variant file equals float32 weights of the same values", async () => {
  const fp16 = copyModel("tiny-sd2v");
  const rounded = copyModel("tiny-sd2v");
  copies.push(fp16, rounded);
  const src = path.join(fp16.dir, "unet", "diffusion_pytorch_model.safetensors");
  const st = await readSafetensors(src);
  const halves = [];
  const floats = [];
  for (const t of st.tensors.values()) {
    const data = await readTensor(t);
    const h = Uint16Array.from(data, toHalf);
    halves.push({ name: t.name, dtype: "F16" as const, shape: t.shape, data: h });
    floats.push({ name: t.name, dtype: "F32" as const, shape: t.shape, data: Float32Array.from(h, halfToFloat) });
  }
  await writeSafetensors(path.join(fp16.dir, "unet", "diffusion_pytorch_model.fp16.safetensors"), halves);
  await writeSafetensors(path.join(rounded.dir, "unet", "diffusion_pytorch_model.safetensors"), floats);
  copyFileSync(path.join(rounded.dir, "unet", "config.json"), path.join(fp16.dir, "unet", "config.json"));

  const fp16Folder = await openModelFolder(fp16.dir, { variant: "fp16" });
  assert.equal(fp16Folder.unet.variant, "fp16");
  const a = await UNet.load(fp16Folder.unet, { threads: 1 });
  const b = await UNet.load((await openModelFolder(rounded.dir)).unet, { threads: 1 });
  const sample = refTensor("tiny-sd2v", "unet_in_sample");
  const context = refTensor("tiny-sd2v", "unet_in_encoder_hidden_states");
  const outA = await a.run(sample, 500, context);
  const outB = await b.run(sample, 500, context);
  assert.ok(maxAbsDiff(outA.data, outB.data) <= 1e-6, `fp16 path differs by ${maxAbsDiff(outA.data, outB.data)}`);
  // And it stays close to the float32 reference (the weights moved by fp16 rounding only).
  const ref = refTensor("tiny-sd2v", "unet_out_t500");
  assert.ok(maxAbsDiff(outA.data, ref.data) <= 1e-2);
  // Through the optimised-model cache (saved as float32 once cast): the same numbers.
  const cache = mkdtempSync(path.join(os.tmpdir(), "sdserve-fp16-cache-"));
  copies.push({ remove: () => rmSync(cache, { recursive: true, force: true }) });
  const lines: string[] = [];
  const c = await UNet.load(fp16Folder.unet, {
    threads: 1,
    optimizedCache: cache,
    optimizedCacheMinBytes: 0,
    log: (l) => lines.push(l),
  });
  assert.match(lines.join("\n"), /optimised model saved/);
  const outC = await c.run(sample, 500, context);
  assert.ok(
    maxAbsDiff(outC.data, outA.data) <= 1e-6,
    `cached fp16 path differs by ${maxAbsDiff(outC.data, outA.data)}`,
  );
  await Promise.all([a.session.release(), b.session.release(), c.session.release()]);
  rmSync(src);
  const onlyFp16 = await openModelFolder(fp16.dir);
  assert.equal(onlyFp16.unet.variant, "fp16", "fp16 files are used when they are the only ones");
});
