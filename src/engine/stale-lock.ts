/**
 * Taking over a stale lock file safely. Removing it is not enough: of two waiters that both
 * judged the same lock stale, the later one would remove the fresh lock the earlier one had
 * just taken, and both would go on as its holder. So the removal is done under a second lock
 * (`<lock>.takeover`, created exclusively) and only if the file still holds what was judged.
 */
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";

/** A takeover lock this old was left by a process that died in the few lines below. */
const ABANDONED_TAKEOVER_MS = 10_000;

/** Removes `file` if it still reads `judged` (the text found stale); the caller then tries to take it again. */
export function removeStaleLock(file: string, judged: string): void {
  const takeover = `${file}.takeover`;
  try {
    writeFileSync(takeover, String(process.pid), { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // Another waiter is taking it over: wait for that. One that died doing so is cleared.
    const age = Date.now() - (statSync(takeover, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > ABANDONED_TAKEOVER_MS) rmSync(takeover, { force: true });
    return;
  }
  try {
    let now: string;
    try {
      now = readFileSync(file, "utf8");
    } catch {
      return; // gone already
    }
    if (now === judged) rmSync(file, { force: true });
  } finally {
    rmSync(takeover, { force: true });
  }
}
