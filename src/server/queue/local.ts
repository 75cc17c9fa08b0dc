/** The default JobQueue: an array in this process, with one waiter per free worker slot. */
import type { JobConsumer, JobHandler, JobQueue } from "./queue.js";

export class LocalJobQueue implements JobQueue {
  readonly shared = false;
  private readonly ids: string[] = [];
  private readonly running = new Set<string>();
  private readonly waiters: ((id: string | undefined) => void)[] = [];

  async enqueue(id: string): Promise<void> {
    const waiter = this.waiters.shift();
    if (waiter) waiter(id);
    else this.ids.push(id);
  }

  /** The next id, waiting for one if the queue is empty; undefined once `signal` aborts. */
  private take(signal: AbortSignal): Promise<string | undefined> {
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

  async has(id: string): Promise<boolean> {
    return this.ids.includes(id) || this.running.has(id);
  }

  async waitingCount(): Promise<number> {
    return this.ids.length;
  }

  consume(handler: JobHandler, concurrency: number): JobConsumer {
    const stopping = new AbortController();
    const loop = async () => {
      for (;;) {
        const id = await this.take(stopping.signal);
        if (id === undefined) return;
        this.running.add(id);
        // A job handed back is run again on the next start (recovery reads the store).
        await handler(id).finally(() => this.running.delete(id));
      }
    };
    const loops = Array.from({ length: concurrency }, loop);
    return {
      stop: async () => {
        stopping.abort();
        await Promise.allSettled(loops);
      },
    };
  }

  async close(): Promise<void> {
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
