/** Tar archives made by GNU tar itself (the tool), for tests of the tar reader and of replicate_weights. */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

/** The files, written into a fresh folder under `tmp`, archived by GNU tar in its own format or pax (as Python's tarfile writes). */
export function gnuTar(
  tmp: string,
  files: Record<string, Uint8Array | string>,
  format: "gnu" | "pax" = "gnu",
): Uint8Array {
  const dir = mkdtempSync(path.join(tmp, "tar-src-"));
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), data);
  }
  const out = `${dir}.tar`;
  execFileSync("tar", [`--format=${format}`, "-cf", out, "-C", dir, ...Object.keys(files)]);
  return new Uint8Array(readFileSync(out));
}
