/**
 * `sdserve generate --lora` on an SDXL folder: a real process on tiny-sdxl with a random LoRA in
 * kohya's SDXL layout (SGM UNet names, lora_te1_/lora_te2_), against the same command on a copy
 * of the folder with the LoRA fused into its weights.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { decode } from "fast-png";
import { REPO_ROOT } from "../helpers/fixtures.js";
import { fusedSdxlCopy, randomSdxlLora, TINY_SDXL, writeLora } from "../helpers/sdxl-lora.js";

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-cli-sdxl-lora-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sdserve(...args: string[]) {
  return run(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, SDSERVE_CACHE: path.join(tmp, "cache"), SDSERVE_OPTIMIZED_CACHE: "off" },
  });
}

test("--lora on an SDXL folder equals the LoRA fused into its weights; scale 0 is the base", async () => {
  const layers = await randomSdxlLora(9);
  // rank 4, alpha 2: scale 1.2 applies 0.6 · up · down.
  const lora = await writeLora(path.join(tmp, "sdxl-kohya.safetensors"), layers, "kohya-sgm", 2);
  const fused = await fusedSdxlCopy([{ layers, s: 0.6 }]);
  try {
    const common = ["a red cube", "--steps", "2", "--seed", "7", "--width", "64", "--height", "64", "--threads", "1"];
    const out = (name: string) => path.join(tmp, name);
    await sdserve("generate", ...common, "--model", TINY_SDXL, "--out", out("lora.png"), "--lora", `${lora}:1.2`);
    await sdserve("generate", ...common, "--model", fused.dir, "--out", out("fused.png"));
    await sdserve("generate", ...common, "--model", TINY_SDXL, "--out", out("zero.png"), "--lora", `${lora}:0`);
    await sdserve("generate", ...common, "--model", TINY_SDXL, "--out", out("plain.png"));
    const pixels = (f: string) => decode(readFileSync(out(f))).data as Uint8Array;
    // 8-bit pictures of runs equal to ~1e-6: a value on a rounding boundary may land one level apart.
    const a = pixels("lora.png");
    const b = pixels("fused.png");
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
    assert.ok(worst <= 1, `LoRA vs fused: ${worst} levels apart`);
    assert.ok(Buffer.from(pixels("zero.png")).equals(Buffer.from(pixels("plain.png"))));
    assert.ok(!Buffer.from(a).equals(Buffer.from(pixels("plain.png"))), "the LoRA changes the picture");
  } finally {
    fused.remove();
  }
});
