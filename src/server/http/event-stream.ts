/** The start of a server-sent event stream on a Fastify reply (Replicate's streams, OpenAI's image events). */
import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";

/**
 * Takes the response from Fastify (hijacked) and sends the stream's headers now, with the CORS
 * headers the request's hooks set: what follows is written to the returned raw response.
 */
export function startEventStream(reply: FastifyReply): ServerResponse {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    Connection: "keep-alive",
    // Proxies (nginx) would otherwise buffer the events.
    "X-Accel-Buffering": "no",
    ...Object.fromEntries(
      ["access-control-allow-origin", "access-control-expose-headers", "vary"]
        .map((h) => [h, reply.getHeader(h)])
        .filter(([, v]) => v !== undefined),
    ),
  });
  res.flushHeaders();
  return res;
}
