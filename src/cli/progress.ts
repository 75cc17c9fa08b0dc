/**
 * Step progress for long work: a redrawn bar with rate and ETA on a terminal, one plain
 * line per step otherwise (logs, CI, pipes).
 */
export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  label?: string;
  unit?: string;
  /** When the work began (performance.now()); default: now. Rates count from here. */
  start?: number;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - m * 60)).padStart(2, "0")}s`;
}

export class StepProgress {
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private readonly start: number;
  private lastWidth = 0;

  constructor(
    private readonly total: number,
    private readonly opts: ProgressOptions = {},
  ) {
    this.start = opts.start ?? performance.now();
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  update(done: number): void {
    const elapsed = (performance.now() - this.start) / 1000;
    const rate = done > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? (this.total - done) / rate : Number.POSITIVE_INFINITY;
    const unit = this.opts.unit ?? "it";
    const speed = rate >= 1 || rate === 0 ? `${rate.toFixed(2)} ${unit}/s` : `${(1 / rate).toFixed(2)} s/${unit}`;
    const label = this.opts.label ? `${this.opts.label} ` : "";
    if (this.tty) {
      const width = 30;
      const filled = Math.round((done / this.total) * width);
      const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
      const line = `${label}${bar} ${done}/${this.total} ${speed} ETA ${formatSeconds(eta)}`;
      this.stream.write(`\r${line.padEnd(this.lastWidth)}`);
      this.lastWidth = line.length;
    } else {
      this.stream.write(`${label}step ${done}/${this.total} ${speed} eta ${formatSeconds(eta)}\n`);
    }
  }

  finish(): void {
    if (this.tty) this.stream.write("\n");
  }
}
