/**
 * Several processes waiting on one stale lock at once (its holder died): exactly one takes it
 * over at a time, for both the optimised-model cache's locks and the hub's download locks.
 * Each round starts the contenders at the same instant; their holds must never overlap.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { REPO_ROOT } from "../helpers/fixtures.js";

const CONTENDERS = 6;
const ROUNDS = 3;
const HOLD_MS = 300;
const scratch = mkdtempSync(path.join(os.tmpdir(), "sdserve-stale-lock-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A pid of this host whose process has exited. */
function deadPid(): number {
  const child = spawnSync("true");
  return child.pid as number;
}

async function round(kind: "cache" | "hub", dir: string, lockFile: string, staleText: string): Promise<string[]> {
  writeFileSync(lockFile, staleText);
  const log = path.join(dir, "holds.log");
  writeFileSync(log, "");
  // Start far enough ahead for every contender to have loaded its modules.
  const startAt = Date.now() + 4000;
  const script = path.join(REPO_ROOT, "test/helpers/lock-contender.ts");
  const children = Array.from({ length: CONTENDERS }, () =>
    spawn(process.execPath, ["--import", "tsx", script, kind, dir, String(startAt), String(HOLD_MS), log], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "inherit", "inherit"],
    }),
  );
  const codes = await Promise.all(children.map((c) => new Promise((resolve) => c.once("exit", resolve))));
  assert.deepEqual(codes, new Array(CONTENDERS).fill(0));
  return readFileSync(log, "utf8").trim().split("\n");
}

/** Pairs of holds that overlapped in time. */
function overlaps(lines: string[]): string[] {
  const holds = lines.map((l) => l.split(" ").map(Number) as [number, number, number]).sort((a, b) => a[1] - b[1]);
  const found: string[] = [];
  for (let i = 1; i < holds.length; i++) {
    const [pidA, , leftA] = holds[i - 1] as [number, number, number];
    const [pidB, enteredB] = holds[i] as [number, number, number];
    if (enteredB < leftA) found.push(`${pidA} and ${pidB} overlapped by ${leftA - enteredB} µs`);
  }
  return found;
}

test("optimised-model cache: waiters on one stale lock take it one at a time", { timeout: 120_000 }, async () => {
  const dir = path.join(scratch, "cache", "optimized");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(scratch, "cache", "weights.safetensors"), "w");
  for (let r = 0; r < ROUNDS; r++) {
    // The lock's name is the entry's: learn it from a first round's left-overs, if any.
    const lockName = readdirSync(dir).find((f) => f.endsWith(".lock"));
    const lines = await round(
      "cache",
      dir,
      path.join(dir, lockName ?? (await lockNameOf(dir))),
      JSON.stringify({ pid: deadPid(), start: "1", host: os.hostname(), time: Date.now() }),
    );
    assert.equal(lines.length, CONTENDERS);
    assert.deepEqual(overlaps(lines), []);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes(".lock")),
      [],
      "no lock or takeover file is left behind",
    );
  }
});

/** The lock file name of the contenders' entry: one contender alone takes and gives it back, watched. */
async function lockNameOf(dir: string): Promise<string> {
  const { OptimizedModelCache } = await import("../../src/engine/optimized-cache.js");
  const release = await new OptimizedModelCache(dir).lock({
    network: "unet",
    graph: new Uint8Array([1]),
    weightFiles: [path.join(dir, "..", "weights.safetensors")],
    runtimeVersion: "test",
    settings: "{}",
  });
  const name = readdirSync(dir).find((f) => f.endsWith(".lock")) as string;
  release();
  return name;
}

test("hub download lock: waiters on one stale lock take it one at a time", { timeout: 120_000 }, async () => {
  const dir = path.join(scratch, "hub");
  mkdirSync(dir, { recursive: true });
  for (let r = 0; r < ROUNDS; r++) {
    const lines = await round("hub", dir, path.join(dir, "blob.lock"), `${deadPid()}@${os.hostname()}`);
    assert.equal(lines.length, CONTENDERS);
    assert.deepEqual(overlaps(lines), []);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes(".lock")),
      [],
      "no lock or takeover file is left behind",
    );
  }
});
