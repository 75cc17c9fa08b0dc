/**
 * urls.stream: a prediction's events as Server-Sent Events. A capability URL (no token needed:
 * the JS client fetches it with no Authorization header): full replay for late subscribers,
 * Last-Event-ID resume, `: ping` comments as keepalive, closed after `done`. With ?preview=1
 * (the web pages) it also carries live `preview` events of a running prediction.
 */
import type { FastifyInstance } from "fastify";
import { urlBaseOf } from "../http/headers.js";
import { NotFoundError } from "../predictions/errors.js";
import type { PredictionService } from "../predictions/service.js";
import { formatPreviewEvent, formatStreamEvent, streamEvents } from "../predictions/stream-events.js";
import { PROBLEM } from "../schemas/definitions.js";
import type { RouteSchema } from "../schemas/openapi.js";

/** Python's client reads with a 30 s timeout; a comment well inside that keeps it open. */
const DEFAULT_KEEPALIVE_MS = 10_000;

export interface StreamRoutesOptions {
  apiPrefix: string;
  service: PredictionService;
  publicBaseUrl: string | undefined;
  /** Interval of the `: ping` comments (default 10 s). */
  keepaliveMs?: number;
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

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
      ...Object.fromEntries(
        ["access-control-allow-origin", "access-control-expose-headers", "vary"]
          .map((h) => [h, reply.getHeader(h)])
          .filter(([, v]) => v !== undefined),
      ),
    });
    res.flushHeaders();

    let ended = false;
    let flushing: Promise<void> = Promise.resolve();
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      unsubscribePreviews();
      clearInterval(keepalive);
      service.closingSignal.removeEventListener("abort", end);
      res.end();
    };
    // Re-read the prediction and send whatever events are new; flushes run one at a time.
    const flush = () => {
      flushing = flushing.then(async () => {
        if (ended) return;
        const p = await service.findByStreamKey(req.params.stream_key);
        if (!p) return end();
        for (const e of streamEvents(p, base)) {
          if (e.id <= sent) continue;
          res.write(formatStreamEvent(e));
          sent = e.id;
          if (e.event === "done") return end();
        }
      });
      flushing.catch(end);
    };
    const unsubscribe = service.events.subscribe(first.id, flush);
    const unsubscribePreviews =
      req.query.preview === "1"
        ? service.events.subscribePreviews(first.id, (preview) => {
            if (!ended) res.write(formatPreviewEvent(preview));
          })
        : () => {};
    const keepalive = setInterval(() => res.write(": ping\n\n"), opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
    res.on("close", end);
    service.closingSignal.addEventListener("abort", end);
    flush();
  });
}
