/**
 * Progress lines in the shape of Python's tqdm, as diffusers prints them and Replicate shows
 * them in a prediction's logs:
 *   ` 40%|████      | 2/5 [00:01<00:01,  1.52it/s]`
 * Both official clients read progress from the last such line with
 * /^\s*(\d+)%\s*\|.+?\|\s*(\d+)\/(\d+)/, so the shape matters more than the figures.
 */

const WIDTH = 10;
/** tqdm's unicode bar: full blocks, then one partial block in eighths. */
const PARTIAL = [" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds)); // tqdm truncates, as int() does
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${two(m)}:${two(s % 60)}`;
}

function bar(fraction: number): string {
  const eighths = Math.floor(fraction * WIDTH * 8);
  const full = Math.floor(eighths / 8);
  if (full >= WIDTH) return "█".repeat(WIDTH);
  return "█".repeat(full) + PARTIAL[eighths % 8] + " ".repeat(WIDTH - full - 1);
}

/** The line for `done` of `total` steps after `elapsedSeconds`. */
export function progressLine(done: number, total: number, elapsedSeconds: number): string {
  const fraction = total > 0 ? done / total : 0;
  const pct = String(Math.floor(fraction * 100)).padStart(3, " ");
  let rate = "?it/s";
  let remaining = "?";
  if (done > 0 && elapsedSeconds > 0) {
    const perSecond = done / elapsedSeconds;
    rate = perSecond >= 1 ? `${perSecond.toFixed(2).padStart(5)}it/s` : `${(1 / perSecond).toFixed(2).padStart(5)}s/it`;
    remaining = clock((total - done) / perSecond);
  }
  return `${pct}%|${bar(fraction)}| ${done}/${total} [${clock(elapsedSeconds)}<${remaining}, ${rate}]`;
}
