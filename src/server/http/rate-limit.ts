/** A per-account fixed-window request counter (off unless configured). */
export class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  /** undefined when the request may go ahead; else the seconds until the window resets. */
  hit(account: string, now = Date.now()): number | undefined {
    let w = this.windows.get(account);
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, count: 0 };
      this.windows.set(account, w);
    }
    w.count++;
    return w.count > this.max ? (w.start + this.windowMs - now) / 1000 : undefined;
  }
}
