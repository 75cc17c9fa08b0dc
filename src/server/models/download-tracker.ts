/**
 * Follows a model's weight download for the operator: totals, rate and ETA for /health-check,
 * and log lines — what is to come, a progress line every few seconds, each finished file, retries.
 */
import { formatBytes, type PullEvent } from "../../engine/index.js";
import type { SetupProgress } from "./model.js";

function formatEta(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)}s`;
  const m = Math.round(seconds / 60);
  return m < 90 ? `${m}min` : `${(m / 60).toFixed(1)}h`;
}

export class DownloadTracker {
  private totalBytes = 0;
  /** Bytes of finished files, and of the file in progress. */
  private finishedBytes = 0;
  private currentBytes = 0;
  private file: string | undefined;
  private readonly start: number;
  private lastLog: number;
  private planned = false;
  /** Where the file in progress stood when this run began (a resumed download). */
  private base = 0;

  constructor(
    private readonly source: string,
    private readonly log: (line: string) => void,
    private readonly logEveryMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.start = now();
    this.lastLog = this.start;
  }

  /** The download so far, for /health-check; undefined before the plan is known or when nothing is missing. */
  get progress(): SetupProgress["download"] {
    if (!this.planned || this.totalBytes === 0) return undefined;
    const done = Math.min(this.totalBytes, this.finishedBytes + this.currentBytes);
    const elapsed = (this.now() - this.start) / 1000;
    const rate = elapsed > 1 && done > 0 ? done / elapsed : undefined;
    return {
      source: this.source,
      file: this.file,
      doneBytes: done,
      totalBytes: this.totalBytes,
      bytesPerSecond: rate === undefined ? undefined : Math.round(rate),
      etaSeconds: rate === undefined ? undefined : Math.round((this.totalBytes - done) / rate),
    };
  }

  handle = (e: PullEvent): void => {
    switch (e.type) {
      case "plan":
        this.planned = true;
        this.totalBytes = e.downloadBytes;
        if (e.downloadBytes > 0) {
          const missing = e.files.filter((f) => !f.cached).length;
          this.log(
            `Downloading ${e.repo} (${e.commit.slice(0, 12)}) into the Hugging Face cache: ${formatBytes(e.downloadBytes)} in ${missing} file(s)`,
          );
        }
        break;
      case "progress":
        // A resumed file starts above 0: count only what this run fetches against the plan.
        if (this.file !== e.path) {
          this.file = e.path;
          this.currentBytes = 0;
          this.base = e.done;
        }
        this.currentBytes = Math.max(0, e.done - this.base);
        this.maybeLog();
        break;
      case "file-done":
        if (this.planned) {
          this.finishedBytes += this.file === e.path ? e.size - this.base : e.size;
          this.log(`Downloaded ${e.path} (${formatBytes(e.size)})`);
        }
        this.currentBytes = 0;
        this.file = undefined;
        break;
      case "retry":
        this.log(`${e.error}; retrying in ${Math.ceil(e.delayMs / 1000)}s (retry ${e.attempt})`);
        break;
      case "offline-fallback":
        this.log(`${e.reason}; using the copy in the Hugging Face cache`);
        break;
    }
  };

  private maybeLog(): void {
    const t = this.now();
    if (!this.planned || t - this.lastLog < this.logEveryMs) return;
    this.lastLog = t;
    const p = this.progress;
    if (!p) return;
    const pct = Math.floor((p.doneBytes / p.totalBytes) * 100);
    const rate = p.bytesPerSecond === undefined ? "" : `, ${formatBytes(p.bytesPerSecond)}/s`;
    const eta = p.etaSeconds === undefined ? "" : `, ETA ${formatEta(p.etaSeconds)}`;
    this.log(
      `Downloading ${this.source}: ${pct}% (${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}${rate}${eta}), ${p.file ?? ""}`.replace(
        /, $/,
        "",
      ),
    );
  }
}
