/**
 * Download progress on the command line, one bar per file with bytes, rate and ETA:
 *
 *   unet/diffusion_pytorch_model.safetensors  ██████░░░░░░░░░  1.21 GB / 3.46 GB  84.1 MB/s  ETA 27s
 *
 * redrawn in place on a terminal; elsewhere (logs, CI, pipes) a plain line every few seconds
 * and one when a file is done.
 */
import { formatBytes, type PullEvent } from "../engine/index.js";

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

interface FileState {
  size: number;
  /** Bytes on disk when this run began (a resumed download starts above 0). */
  startBytes: number;
  startTime: number;
  done: number;
  lastPrint: number;
}

export class DownloadProgress {
  private readonly tty: boolean;
  private readonly files = new Map<string, FileState>();
  private current: string | undefined;
  private lastWidth = 0;
  private lastDraw = 0;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly now: () => number = () => performance.now(),
    /** Seconds between plain lines when not on a terminal. */
    private readonly plainEvery = 5,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  handle = (e: PullEvent): void => {
    switch (e.type) {
      case "plan": {
        const cached = e.files.filter((f) => f.cached).length;
        const rev = e.revision === e.commit ? e.commit.slice(0, 12) : `${e.revision} (${e.commit.slice(0, 12)})`;
        const what =
          e.downloadBytes === 0
            ? `all ${e.files.length} files already in the cache`
            : `${formatBytes(e.downloadBytes)} to download in ${e.files.length - cached} file(s)` +
              (cached > 0 ? `, ${cached} already in the cache` : "");
        this.line(`${e.repo} at ${rev}: ${what}`);
        break;
      }
      case "progress":
        this.progress(e.path, e.size, e.done);
        break;
      case "file-done":
        this.progress(e.path, e.size, e.size);
        this.finishFile(e.path);
        break;
      case "retry":
        // The error names the file already.
        this.line(
          `${e.error}; retrying in ${formatSeconds(e.delayMs / 1000)}` +
            (e.resumeAt > 0 ? ` from ${formatBytes(e.resumeAt)}` : "") +
            ` (retry ${e.attempt})`,
        );
        break;
      case "offline-fallback":
        this.line(`${e.reason}\nusing the copy in the Hugging Face cache`);
        break;
    }
  };

  private progress(file: string, size: number, done: number): void {
    const t = this.now();
    let st = this.files.get(file);
    if (!st) {
      st = { size, startBytes: done, startTime: t, done, lastPrint: t };
      this.files.set(file, st);
    }
    st.done = done;
    if (this.current !== file) {
      if (this.current) this.finishFile(this.current);
      this.current = file;
    }
    if (this.tty) {
      // Redrawing on every chunk would cost more than the download; 10 times a second is plenty.
      if (t - this.lastDraw < 100 && done < size) return;
      this.lastDraw = t;
      this.draw(this.render(file, st, t));
    } else if (t - st.lastPrint >= this.plainEvery * 1000 && done < size) {
      st.lastPrint = t;
      this.stream.write(`${this.render(file, st, t)}\n`);
    }
  }

  private render(file: string, st: FileState, t: number): string {
    const elapsed = (t - st.startTime) / 1000;
    const rate = elapsed > 0 ? (st.done - st.startBytes) / elapsed : 0;
    const eta = rate > 0 ? (st.size - st.done) / rate : Number.POSITIVE_INFINITY;
    const width = 20;
    const filled = st.size > 0 ? Math.round((st.done / st.size) * width) : width;
    const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
    const amounts = `${formatBytes(st.done)} / ${formatBytes(st.size)}`;
    // A rate over a few milliseconds means nothing.
    const speed = elapsed >= 0.05 ? `  ${formatBytes(rate)}/s` : "";
    const tail = st.done >= st.size ? `  in ${formatSeconds(elapsed)}` : `  ETA ${formatSeconds(eta)}`;
    return `${file}  ${bar}  ${amounts}${speed}${tail}`;
  }

  private finishFile(file: string): void {
    const st = this.files.get(file);
    if (!st || this.current !== file) return;
    const line = this.render(file, st, this.now());
    if (this.tty) {
      this.draw(line);
      this.stream.write("\n");
      this.lastWidth = 0;
    } else {
      this.stream.write(`${line}\n`);
    }
    this.current = undefined;
  }

  private draw(line: string): void {
    this.stream.write(`\r${line.padEnd(this.lastWidth)}`);
    this.lastWidth = line.length;
  }

  /** A message between bars. */
  private line(text: string): void {
    if (this.tty && this.lastWidth > 0) {
      this.stream.write("\n");
      this.lastWidth = 0;
      this.current = undefined;
    }
    this.stream.write(`${text}\n`);
  }
}
