/**
 * urls.stream: a prediction's events as Server-Sent Events. A capability URL (no token needed:
 * the JS client fetches it with no Authorization header): full replay for late subscribers,
 * Last-Event-ID resume, `: ping` comments as keepalive, closed after `done`. With ?preview=1
 * (the web pages) it also carries live `preview` events of a running prediction.
 */
import type { ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import { startEventStream } from "../http/event-stream.js";
import { urlBaseOf } from "../http/headers.js";
import { throttled } from "../http/problem.js";
import { NotFoundError } from "../predictions/errors.js";
import type { PredictionService } from "../predictions/service.js";
import { formatPreviewEvent, formatStreamEvent, streamEvents } from "../predictions/stream-events.js";
import { PROBLEM } from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";

/** Python's client reads with a 30 s timeout; a comment well inside that keeps it open. */
const DEFAULT_KEEPALIVE_MS = 10_000;

/** Defaults of SDSERVE_STREAMS_PER_PREDICTION and SDSERVE_STREAMS_PER_CLIENT. */
export const DEFAULT_STREAMS_PER_PREDICTION = 20;
export const DEFAULT_STREAMS_PER_CLIENT = 50;

/**
 * The event streams open in this process, shared by both API prefixes: counted per prediction
 * and per client address (for the caps), and their unsent bytes (for /metrics).
 */
export class OpenStreams {
  private readonly open = new Set<ServerResponse>();
  private readonly perPrediction = new Map<string, number>();
  private readonly perClient = new Map<string, number>();

  constructor(
    readonly maxPerPrediction = DEFAULT_STREAMS_PER_PREDICTION,
    readonly maxPerClient = DEFAULT_STREAMS_PER_CLIENT,
  ) {}

  /** Counts a new stream in, or says which cap it would pass; the returned function counts it out. */
  admit(res: ServerResponse, prediction: string, client: string): (() => void) | string {
    if ((this.perPrediction.get(prediction) ?? 0) >= this.maxPerPrediction) {
      return `This prediction already has ${this.maxPerPrediction} open event streams, the most it may have (SDSERVE_STREAMS_PER_PREDICTION).`;
    }
    if ((this.perClient.get(client) ?? 0) >= this.maxPerClient) {
      return `This client already has ${this.maxPerClient} open event streams, the most one address may have (SDSERVE_STREAMS_PER_CLIENT).`;
    }
    const bump = (m: Map<string, number>, k: string, by: number) => {
      const n = (m.get(k) ?? 0) + by;
      if (n > 0) m.set(k, n);
      else m.delete(k);
    };
    this.open.add(res);
    bump(this.perPrediction, prediction, 1);
    bump(this.perClient, client, 1);
    let counted = true;
    return () => {
      if (!counted) return;
      counted = false;
      this.open.delete(res);
      bump(this.perPrediction, prediction, -1);
      bump(this.perClient, client, -1);
    };
  }

  get count(): number {
    return this.open.size;
  }

  /** Bytes written to open streams and not yet handed to the operating system. */
  bufferedBytes(): number {
    let n = 0;
    for (const res of this.open) n += res.writableLength;
    return n;
  }
}

export interface StreamRoutesOptions {
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  /** Interval of the `: ping` comments (default 10 s). */
  keepaliveMs?: number;
  /** Shared by the routes of both prefixes. */
  streams: OpenStreams;
}

const STREAM_SCHEMA: RouteSchema = {
  summary: "A prediction's events (urls.stream), as Server-Sent Events: a capability URL, no token needed",
  description: "output, logs, error and done events (and preview with ?preview=1); resumes after Last-Event-ID.",
  params: { type: "object", required: ["stream_key"], properties: { stream_key: { type: "string" } } },
  querystring: {
    type: "object",
    properties: { preview: { type: "string", description: "1: add live preview events" } },
  },
  headers: { type: "object", properties: { "last-event-id": { type: "string" } } },
  response: {
    200: { content: { "text/event-stream": { schema: { type: "string" } } } },
    404: PROBLEM,
  },
};

export async function streamRoutes(app: FastifyInstance, opts: StreamRoutesOptions): Promise<void> {
  const { service } = opts;
  type Request = { Params: { stream_key: string }; Querystring: { preview?: string } };
  app.get<Request>("/streams/:stream_key", { schema: STREAM_SCHEMA }, async (req, reply) => {
    const first = await service.findByStreamKey(req.params.stream_key);
    if (!first) throw new NotFoundError("No such stream");
    const base = urlBaseOf(req, opts.apiPrefix, opts.publicBaseUrl);
    const lastEventId = req.headers["last-event-id"];
    // An id we did not send (not a number) replays from the start.
    let sent = typeof lastEventId === "string" && /^\d+$/.test(lastEventId.trim()) ? Number(lastEventId) : -1;

    const res = reply.raw;
    const admitted = opts.streams.admit(res, first.id, req.ip);
    if (typeof admitted === "string") throw throttled(10, admitted);
    const countOut = admitted;

    startEventStream(reply);

    const keepaliveMs = opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
    let ended = false;
    let flushing: Promise<void> = Promise.resolve();
    let flushQueued = false;
    /** Since when the client has not taken what was written (undefined: it keeps up). */
    let stalledSince: number | undefined;
    const end = () => {
      if (ended) return;
      ended = true;
      countOut();
      unsubscribe();
      unsubscribePreviews();
      clearInterval(keepalive);
      service.closingSignal.removeEventListener("abort", end);
      res.removeListener("drain", onDrain);
      // A client that stopped reading gets no orderly end (that too would wait in the buffer).
      if (stalledSince !== undefined) res.destroy();
      else res.end();
    };
    const onDrain = () => {
      stalledSince = undefined;
    };
    res.on("drain", onDrain);
    /** Writes `chunk` unless the client is behind; a chunk not written is dropped (previews, pings). */
    const writeIfKeepingUp = (chunk: string) => {
      if (ended || res.writableNeedDrain) return;
      if (!res.write(chunk)) stalledSince ??= Date.now();
    };
    /** Resolves once what was written has gone to the client, or the stream has ended. */
    const drained = () =>
      new Promise<void>((resolve) => {
        if (!res.writableNeedDrain || ended) return resolve();
        const done = () => {
          res.removeListener("drain", done);
          res.removeListener("close", done);
          resolve();
        };
        res.once("drain", done);
        res.once("close", done);
      });
    // Re-read the prediction and send whatever numbered events are new, writing no faster than
    // the client reads: they are never dropped, so they wait in the store, not in this buffer.
    // At most one flush runs and one waits; changes meanwhile are picked up by the waiting one.
    const flush = () => {
      if (flushQueued) return;
      flushQueued = true;
      flushing = flushing.then(async () => {
        flushQueued = false;
        if (ended) return;
        const p = await service.findByStreamKey(req.params.stream_key);
        if (!p) return end();
        for (const e of streamEvents(p, base)) {
          if (e.id <= sent) continue;
          await drained();
          if (ended) return;
          if (!res.write(formatStreamEvent(e))) stalledSince ??= Date.now();
          sent = e.id;
          if (e.event === "done") {
            await drained();
            return end();
          }
        }
      });
      flushing.catch(end);
    };
    const unsubscribe = service.events.subscribe(first.id, flush);
    const unsubscribePreviews =
      req.query.preview === "1"
        ? service.events.subscribePreviews(first.id, (preview) => writeIfKeepingUp(formatPreviewEvent(preview)))
        : () => {};
    // Each tick: a ping for proxies, or, for a client that has taken nothing for three ticks, the end.
    const keepalive = setInterval(() => {
      if (stalledSince !== undefined && Date.now() - stalledSince >= 3 * keepaliveMs) return end();
      writeIfKeepingUp(": ping\n\n");
    }, keepaliveMs);
    res.on("close", end);
    service.closingSignal.addEventListener("abort", end);
    flush();
  });
}
