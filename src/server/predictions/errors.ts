/**
 * What the predictions service refuses, in its own terms. The HTTP edge (http/problem.ts,
 * problemOf) turns each into a problem+json response; nothing in here knows about status codes.
 */
import type { InvalidField } from "../schemas/json-schema.js";

export class PredictionDomainError extends Error {}

/** No such prediction, model or version — or one that belongs to another account. */
export class NotFoundError extends PredictionDomainError {
  override readonly name = "NotFoundError";
}

/** The request's fields break the request schema or the model's Input schema; every violation at once. */
export class InvalidInputError extends PredictionDomainError {
  override readonly name = "InvalidInputError";
  constructor(readonly fields: readonly InvalidField[]) {
    super(fields.map((f) => (f.field ? `${f.field}: ${f.description}` : f.description)).join("; "));
  }
}

/** The version reference names no served model. */
export class UnknownVersionError extends PredictionDomainError {
  override readonly name = "UnknownVersionError";
}

/** Too many predictions are waiting or running; try again later. */
export class QueueFullError extends PredictionDomainError {
  override readonly name = "QueueFullError";
  constructor(readonly unfinished: number) {
    super(`The queue is full (${unfinished} predictions waiting or running). Try again in ~10s.`);
  }
}

/** This account has as many unfinished predictions as one account may have. */
export class TokenQueueFullError extends PredictionDomainError {
  override readonly name = "TokenQueueFullError";
  constructor(readonly unfinished: number) {
    super(
      `This token already has ${unfinished} predictions waiting or running, the most one token may have (SDSERVE_QUEUE_MAX_PER_TOKEN). Try again when one has finished.`,
    );
  }
}

/** The thing existed and was removed (output files past retention). */
export class GoneError extends PredictionDomainError {
  override readonly name = "GoneError";
}
