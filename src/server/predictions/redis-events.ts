/**
 * PredictionEvents across processes, on Redis pub/sub. A change is delivered to this process's
 * listeners at once (as the local emitter does) and published on one channel that every API node
 * and worker subscribes to; each process skips its own messages when they come back. So a wait,
 * a stream or a webhook on any node sees the changes a worker anywhere makes. Previews travel on a
 * channel per prediction, subscribed to only while someone here follows that prediction.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { PredictionPreview } from "../models/model.js";
import { redisConnection } from "../queue/bullmq.js";
import { LocalPredictionEvents, type PredictionChange, type PredictionEvents } from "./events.js";

interface Message {
  /** The publishing process. */
  o: string;
  c: PredictionChange;
}

interface PreviewMessage {
  o: string;
  step: number;
  total: number;
  /** base64 PNGs */
  images: string[];
}

export class RedisPredictionEvents implements PredictionEvents {
  private readonly node = randomBytes(8).toString("hex");
  private readonly local = new LocalPredictionEvents();
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly changes: string;
  private readonly previewFollowers = new Map<string, number>();
  private readonly localOnly = new Set<(change: PredictionChange) => void>();
  private readonly ready: Promise<unknown>;

  constructor(
    url: string,
    private readonly prefix: string,
    private readonly log?: (line: string) => void,
  ) {
    this.pub = redisConnection(url, log);
    this.sub = redisConnection(url, log);
    this.changes = `${prefix}:events`;
    this.sub.on("messageBuffer", (channel: Buffer, payload: Buffer) => this.onMessage(channel.toString(), payload));
    this.ready = this.sub.subscribe(this.changes);
  }

  /** Resolves once this process receives other processes' changes. */
  async start(): Promise<void> {
    await this.ready;
  }

  private previewChannel(id: string): string {
    return `${this.prefix}:preview:${id}`;
  }

  private onMessage(channel: string, payload: Buffer): void {
    try {
      if (channel === this.changes) {
        const m = JSON.parse(payload.toString("utf8")) as Message;
        if (m.o !== this.node) this.local.publish(m.c);
        return;
      }
      const id = channel.slice(`${this.prefix}:preview:`.length);
      const m = JSON.parse(payload.toString("utf8")) as PreviewMessage;
      if (m.o === this.node) return;
      this.local.publishPreview(id, {
        step: m.step,
        total: m.total,
        images: m.images.map((b) => new Uint8Array(Buffer.from(b, "base64"))),
      });
    } catch (err) {
      this.log?.(`events: a malformed message on ${channel}: ${String(err)}`);
    }
  }

  publish(change: PredictionChange): void {
    this.local.publish(change);
    for (const listener of this.localOnly) listener(change);
    const message: Message = { o: this.node, c: change };
    this.pub
      .publish(this.changes, JSON.stringify(message))
      .catch((err: unknown) => this.log?.(`events: publish failed: ${String(err)}`));
  }

  subscribe(id: string, listener: (change: PredictionChange) => void): () => void {
    return this.local.subscribe(id, listener);
  }

  subscribeAll(listener: (change: PredictionChange) => void): () => void {
    return this.local.subscribeAll(listener);
  }

  subscribeLocal(listener: (change: PredictionChange) => void): () => void {
    this.localOnly.add(listener);
    return () => this.localOnly.delete(listener);
  }

  publishPreview(id: string, preview: PredictionPreview): void {
    this.local.publishPreview(id, preview);
    const message: PreviewMessage = {
      o: this.node,
      step: preview.step,
      total: preview.total,
      images: preview.images.map((png) => Buffer.from(png).toString("base64")),
    };
    this.pub
      .publish(this.previewChannel(id), JSON.stringify(message))
      .catch((err: unknown) => this.log?.(`events: preview publish failed: ${String(err)}`));
  }

  subscribePreviews(id: string, listener: (preview: PredictionPreview) => void): () => void {
    const unsubscribe = this.local.subscribePreviews(id, listener);
    const n = this.previewFollowers.get(id) ?? 0;
    this.previewFollowers.set(id, n + 1);
    if (n === 0) this.sub.subscribe(this.previewChannel(id)).catch(() => undefined);
    return () => {
      unsubscribe();
      const left = (this.previewFollowers.get(id) ?? 1) - 1;
      if (left > 0) {
        this.previewFollowers.set(id, left);
        return;
      }
      this.previewFollowers.delete(id);
      this.sub.unsubscribe(this.previewChannel(id)).catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    await this.sub.quit().catch(() => undefined);
    await this.pub.quit().catch(() => undefined);
  }
}
