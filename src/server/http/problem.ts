/**
 * Errors at the HTTP edge, sent as RFC 7807 problem documents (application/problem+json) with
 * Replicate's titles and wording where known (spec §3).
 */

import {
  GoneError,
  InvalidInputError,
  NotFoundError,
  QueueFullError,
  TokenQueueFullError,
  UnknownVersionError,
} from "../predictions/errors.js";
import type { InvalidField } from "../schemas/json-schema.js";
import { describeInvalidFields } from "../schemas/json-schema.js";

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string | undefined,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }

  body(): Record<string, unknown> {
    return { ...(this.title ? { title: this.title } : {}), detail: this.detail, status: this.status, ...this.extra };
  }
}

export const notFound = () => new HttpProblem(404, undefined, "The requested resource could not be found.");

export const unauthenticated = () =>
  new HttpProblem(401, "Unauthenticated", "You did not pass a valid authentication token");

export const badJson = () => new HttpProblem(400, "Bad request", "Request body is not valid JSON");

export const invalidVersion = () =>
  new HttpProblem(
    422,
    "Invalid version or not permitted",
    "The specified version does not exist (or perhaps you don't have permission to use it?)",
  );

export function validationFailed(fields: readonly InvalidField[]): HttpProblem {
  return new HttpProblem(422, "Input validation failed", describeInvalidFields(fields), { invalid_fields: fields });
}

export function throttled(retryAfterSeconds: number, detail: string): HttpProblem {
  const s = Math.max(1, Math.ceil(retryAfterSeconds));
  return new HttpProblem(429, "Too Many Requests", detail, { retry_after: s }, { "Retry-After": String(s) });
}

export const gone = (detail: string) => new HttpProblem(410, "Gone", detail);

/** Seconds a client is asked to wait when the queue is full. */
const QUEUE_FULL_RETRY_S = 10;

/**
 * The one place where the service's domain errors become HTTP problems; undefined for anything
 * else (a fault of the server, or an error Fastify raised itself).
 */
export function problemOf(err: unknown): HttpProblem | undefined {
  if (err instanceof HttpProblem) return err;
  if (err instanceof InvalidInputError) return validationFailed(err.fields);
  if (err instanceof NotFoundError) return notFound();
  if (err instanceof UnknownVersionError) return invalidVersion();
  if (err instanceof QueueFullError || err instanceof TokenQueueFullError) {
    return throttled(QUEUE_FULL_RETRY_S, err.message);
  }
  if (err instanceof GoneError) return gone(err.message);
  return undefined;
}
