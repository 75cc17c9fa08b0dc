/**
 * onnxruntime's optimised form of each network, kept on disk so that the next session of the
 * same network on the same machine starts from it instead of optimising again.
 *
 * Why: creating the SD 1.5 UNet's session took 9–22 s on a 2-core Zen 4, nearly all of it in
 * onnxruntime's graph optimisation (bench/profile): folding the Linear weights' transposes and,
 * mostly, NchwcTransformer copying every Conv weight into the blocked layout of this CPU's SIMD
 * width. Saved with its weights (and the MatMul weights packed for this CPU) in an external-data
 * file, the optimised model loads in about 1 s: its weights are memory-mapped, not copied.
 *
 * That form holds CPU-specific layouts (onnxruntime warns so when saving it), so an entry is
 * keyed by everything it depends on: this CPU (model and feature flags), the onnxruntime
 * version, the graph's bytes (which name the weights by file, offset and length) and each
 * weights file's real path, size and modification time. An entry costs about 1.3× the weights'
 * size in fp32 on disk (the packed MatMul weights are a second copy); writing a new one removes the entries of the same weights made by
 * another onnxruntime version, CPU or graph (so each network keeps one) and the entries whose
 * weights files are gone. The folder can be deleted at any time.
 *
 * Entries are written into a private temporary folder and renamed into place, so processes
 * sharing the cache (several workers on one machine) never read a half-written one, and one
 * process at a time makes a given entry (a lock file beside it) while the others wait for it.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { removeStaleLock } from "./stale-lock.js";

/** Bumped when what an entry holds changes (2: packed MatMul weights saved too). */
const FORMAT = 2;
const MODEL_FILE = "model.onnx";
/** The weights files an entry was made from, so entries of deleted weights can be removed. */
const SOURCES_FILE = "sources.json";
/** Relative to MODEL_FILE's folder, as onnxruntime's saved model names it. */
export const DATA_FILE = "model.data";
/** Temporary folders older than this are left-overs of a process that died while writing. */
const STALE_TMP_MS = 24 * 3600 * 1000;
/** A lock file beside the entry it guards. */
const LOCK_SUFFIX = ".lock";
/** Locks older than this are taken over: optimising the largest network takes a minute or two. */
const LOCK_STALE_MS = 15 * 60 * 1000;
const LOCK_POLL_MS = 250;

export interface CacheKeyInputs {
  /** The network's name (text_encoder, unet, vae_decoder). */
  network: string;
  /** The ONNX model bytes handed to onnxruntime. */
  graph: Uint8Array;
  /** Real paths of the files the graph's external data points into. */
  weightFiles: readonly string[];
  /** onnxruntime's version. */
  runtimeVersion: string;
  /** Session settings that change the optimised graph (provider, optimisation level). */
  settings: string;
}

/** A cache entry being written: onnxruntime saves into `modelPath`, then `commit()` publishes it. */
export interface PendingEntry {
  modelPath: string;
  /** Publishes the entry; false when another process published the same one first. */
  commit(): boolean;
  discard(): void;
}

const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** What identifies this CPU for compiled layouts: its model and the instruction sets it reports. */
export function cpuIdentity(): string {
  const fallback = `${os.arch()} ${os.cpus()[0]?.model ?? "unknown"}`;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(info)?.[1]?.trim() ?? "";
    // "flags" on x86, "Features" on ARM.
    return [
      os.arch(),
      field("vendor_id"),
      field("cpu family"),
      field("model"),
      field("model name"),
      field("flags") || field("Features"),
    ].join("|");
  } catch {
    return fallback;
  }
}

export class OptimizedModelCache {
  constructor(readonly root: string) {}

  /** The folder name of an entry: `<network>-<weights>-<everything else>`, so stale siblings are found by prefix. */
  private names(inputs: CacheKeyInputs): { prefix: string; name: string } {
    const files = [...inputs.weightFiles].sort();
    const weights = sha256(files.join("\n")).slice(0, 12);
    const identities = files.map((f) => {
      const s = statSync(f);
      return `${f}:${s.size}:${s.mtimeMs}`;
    });
    const key = sha256(
      JSON.stringify({
        format: FORMAT,
        runtime: inputs.runtimeVersion,
        cpu: cpuIdentity(),
        settings: inputs.settings,
        graph: sha256(inputs.graph),
        weights: identities,
      }),
    ).slice(0, 16);
    const prefix = `${inputs.network}-${weights}-`;
    return { prefix, name: `${prefix}${key}` };
  }

  /** The saved model for these inputs, if a complete entry exists. */
  find(inputs: CacheKeyInputs): string | undefined {
    const modelPath = path.join(this.root, this.names(inputs).name, MODEL_FILE);
    try {
      statSync(path.join(path.dirname(modelPath), DATA_FILE));
      return statSync(modelPath).isFile() ? modelPath : undefined;
    } catch {
      return undefined;
    }
  }

  /** Deletes the entry for these inputs (one that onnxruntime could not load). */
  remove(inputs: CacheKeyInputs): void {
    rmSync(path.join(this.root, this.names(inputs).name), { recursive: true, force: true });
  }

  /**
   * Waits until no other live process is making this entry, then takes the right to make it: a
   * lock file naming this process. Resolves to the function that gives the right back.
   * `onWait` is told once whom it waits for. A lock is taken over when its process is gone
   * (same host) or it is older than any optimisation takes.
   */
  async lock(inputs: CacheKeyInputs, onWait?: (holder: string) => void): Promise<() => void> {
    mkdirSync(this.root, { recursive: true });
    const file = path.join(this.root, `${this.names(inputs).name}${LOCK_SUFFIX}`);
    const mine = JSON.stringify({
      pid: process.pid,
      start: processStart(process.pid),
      host: os.hostname(),
      time: Date.now(),
    });
    let told = false;
    for (;;) {
      try {
        writeFileSync(file, mine, { flag: "wx" });
        heldHere.add(file);
        return () => {
          heldHere.delete(file);
          // Only our own lock: a stale-lock takeover may have replaced it.
          let text: string | undefined;
          try {
            text = readFileSync(file, "utf8");
          } catch {
            return;
          }
          if (text === mine) rmSync(file, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const { holder, text } = lockHolder(file);
      if (holder === undefined) {
        if (text !== undefined) removeStaleLock(file, text);
        continue;
      }
      if (!told) onWait?.(holder);
      told = true;
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
  }

  /**
   * A temporary folder to save a new entry into, or a reason not to: the disk lacks room for
   * the entry's `expectedBytes` and a margin of 1 GiB.
   */
  begin(inputs: CacheKeyInputs, expectedBytes: number): PendingEntry | string {
    mkdirSync(this.root, { recursive: true });
    const free = freeBytes(this.root);
    const needed = expectedBytes + 2 ** 30;
    if (free !== undefined && free < needed) {
      return `${gib(free)} free in ${this.root}, about ${gib(needed)} needed`;
    }
    const { prefix, name } = this.names(inputs);
    const finalDir = path.join(this.root, name);
    const tmpDir = path.join(this.root, `${name}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    mkdirSync(tmpDir);
    writeFileSync(path.join(tmpDir, SOURCES_FILE), `${JSON.stringify(inputs.weightFiles)}\n`);
    return {
      modelPath: path.join(tmpDir, MODEL_FILE),
      commit: () => {
        try {
          renameSync(tmpDir, finalDir);
        } catch {
          // Another process published the same entry first: theirs is as good.
          rmSync(tmpDir, { recursive: true, force: true });
          return false;
        }
        this.removeStale(prefix, name);
        return true;
      },
      discard: () => rmSync(tmpDir, { recursive: true, force: true }),
    };
  }

  /**
   * Other entries of the same weights, entries whose weights files are gone, and temporary
   * folders abandoned by dead processes. A process still using a removed entry keeps its
   * memory-mapped files until it exits. Only what this cache made is ever touched: a folder
   * named as it names entries and their temporary folders, holding its sources file. The
   * folder may be shared with other things (SDSERVE_OPTIMIZED_CACHE names any folder).
   */
  private removeStale(prefix: string, keep: string): void {
    for (const entry of readdirSync(this.root)) {
      if (entry === keep || !OWN_ENTRY.test(entry)) continue;
      const dir = path.join(this.root, entry);
      if (!statSync(path.join(dir, SOURCES_FILE), { throwIfNoEntry: false })?.isFile()) continue;
      const stale = entry.includes(".tmp-")
        ? Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > STALE_TMP_MS
        : entry.startsWith(prefix) || !sourcesExist(dir);
      if (stale) rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** The names this cache gives entries (`<network>-<weights>-<key>`) and their temporary folders. */
const OWN_ENTRY = /^[a-z0-9_-]+-[0-9a-f]{12}-[0-9a-f]{16}(\.tmp-\d+-[0-9a-f]{8})?$/;

/** Lock files this process holds. */
const heldHere = new Set<string>();

/** When a process started (Linux: /proc/<pid>/stat's starttime), to tell a reused pid; else undefined. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces), from the 3rd; starttime is the 22nd.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/**
 * Who holds a lock file ("process 123 on host"), or no holder when the lock is stale: its
 * process gone (same host), older than LOCK_STALE_MS, or unreadable and not just being written.
 * `text` is what was judged (undefined: the file is gone).
 */
function lockHolder(file: string): { holder?: string; text?: string } {
  let text: string;
  let age: number;
  try {
    text = readFileSync(file, "utf8");
    age = Date.now() - statSync(file).mtimeMs;
  } catch {
    return {};
  }
  return { holder: judgeLock(text, age, file), text };
}

function judgeLock(text: string, age: number, file: string): string | undefined {
  if (age > LOCK_STALE_MS) return undefined;
  let lock: { pid?: unknown; start?: unknown; host?: unknown };
  try {
    lock = JSON.parse(text) as typeof lock;
  } catch {
    return age < 5000 ? "another process" : undefined;
  }
  const pid = typeof lock.pid === "number" ? lock.pid : undefined;
  if (pid === undefined) return undefined;
  if (lock.host === os.hostname()) {
    // This process's pid: a lock it holds, or one left by an earlier process that had the same
    // pid (a restarted container's server is pid 1 again).
    if (pid === process.pid) return heldHere.has(file) ? `process ${pid}` : undefined;
    try {
      process.kill(pid, 0);
    } catch (err) {
      // EPERM: alive, but another user's.
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
    }
    // The pid is in use, but by another process than the one that took the lock?
    const start = processStart(pid);
    if (typeof lock.start === "string" && start !== undefined && start !== lock.start) return undefined;
    return `process ${pid}`;
  }
  return `process ${pid} on ${String(lock.host)}`;
}

/** Whether every weights file an entry lists still exists (an entry without the list is kept). */
function sourcesExist(dir: string): boolean {
  let files: unknown;
  try {
    files = JSON.parse(readFileSync(path.join(dir, SOURCES_FILE), "utf8"));
  } catch {
    return true;
  }
  return !Array.isArray(files) || files.every((f) => typeof f !== "string" || existsSync(f));
}

function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
