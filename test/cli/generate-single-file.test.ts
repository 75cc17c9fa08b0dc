/**
 * `sdserve generate --model file.safetensors` and `--lora`: a real process on the golden
 * single-file checkpoint and LoRA files.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { decode } from "fast-png";
import { writeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { GOLDEN_FAMILY, modelDir, REPO_ROOT, SHARED } from "../helpers/fixtures.js";
import { LocalHub } from "../helpers/hub-server.js";
import { writeSdxlCheckpoint } from "../helpers/ldm-layout.js";

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-cli-single-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const CHECKPOINT = path.join(SHARED, "fixtures/golden-family/single_file/tiny-sd1.safetensors");

function sdserve(...args: string[]) {
  return sdserveWith({}, ...args);
}

function sdserveWith(env: Record<string, string>, ...args: string[]) {
  return run(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "src/cli/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, SDSERVE_CACHE: path.join(tmp, "cache"), SDSERVE_OPTIMIZED_CACHE: "off", ...env },
  });
}

test("generate runs a single-file checkpoint with --config", async () => {
  const out = path.join(tmp, "one.png");
  const { stdout } = await sdserve(
    "generate",
    "a red cube",
    "--model",
    CHECKPOINT,
    "--config",
    modelDir("tiny-sd1"),
    "--steps",
    "2",
    "--seed",
    "7",
    "--out",
    out,
    "--threads",
    "1",
  );
  assert.match(stdout, /seed: 7/);
  const png = decode(readFileSync(out));
  assert.equal(png.width, 64);
  assert.match(String(png.text["parameters"]), /Model: tiny-sd1\.safetensors/);
});

test("generate --model owner/name/file.safetensors downloads that one file from the hub and runs it", async () => {
  const hub = await LocalHub.start();
  try {
    hub.addRepo("someone/tiny-checkpoints", new Map([["v1/tiny-sd1.safetensors", readFileSync(CHECKPOINT)]]));
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(tmp, "hf"), HF_HOME: path.join(tmp, "hf-home") };
    const common = ["--config", modelDir("tiny-sd1"), "--steps", "2", "--seed", "7", "--threads", "1"];
    const fromHub = path.join(tmp, "hub.png");
    const local = path.join(tmp, "local.png");
    await sdserveWith(
      env,
      "generate",
      "a red cube",
      "--model",
      "someone/tiny-checkpoints/v1/tiny-sd1.safetensors",
      ...common,
      "--out",
      fromHub,
    );
    await sdserve("generate", "a red cube", "--model", CHECKPOINT, ...common, "--out", local);
    assert.deepEqual(hub.downloads(), ["v1/tiny-sd1.safetensors"]);
    assert.deepEqual(Buffer.from(decode(readFileSync(fromHub)).data), Buffer.from(decode(readFileSync(local)).data));
    const pickle = await sdserveWith(
      env,
      "generate",
      "x",
      "--model",
      "someone/tiny-checkpoints/v1/model.ckpt",
      ...common,
    ).catch((err: { stderr: string; code: number }) => err);
    assert.ok("code" in pickle && pickle.code !== 0);
    assert.match(String((pickle as { stderr: string }).stderr), /model\.ckpt: is a PyTorch pickle checkpoint/);
    assert.deepEqual(hub.downloads(), ["v1/tiny-sd1.safetensors"], "nothing more was downloaded");
  } finally {
    await hub.close();
  }
});

test("generate runs an SDXL single-file checkpoint with --config and an SDXL embedding from --embeddings-dir", async () => {
  const folder = path.join(GOLDEN_FAMILY, "sdxl", "tiny-sdxl");
  const file = path.join(tmp, "tiny-sdxl.safetensors");
  await writeSdxlCheckpoint(folder, file);
  const emb = path.join(tmp, "xl-emb");
  mkdirSync(emb);
  const vectors = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.05);
  await writeSafetensors(path.join(emb, "xlstyle.safetensors"), [
    { name: "clip_l", dtype: "F32", shape: [1, 16], data: vectors(16) },
    { name: "clip_g", dtype: "F32", shape: [1, 32], data: vectors(32) },
  ]);
  const base = ["--steps", "2", "--seed", "7", "--width", "64", "--height", "64", "--threads", "1"];
  const out = (name: string) => path.join(tmp, name);
  const { stdout } = await sdserve(
    "generate",
    "a lion",
    "--model",
    file,
    "--config",
    folder,
    ...base,
    "--out",
    out("xl-file.png"),
  );
  assert.match(stdout, /seed: 7/);
  await sdserve("generate", "a lion", "--model", folder, ...base, "--out", out("xl-folder.png"));
  const args = ["--model", file, "--config", folder, "--embeddings-dir", emb, ...base];
  await sdserve("generate", "a lion, xlstyle", ...args, "--out", out("xl-emb.png"));
  const png = (f: string) => decode(readFileSync(out(f)));
  const pixels = (f: string) => Buffer.from(png(f).data as Uint8Array);
  assert.equal(png("xl-file.png").width, 64);
  assert.match(String(png("xl-file.png").text["parameters"]), /Model: tiny-sdxl\.safetensors/);
  assert.ok(pixels("xl-file.png").equals(pixels("xl-folder.png")), "the single file's image is the folder's");
  assert.ok(!pixels("xl-emb.png").equals(pixels("xl-file.png")), "the embedding changes the image");
});

test("--lora applies LoRAs (repeatable, with scales) and a scale of 0 changes nothing", async () => {
  const lora = (name: string) => path.join(SHARED, "fixtures/golden-family/lora", name);
  const base = ["a red cube", "--model", modelDir("tiny-sd1"), "--steps", "2", "--seed", "7", "--threads", "1"];
  const out = (name: string) => path.join(tmp, name);
  await sdserve("generate", ...base, "--out", out("plain.png"));
  await sdserve(
    "generate",
    ...base,
    "--out",
    out("zero.png"),
    "--lora",
    `${lora("tiny-sd1_lora_kohya.safetensors")}:0`,
  );
  await sdserve(
    "generate",
    ...base,
    "--out",
    out("two.png"),
    "--lora",
    `${lora("tiny-sd1_lora_kohya.safetensors")}:0.5`,
    "--lora",
    lora("tiny-sd1_lora_peft.safetensors"),
  );
  const pixels = (f: string) => Buffer.from(decode(readFileSync(out(f))).data as Uint8Array);
  assert.ok(pixels("zero.png").equals(pixels("plain.png")));
  assert.ok(!pixels("two.png").equals(pixels("plain.png")));
});

for (const [what, args, message] of [
  ["a pickle checkpoint", ["--model", "PICKLE"], /pickle.*arbitrary code/],
  ["a LoRA that is not one", ["--model", modelDir("tiny-sd1"), "--lora", CHECKPOINT], /checkpoint, not a LoRA/],
  ["a bad --prediction-type", ["--model", CHECKPOINT, "--prediction-type", "x"], /--prediction-type must be one of/],
] as const) {
  test(`${what} is one clear line and a non-zero exit`, async () => {
    const pickle = path.join(tmp, "model.ckpt");
    writeFileSync(pickle, Buffer.from([0x80, 0x02]));
    const argv = ["generate", "x", "--steps", "1", ...args.map((a) => (a === "PICKLE" ? pickle : a))];
    await assert.rejects(sdserve(...argv), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      const last = err.stderr.trim().split("\n").at(-1) as string;
      assert.match(last, message);
      return true;
    });
  });
}

test("--prompt-syntax a1111 --lora-dir: a <lora:NAME:SCALE> tag equals --lora FILE:SCALE; --clip-skip 2 is recorded", async () => {
  const loraDir = path.join(tmp, "loras");
  mkdirSync(loraDir, { recursive: true });
  copyFileSync(
    path.join(SHARED, "fixtures/golden-family/lora/tiny-sd1_lora_kohya.safetensors"),
    path.join(loraDir, "kohya.safetensors"),
  );
  const base = ["--model", modelDir("tiny-sd1"), "--steps", "2", "--seed", "7", "--threads", "1"];
  const out = (name: string) => path.join(tmp, name);
  await sdserve(
    "generate",
    "a red cube ",
    ...base,
    "--out",
    out("by-file.png"),
    "--lora",
    `${path.join(loraDir, "kohya.safetensors")}:0.5`,
  );
  await sdserve(
    "generate",
    "a red cube <lora:kohya:0.5>",
    ...base,
    "--prompt-syntax",
    "a1111",
    "--lora-dir",
    loraDir,
    "--out",
    out("by-tag.png"),
  );
  await sdserve(
    "generate",
    "a (red:1.4) cube",
    ...base,
    "--prompt-syntax",
    "a1111",
    "--clip-skip",
    "2",
    "--out",
    out("skip.png"),
  );
  await sdserve("generate", "a red cube", ...base, "--out", out("plain.png"));
  const png = (f: string) => decode(readFileSync(out(f)));
  const pixels = (f: string) => Buffer.from(png(f).data as Uint8Array);
  assert.ok(pixels("by-tag.png").equals(pixels("by-file.png")));
  assert.ok(!pixels("by-tag.png").equals(pixels("plain.png")));
  assert.ok(!pixels("skip.png").equals(pixels("plain.png")));
  assert.match(String(png("skip.png").text["parameters"]), /^a \(red:1\.4\) cube\n.*Clip skip: 2/);
});

for (const [what, args, message] of [
  ["a bad --prompt-syntax", ["--prompt-syntax", "comfy"], /--prompt-syntax must be one of diffusers, a1111/],
  ["a bad --clip-skip", ["--clip-skip", "13"], /--clip-skip must be from 1 to 12/],
  ["--lora-dir without a1111", ["--lora-dir", "."], /needs --prompt-syntax a1111/],
] as const) {
  test(`${what} is a usage error`, async () => {
    await assert.rejects(
      sdserve("generate", "x", "--model", modelDir("tiny-sd1"), ...args),
      (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, message);
        return true;
      },
    );
  });
}
