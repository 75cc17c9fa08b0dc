/** `sdserve generate` end to end: a real process on the tiny-random model. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { decode, encode } from "fast-png";
import { modelDir, REPO_ROOT, SHARED } from "../helpers/fixtures.js";
import { fuseIntoUnet, lcmLoraLayers, writeUnetLora } from "../helpers/lcm-lora.js";
import { copyModel } from "../helpers/model-copy.js";

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sdserve(...args: string[]) {
  return sdserveWith({}, ...args);
}

function sdserveWith(env: Record<string, string>, ...args: string[]) {
  return run(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, SDSERVE_CACHE: path.join(tmp, "cache"), ...env },
  });
}

test("generate writes PNGs with A1111 parameters and prints the seed and paths", async () => {
  const out = path.join(tmp, "out");
  const { stdout, stderr } = await sdserve(
    "generate",
    "a lighthouse at dusk",
    "--model",
    "tiny-random",
    "--steps",
    "3",
    "--width",
    "64",
    "--height",
    "48",
    "--seed",
    "42",
    "--num-outputs",
    "2",
    "--scheduler",
    "Euler a",
    "--negative-prompt",
    "fog",
    "--out",
    out,
    "--threads",
    "1",
  );
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], "seed: 42");
  assert.deepEqual(lines.slice(1), [path.join(out, "sdserve-42-1.png"), path.join(out, "sdserve-42-2.png")]);
  assert.match(stderr, /step 3\/3/);
  const png = decode(readFileSync(path.join(out, "sdserve-42-1.png")));
  assert.equal(png.width, 64);
  assert.equal(png.height, 48);
  assert.equal(png.channels, 3);
  assert.equal(
    png.text["parameters"],
    "a lighthouse at dusk\nNegative prompt: fog\nSteps: 3, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 64x48, Model: tiny-random",
  );
});

test("the same seed gives the same image; another seed another", async () => {
  const args = ["generate", "same", "--model", "tiny-random", "--steps", "2", "--width", "32", "--height", "32"];
  await sdserve(...args, "--seed", "5", "--out", path.join(tmp, "a.png"));
  await sdserve(...args, "--seed", "5", "--out", path.join(tmp, "b.png"));
  await sdserve(...args, "--seed", "6", "--out", path.join(tmp, "c.png"));
  const pixels = (f: string) => Buffer.from(decode(readFileSync(path.join(tmp, f))).data as Uint8Array);
  assert.ok(pixels("a.png").equals(pixels("b.png")));
  assert.ok(!pixels("a.png").equals(pixels("c.png")));
});

test("--vae decodes with the tiny autoencoder: the size follows its scale factor of 8", async () => {
  const taesd = path.join(SHARED, "fixtures/golden-family/taesd/tiny-taesd");
  const file = path.join(tmp, "taesd.png");
  const { stdout } = await sdserve(
    ..."generate a lighthouse --model tiny-random --scheduler LCM --steps 2 --guidance 1 --width 64 --height 32 --seed 3".split(
      " ",
    ),
    "--vae",
    taesd,
    "--out",
    file,
  );
  assert.match(stdout, /seed: 3/);
  const png = decode(readFileSync(file));
  assert.deepEqual([png.width, png.height], [64, 32]);
  assert.match(png.text["parameters"] as string, /Steps: 2, Sampler: LCM, CFG scale: 1,/);
  await assert.rejects(
    sdserve("generate", "x", "--model", "tiny-random", "--vae", path.join(tmp, "none")),
    /folder not found/,
  );
});

for (const [what, args, message] of [
  ["a size that is not a multiple of 8", ["--width", "65"], /width must be a positive multiple of 8/],
  ["an unknown scheduler", ["--scheduler", "Nope"], /unknown scheduler "Nope"; accepted: DDIM/],
  ["a missing model", ["--model", "no-such-folder"], /no such model folder/],
  ["a bad seed", ["--seed", "1.5"], /--seed must be a non-negative integer/],
  ["an unknown option", ["--colour", "red"], /Unknown option '--colour'/],
] as const) {
  test(`${what} is one clear line and a non-zero exit`, async () => {
    const argv = ["generate", "x", "--model", "tiny-random", "--steps", "1", ...args];
    await assert.rejects(sdserve(...argv), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      const last = err.stderr.trim().split("\n").at(-1) as string;
      assert.match(last, message);
      assert.ok(last.startsWith("sdserve: "));
      return true;
    });
  });
}

test("--help lists the options", async () => {
  const { stdout } = await sdserve("generate", "--help");
  for (const opt of [
    "--model",
    "--negative-prompt",
    "--steps",
    "--guidance",
    "--scheduler",
    "--seed",
    "--num-outputs",
    "--out",
    "--threads",
    "--image",
    "--mask",
    "--strength",
    "--vae",
  ]) {
    assert.ok(stdout.includes(opt), opt);
  }
  assert.equal(readdirSync(REPO_ROOT).filter((f) => f.endsWith(".png")).length, 0);
});

test("--image and --mask: img2img and inpainting write PNGs at the picture's size, with the strength noted", async () => {
  const picture = path.join(tmp, "picture.png");
  const data = new Uint8Array(72 * 40 * 3).map((_, i) => (i * 29) % 256);
  writeFileSync(picture, encode({ width: 72, height: 40, data, channels: 3 }));
  const maskFile = path.join(tmp, "mask.png");
  const mask = new Uint8Array(36 * 20).map((_, i) => (i % 36 < 18 ? 255 : 0));
  writeFileSync(maskFile, encode({ width: 36, height: 20, data: mask, channels: 1 }));
  const common = ["--model", "tiny-random", "--steps", "4", "--seed", "3", "--threads", "1"];

  const img2img = path.join(tmp, "img2img.png");
  const a = await sdserve("generate", "a boat", ...common, "--image", picture, "--strength", "0.5", "--out", img2img);
  assert.match(a.stderr, /step 2\/2/);
  const out = decode(readFileSync(img2img));
  // tiny-random's VAE factor is 8: 72×40 stays; its own size is used without --width/--height.
  assert.deepEqual([out.width, out.height], [72, 40]);
  assert.match(out.text["parameters"] as string, /Size: 72x40, Model: tiny-random, Denoising strength: 0\.5$/);

  const inpaint = path.join(tmp, "inpaint.png");
  await sdserve(
    "generate",
    "a boat",
    ...common,
    "--image",
    picture,
    "--mask",
    maskFile,
    "--width",
    "48",
    "--height",
    "32",
    "--out",
    inpaint,
  );
  const out2 = decode(readFileSync(inpaint));
  assert.deepEqual([out2.width, out2.height], [48, 32]);
  assert.match(out2.text["parameters"] as string, /Denoising strength: 1$/);
});

test("--image URL: fetched under the server's rules (a local server needs SDSERVE_ALLOW_PRIVATE_URLS=true)", async () => {
  const picture = encode({ width: 64, height: 48, data: new Uint8Array(64 * 48 * 3).fill(99), channels: 3 });
  const site = http.createServer((_req, res) => res.writeHead(200, { "Content-Type": "image/png" }).end(picture));
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(site.address() as AddressInfo).port}/p.png`;
  try {
    const common = ["generate", "a boat", "--model", "tiny-random", "--steps", "2", "--threads", "1", "--image", url];
    const file = path.join(tmp, "from-url.png");
    await sdserveWith({ SDSERVE_ALLOW_PRIVATE_URLS: "true" }, ...common, "--out", file);
    const out = decode(readFileSync(file));
    assert.deepEqual([out.width, out.height], [64, 48]);
    await assert.rejects(sdserve(...common, "--out", file), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /--image: image: 127\.0\.0\.1 is a loopback, private .*SDSERVE_ALLOW_PRIVATE_URLS=true/);
      return true;
    });
  } finally {
    site.close();
  }
});

for (const [what, args, message] of [
  ["a missing picture", ["--image", "no-such.png"], /--image no-such\.png: no such file/],
  [
    "a picture that is not an image",
    ["--image", "package.json"],
    /--image package\.json: image is not a PNG, JPEG or WebP image/,
  ],
  ["a mask without a picture", ["--mask", "package.json"], /--mask needs --image/],
  ["a strength that is not a number", ["--image", "package.json", "--strength", "lots"], /--strength must be a number/],
] as const) {
  test(`${what} is one clear line and a non-zero exit`, async () => {
    const argv = ["generate", "x", "--model", "tiny-random", "--steps", "1", ...args];
    await assert.rejects(sdserve(...argv), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      const last = err.stderr.trim().split("\n").at(-1) as string;
      assert.match(last, message);
      return true;
    });
  });
}

test("generate runs an SDXL folder (detected from model_index.json) with its own defaults", async () => {
  const model = path.join(SHARED, "fixtures/golden-family/sdxl/tiny-sdxl");
  const file = path.join(tmp, "sdxl.png");
  const { stdout } = await sdserve(
    ..."generate a lion at night --steps 2 --width 96 --height 64 --seed 7 --threads 1".split(" "),
    "--model",
    model,
    "--out",
    file,
  );
  assert.deepEqual(stdout.trim().split("\n"), ["seed: 7", file]);
  const png = decode(readFileSync(file));
  assert.equal(png.width, 96);
  assert.equal(png.height, 64);
  assert.match(
    String(png.text["parameters"]),
    /Steps: 2, Sampler: EulerDiscreteScheduler, CFG scale: 5, Seed: 7, Size: 96x64/,
  );
});

test("--lora with an LCM-LoRA, --scheduler LCM --steps 4 --guidance 1: the image of the LoRA fused by hand", async () => {
  const model = modelDir("tiny-sd1");
  const lora = path.join(tmp, "lcm-lora-sdv1-5.safetensors");
  const written = await writeUnetLora(model, lora, { layers: await lcmLoraLayers(model), rank: 4, alpha: 8, scale: 1 });
  const fused = copyModel("tiny-sd1");
  after(() => fused.remove());
  await fuseIntoUnet(fused.dir, written.deltas);
  const args = ["--scheduler", "LCM", "--steps", "4", "--guidance", "1", "--seed", "7", "--threads", "1"];
  const withLora = path.join(tmp, "lcm-lora-out");
  const byHand = path.join(tmp, "lcm-fused-out");
  const a = await sdserve("generate", "a lighthouse", "--model", model, "--lora", lora, ...args, "--out", withLora);
  const b = await sdserve("generate", "a lighthouse", "--model", fused.dir, ...args, "--out", byHand);
  assert.match(a.stderr, /step 4\/4/);
  const png = (stdout: string) => decode(readFileSync(stdout.trim().split("\n")[1] as string)).data;
  const [x, y] = [png(a.stdout), png(b.stdout)];
  assert.equal(x.length, y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs((x[i] as number) - (y[i] as number)));
  // 8-bit rounding of images equal to 1e-4 (test/engine/lora.test.ts) may differ by one level.
  assert.ok(worst <= 1, `PNG values differ by up to ${worst}`);
});
