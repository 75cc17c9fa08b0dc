/** The default JobQueue: an array in this process, with one waiter per worker. */
import type { JobQueue } from "./queue.js";

export class LocalJobQueue implements JobQueue {
  private readonly ids: string[] = [];
  private readonly waiters: ((id: string | undefined) => void)[] = [];

  async enqueue(id: string): Promise<void> {
    const waiter = this.waiters.shift();
    if (waiter) waiter(id);
    else this.ids.push(id);
  }

  take(signal: AbortSignal): Promise<string | undefined> {
    if (signal.aborted) return Promise.resolve(undefined);
    const next = this.ids.shift();
    if (next !== undefined) return Promise.resolve(next);
    return new Promise((resolve) => {
      const waiter = (id: string | undefined) => {
        signal.removeEventListener("abort", onAbort);
        resolve(id);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(undefined);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  async remove(id: string): Promise<boolean> {
    const i = this.ids.indexOf(id);
    if (i < 0) return false;
    this.ids.splice(i, 1);
    return true;
  }

  async close(): Promise<void> {
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
