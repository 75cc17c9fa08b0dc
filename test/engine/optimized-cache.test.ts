/**
 * The optimised-model cache: onnxruntime's optimised form of a network is saved on the first
 * load and used by the next, with the same numbers (golden fixtures, same tolerances as
 * networks.test.ts), and an entry never outlives the weights or settings it was made from.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { UNet, VaeDecoder } from "../../src/engine/networks.js";
import { optimizeInChild } from "../../src/engine/optimize-process.js";
import { type CacheKeyInputs, OptimizedModelCache } from "../../src/engine/optimized-cache.js";
import type { RuntimeOptions } from "../../src/engine/runtime.js";
import { openModelFolder } from "../../src/engine/weights/model-folder.js";
import { FIXTURE_MODELS, manifest, maxAbsDiff, modelDir, REPO_ROOT, refTensor } from "../helpers/fixtures.js";

const TOL = { unet: 2e-5, vae: 5e-5 };
const scratch = mkdtempSync(path.join(os.tmpdir(), "sdserve-optcache-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Runtime options with the cache in `dir`, for every network size, and the log lines kept. */
function cached(dir: string): RuntimeOptions & { lines: string[] } {
  const lines: string[] = [];
  return { threads: 2, optimizedCache: dir, optimizedCacheMinBytes: 0, log: (l) => lines.push(l), lines };
}

const entries = (dir: string) => readdirSync(dir).sort();

for (const model of FIXTURE_MODELS) {
  describe(`${model}: optimised models saved and reused`, () => {
    test("UNet and VAE: saved on the first load, loaded from the cache on the second, golden outputs both times", async () => {
      const folder = await openModelFolder(modelDir(model));
      const dir = path.join(scratch, `${model}-golden`);
      const sample = refTensor(model, "unet_in_sample");
      const context = refTensor(model, "unet_in_encoder_hidden_states");
      const unetOut = (manifest(model).unet.outputs as { timestep: number; output: string }[])[0];
      assert.ok(unetOut);
      const unetRef = refTensor(model, unetOut.output.replace(/^ref\/|\.bin$/g, ""));
      const latents = refTensor(model, "vae_in_latents");
      const vaeRef = refTensor(model, "vae_decode_out");

      for (const round of ["saved", "from"] as const) {
        const opts = cached(dir);
        const unet = await UNet.load(folder.unet, opts);
        const vae = await VaeDecoder.load(folder.vae, opts);
        try {
          assert.match(opts.lines.join("\n"), new RegExp(`unet: .*optimised model ${round}`));
          assert.match(opts.lines.join("\n"), new RegExp(`vae_decoder: .*optimised model ${round}`));
          const u = await unet.run(sample, unetOut.timestep, context);
          const uErr = maxAbsDiff(u.data, unetRef.data);
          assert.ok(uErr <= TOL.unet, `UNet (${round}): max abs error ${uErr}`);
          const v = await vae.decode(latents);
          const vErr = maxAbsDiff(v.data, vaeRef.data);
          assert.ok(vErr <= TOL.vae, `VAE (${round}): max abs error ${vErr}`);
        } finally {
          await Promise.all([unet.session.release(), vae.session.release()]);
        }
      }
      assert.equal(entries(dir).length, 2, `one entry per network: ${entries(dir).join(", ")}`);
    });
  });
}

describe("cache entries", () => {
  const model = FIXTURE_MODELS[0];

  test("changed weights make a new entry and remove the old one; a damaged entry is replaced", async () => {
    const copy = path.join(scratch, "model-copy");
    cpSync(modelDir(model), copy, { recursive: true });
    const dir = path.join(scratch, "changes");
    const load = async () => {
      const opts = cached(dir);
      const folder = await openModelFolder(copy);
      const unet = await UNet.load(folder.unet, opts);
      await unet.session.release();
      return opts.lines.join("\n");
    };

    assert.match(await load(), /optimised model saved/);
    const [first] = entries(dir);
    assert.match(await load(), /optimised model from/);

    // Same bytes, new modification time: another file as far as the cache can tell.
    const weights = readdirSync(path.join(copy, "unet")).find((f) => f.endsWith(".safetensors")) as string;
    const later = new Date(Date.now() + 60_000);
    utimesSync(path.join(copy, "unet", weights), later, later);
    assert.match(await load(), /optimised model saved/);
    const [second] = entries(dir);
    assert.equal(entries(dir).length, 1);
    assert.notEqual(second, first);

    // A truncated model file: said in the log, optimised again, the entry rewritten.
    writeFileSync(path.join(dir, second as string, "model.onnx"), "not a model");
    const log = await load();
    assert.match(log, /could not be loaded \(/);
    assert.match(log, /optimised model saved/);
    assert.match(await load(), /optimised model from/);

    // Weights deleted: their entry goes when the next entry is written.
    const other = path.join(scratch, "other-copy");
    cpSync(copy, other, { recursive: true });
    rmSync(copy, { recursive: true });
    const folder = await openModelFolder(other);
    const opts = cached(dir);
    await (await UNet.load(folder.unet, opts)).session.release();
    assert.match(opts.lines.join("\n"), /optimised model saved/);
    assert.equal(entries(dir).length, 1);
    assert.notEqual(entries(dir)[0], second);
  });

  test("one load at a time makes an entry: the others wait for it and load it", { timeout: 60_000 }, async () => {
    const folder = await openModelFolder(modelDir(model));
    const dir = path.join(scratch, "together");
    const opts = [cached(dir), cached(dir), cached(dir)];
    const unets = await Promise.all(opts.map((o) => UNet.load(folder.unet, o)));
    await Promise.all(unets.map((u) => u.session.release()));
    const logs = opts.map((o) => o.lines.join("\n"));
    assert.equal(logs.filter((l) => /optimised model saved/.test(l)).length, 1, logs.join("\n"));
    assert.equal(logs.filter((l) => /optimised model from/.test(l)).length, 2, logs.join("\n"));
    assert.equal(logs.filter((l) => /waiting for process \d+ to save/.test(l)).length, 2, logs.join("\n"));
    assert.deepEqual(
      entries(dir).filter((e) => !e.endsWith(".lock")),
      entries(dir),
      "no lock is left behind",
    );
  });

  test("a lock whose process is gone is taken over; a live one is waited for", { timeout: 60_000 }, async () => {
    const folder = await openModelFolder(modelDir(model));
    const dir = path.join(scratch, "locks");
    // The lock's name: the entry's, found by making the entry once and removing it.
    const first = cached(dir);
    await (await UNet.load(folder.unet, first)).session.release();
    const [entry] = entries(dir);
    rmSync(path.join(dir, entry as string), { recursive: true });
    const lockFile = path.join(dir, `${entry}.lock`);

    const sleeper = spawn("sleep", ["1.5"]);
    await new Promise((resolve) => sleeper.once("spawn", resolve));
    writeFileSync(lockFile, JSON.stringify({ pid: sleeper.pid, host: os.hostname(), time: Date.now() }));
    const live = cached(dir);
    const started = Date.now();
    await (await UNet.load(folder.unet, live)).session.release();
    const waited = Date.now() - started;
    assert.match(live.lines.join("\n"), new RegExp(`waiting for process ${sleeper.pid} to save`));
    assert.match(live.lines.join("\n"), /optimised model saved/);
    assert.ok(waited >= 1000, `it waited ${waited} ms for a process that lived 1.5 s`);

    rmSync(path.join(dir, entry as string), { recursive: true });
    writeFileSync(lockFile, JSON.stringify({ pid: sleeper.pid, host: os.hostname(), time: Date.now() }));
    const dead = cached(dir);
    await (await UNet.load(folder.unet, dead)).session.release();
    assert.doesNotMatch(dead.lines.join("\n"), /waiting/);
    assert.match(dead.lines.join("\n"), /optimised model saved/);

    // Left by an earlier process with this process's pid, or by one whose pid is now another's.
    for (const stale of [
      { pid: process.pid, start: "1", host: os.hostname(), time: Date.now() },
      { pid: process.ppid, start: "1", host: os.hostname(), time: Date.now() },
    ]) {
      rmSync(path.join(dir, entry as string), { recursive: true });
      writeFileSync(lockFile, JSON.stringify(stale));
      const reused = cached(dir);
      await (await UNet.load(folder.unet, reused)).session.release();
      assert.doesNotMatch(reused.lines.join("\n"), /waiting/, JSON.stringify(stale));
      assert.match(reused.lines.join("\n"), /optimised model saved/);
    }
    assert.ok(!entries(dir).some((e) => e.endsWith(".lock")));
  });

  test("the key covers the graph, the settings and the onnxruntime version", () => {
    const weights = path.join(modelDir(model), "unet");
    const file = path.join(weights, readdirSync(weights).find((f) => f.endsWith(".safetensors")) as string);
    const cache = new OptimizedModelCache(path.join(scratch, "keys"));
    const base: CacheKeyInputs = {
      network: "unet",
      graph: new Uint8Array([1, 2, 3]),
      weightFiles: [file],
      runtimeVersion: "1.30.0",
      settings: "{}",
    };
    const variants: CacheKeyInputs[] = [
      { ...base, graph: new Uint8Array([1, 2, 4]) },
      { ...base, settings: '{"level":"basic"}' },
      { ...base, runtimeVersion: "1.31.0" },
    ];
    const names = [base, ...variants].map((inputs) => {
      const pending = cache.begin(inputs, 0);
      assert.ok(typeof pending !== "string");
      writeFileSync(pending.modelPath, "x");
      writeFileSync(path.join(path.dirname(pending.modelPath), "model.data"), "x");
      pending.commit();
      assert.ok(cache.find(inputs), "a committed entry is found");
      return entries(cache.root)[0];
    });
    assert.equal(new Set(names).size, names.length, "each input makes its own entry");
    assert.equal(entries(cache.root).length, 1, "committing an entry removes its siblings");
    const full = cache.begin(base, 2 ** 60);
    assert.ok(typeof full === "string" && /GiB free in .*needed/.test(full), `a disk too small is a reason: ${full}`);
  });

  test("cleanup removes only what the cache made, in a folder it may share with anything", () => {
    const weights = path.join(modelDir(model), "unet");
    const file = path.join(weights, readdirSync(weights).find((f) => f.endsWith(".safetensors")) as string);
    const cache = new OptimizedModelCache(path.join(scratch, "shared-folder"));
    const inputs = (graph: number): CacheKeyInputs => ({
      network: "unet",
      graph: new Uint8Array([graph]),
      weightFiles: [file],
      runtimeVersion: "1.30.0",
      settings: "{}",
    });
    const commit = (i: CacheKeyInputs) => {
      const pending = cache.begin(i, 0);
      assert.ok(typeof pending !== "string");
      writeFileSync(pending.modelPath, "x");
      writeFileSync(path.join(path.dirname(pending.modelPath), "model.data"), "x");
      assert.ok(pending.commit());
    };
    commit(inputs(1));
    const [entry] = entries(cache.root);
    const prefix = (entry as string).slice(0, -16);
    // Another owner's things, two days old, with names the old cleanup matched.
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    const foreign = [
      "photos.tmp-1",
      "backup.tmp-2024-01-01",
      "unet-0123456789ab-0123456789abcdef.tmp-1-deadbeef",
      `${prefix}ffffffffffffffff`,
      `${prefix}notes`,
    ];
    for (const name of foreign) {
      mkdirSync(path.join(cache.root, name));
      writeFileSync(path.join(cache.root, name, "keep.txt"), "mine");
      utimesSync(path.join(cache.root, name), twoDaysAgo, twoDaysAgo);
    }
    writeFileSync(path.join(cache.root, "file.tmp-3"), "mine");
    utimesSync(path.join(cache.root, "file.tmp-3"), twoDaysAgo, twoDaysAgo);
    // The cache's own temporary folder, abandoned two days ago by a process that died.
    const abandoned = cache.begin(inputs(2), 0);
    assert.ok(typeof abandoned !== "string");
    const abandonedDir = path.dirname(abandoned.modelPath);
    utimesSync(abandonedDir, twoDaysAgo, twoDaysAgo);

    commit(inputs(3));
    const left = entries(cache.root);
    for (const name of [...foreign, "file.tmp-3"]) assert.ok(left.includes(name), `${name} was removed`);
    assert.ok(!left.includes(path.basename(abandonedDir)), "the abandoned temporary folder is removed");
    assert.ok(!left.includes(entry as string), "the older entry of the same weights is removed");
  });

  test("plain loads: off when asked, and for networks below the size limit", async () => {
    const folder = await openModelFolder(modelDir(model));
    const dir = path.join(scratch, "off");
    for (const opts of [
      { ...cached(dir), optimizedCache: false as const },
      { ...cached(dir), optimizedCacheMinBytes: 2 ** 40 },
    ]) {
      const unet = await UNet.load(folder.unet, opts);
      await unet.session.release();
      assert.doesNotMatch(opts.lines.join("\n"), /optimised/);
    }
    assert.deepEqual(readdirSync(scratch).includes("off") ? entries(dir) : [], []);
  });

  test("no folder given: no cache, whatever SDSERVE_OPTIMIZED_CACHE says (the engine reads no environment)", async () => {
    const folder = await openModelFolder(modelDir(model));
    const dir = path.join(scratch, "from-env");
    const saved = process.env["SDSERVE_OPTIMIZED_CACHE"];
    try {
      process.env["SDSERVE_OPTIMIZED_CACHE"] = dir;
      const opts = { ...cached(dir), optimizedCache: undefined };
      await (await UNet.load(folder.unet, opts)).session.release();
      assert.match(opts.lines.join("\n"), /^unet: running on the CPU execution provider$/);
      assert.equal(readdirSync(scratch).includes("from-env"), false);
    } finally {
      if (saved === undefined) delete process.env["SDSERVE_OPTIMIZED_CACHE"];
      else process.env["SDSERVE_OPTIMIZED_CACHE"] = saved;
    }
  });

  test("a failure in the optimising child process is reported with onnxruntime's message", async () => {
    const bad = path.join(scratch, "not-a-model.onnx");
    writeFileSync(bad, "not a model");
    await assert.rejects(
      optimizeInChild({
        graphPath: bad,
        externalDir: scratch,
        outputPath: path.join(scratch, "never.onnx"),
        dataFile: "never.data",
        sessionOptions: { executionProviders: ["cpu"], graphOptimizationLevel: "all", intraOpNumThreads: 1 },
      }),
      /optimising in a child process failed: .*(Protobuf|parse|Load model)/i,
    );
  });

  test("the optimising child stops when its parent dies", { timeout: 60_000 }, async () => {
    // A FIFO as the graph: onnxruntime blocks reading it, so the child is busy for as long as
    // the test likes, as it is for half a minute on a real UNet.
    const dir = mkdtempSync(path.join(scratch, "orphan-"));
    const fifo = path.join(dir, "graph.onnx");
    execFileSync("mkfifo", [fifo]);
    const parentScript = path.join(dir, "parent.mjs");
    const job = {
      graphPath: fifo,
      externalDir: dir,
      outputPath: path.join(dir, "model.onnx"),
      dataFile: "model.data",
      sessionOptions: { executionProviders: ["cpu"], graphOptimizationLevel: "all", intraOpNumThreads: 1 },
    };
    const module = pathToFileURL(path.join(REPO_ROOT, "src/engine/optimize-process.ts")).href;
    writeFileSync(
      parentScript,
      `import { optimizeInChild } from ${JSON.stringify(module)};\nawait optimizeInChild(${JSON.stringify(job)});\n`,
    );
    const parent = spawn(process.execPath, [...process.execArgv, parentScript], { stdio: "ignore" });
    const childPid = (): number | undefined => {
      for (const entry of readdirSync("/proc")) {
        if (!/^\d+$/.test(entry) || Number(entry) === parent.pid) continue;
        const cmdline = safeCmdline(entry);
        if (cmdline.includes("optimize-process") && cmdline.includes(fifo)) return Number(entry);
      }
      return undefined;
    };
    let child: number | undefined;
    for (let i = 0; i < 200 && child === undefined; i++) {
      child = childPid();
      if (child === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(child, "the parent started an optimising child");
    parent.kill("SIGKILL");
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      await new Promise((r) => setTimeout(r, 100));
      alive = existsSync(`/proc/${child}`) && !isZombie(child);
    }
    if (alive) process.kill(child, "SIGKILL");
    assert.ok(!alive, "the child was still running 10 s after its parent died");
  });
});

function safeCmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

function isZombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}
