/**
 * Errors the engine raises for bad models or bad requests. Each names what was wrong and,
 * where it applies, the file and the field, so the message can be shown to a user as is.
 */
export class ModelError extends Error {
  override readonly name: string = "ModelError";
  readonly file: string | undefined;
  readonly field: string | undefined;

  constructor(message: string, where: { file?: string; field?: string } = {}) {
    const prefix = [where.file, where.field].filter(Boolean).join(": ");
    super(prefix ? `${prefix}: ${message}` : message);
    this.file = where.file;
    this.field = where.field;
  }
}

/** A generation request the engine cannot run as asked (bad size, unknown scheduler, …). */
export class RequestError extends Error {
  override readonly name = "RequestError";

  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export type HubErrorKind =
  | "offline" // HF_HUB_OFFLINE is set and the cache lacks what is needed
  | "unreachable" // no connection to the endpoint
  | "not-found" // no such repository (or private), revision or file
  | "gated" // the repository needs an accepted licence and a token
  | "unauthorized" // the token was refused
  | "corrupt" // bytes that do not match the listed size or hash
  | "disk" // the cache cannot be written (full disk, permissions)
  | "protocol"; // an answer the hub protocol does not allow

/**
 * A model that cannot be had from the Hugging Face Hub (or its cache). The message says why
 * in one sentence and what to do about it, so it can be shown to a user as is.
 */
export class HubError extends ModelError {
  override readonly name = "HubError";

  constructor(
    readonly kind: HubErrorKind,
    message: string,
  ) {
    super(message);
  }
}
