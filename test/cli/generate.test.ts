/** `sdserve generate` end to end: a real process on the tiny-random model. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { decode } from "fast-png";
import { REPO_ROOT, SHARED } from "../helpers/fixtures.js";

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function sdserve(...args: string[]) {
  return run(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, SDSERVE_CACHE: path.join(tmp, "cache") },
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
    "--vae",
  ]) {
    assert.ok(stdout.includes(opt), opt);
  }
  assert.equal(readdirSync(REPO_ROOT).filter((f) => f.endsWith(".png")).length, 0);
});
