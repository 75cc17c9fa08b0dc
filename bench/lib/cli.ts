/**
 * Command-line plumbing shared by the benches: integer and cache options, `--help` from the script's
 * header comment, and one child process per variant (so each has its own peak RSS and one
 * model's memory does not weigh on the next).
 */

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { engineSettings, readSettings } from "../../src/config.js";

export function intOption(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${value}`);
  return n;
}

/**
 * `--optimized-cache on|off|DIR` → RuntimeOptions.optimizedCache: sdserve's configured folder
 * (SDSERVE_OPTIMIZED_CACHE, else optimized/ in SDSERVE_CACHE), false (off), or that folder.
 */
export function optimizedCacheOption(value: string): string | false {
  if (value === "on") return engineSettings(readSettings("generate", {}, process.env)).optimizedCache;
  if (value === "off") return false;
  return path.resolve(value);
}

/** Prints the script's opening comment (its usage) and exits. */
export function printUsageAndExit(scriptUrl: string): never {
  console.log(readFileSync(fileURLToPath(scriptUrl), "utf8").split("*/")[0]);
  process.exit(0);
}

/**
 * Runs the script again once per variant, with the same arguments plus the variant's own and
 * `--child`, output shared with this process. Returns how many children failed.
 */
export function runChildren(bench: string, scriptUrl: string, variants: { name: string; args: string[] }[]): number {
  let failed = 0;
  for (const v of variants) {
    const args = [...process.execArgv, fileURLToPath(scriptUrl), ...process.argv.slice(2), ...v.args, "--child"];
    const child = spawnSync(process.execPath, args, { stdio: "inherit" });
    if (child.status !== 0) {
      failed++;
      console.error(`bench/${bench}: ${v.name} failed (exit ${child.status ?? child.signal})`);
    }
  }
  return failed;
}
