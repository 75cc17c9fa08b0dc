/**
 * PredictionEvents: announcements that a prediction changed, published after the change is in
 * the store. Waiters (Prefer: wait), streams and webhooks subscribe. The local emitter is the
 * default; Redis pub/sub (redis-events.ts) carries them across processes.
 */
import { EventEmitter } from "node:events";
import type { PredictionPreview } from "../models/model.js";
import type { PredictionRecord } from "./prediction.js";

export type PredictionChange =
  | { type: "status"; prediction: PredictionRecord }
  | { type: "log"; id: string; line: string };

export interface PredictionEvents {
  publish(change: PredictionChange): void;
  /** Calls `listener` for each change of prediction `id`; returns the unsubscribe function. */
  subscribe(id: string, listener: (change: PredictionChange) => void): () => void;
  /** Calls `listener` for every change of every prediction, whichever process made it. */
  subscribeAll(listener: (change: PredictionChange) => void): () => void;
  /**
   * Calls `listener` for every change made by this process (webhooks: each change is sent by the
   * one process that made it). The same as subscribeAll where there is one process.
   */
  subscribeLocal(listener: (change: PredictionChange) => void): () => void;
  /** Previews of a running prediction: passed to whoever follows it now, never stored. */
  publishPreview(id: string, preview: PredictionPreview): void;
  subscribePreviews(id: string, listener: (preview: PredictionPreview) => void): () => void;
  close(): Promise<void>;
}

/** Not a prediction id (ids are [a-z2-7]): the channel of every change. */
const ALL = "*";
/** Previews travel on their own channels, so change listeners never see them. */
const previewChannel = (id: string) => `preview:${id}`;

export class LocalPredictionEvents implements PredictionEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // One listener per open wait or stream; many can follow one prediction.
    this.emitter.setMaxListeners(0);
  }

  publish(change: PredictionChange): void {
    this.emitter.emit(change.type === "status" ? change.prediction.id : change.id, change);
    this.emitter.emit(ALL, change);
  }

  subscribeAll(listener: (change: PredictionChange) => void): () => void {
    this.emitter.on(ALL, listener);
    return () => this.emitter.off(ALL, listener);
  }

  subscribeLocal(listener: (change: PredictionChange) => void): () => void {
    return this.subscribeAll(listener);
  }

  subscribe(id: string, listener: (change: PredictionChange) => void): () => void {
    this.emitter.on(id, listener);
    return () => this.emitter.off(id, listener);
  }

  publishPreview(id: string, preview: PredictionPreview): void {
    this.emitter.emit(previewChannel(id), preview);
  }

  subscribePreviews(id: string, listener: (preview: PredictionPreview) => void): () => void {
    this.emitter.on(previewChannel(id), listener);
    return () => this.emitter.off(previewChannel(id), listener);
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
