/**
 * Errors the engine raises for bad models or bad requests. Each names what was wrong and,
 * where it applies, the file and the field, so the message can be shown to a user as is.
 */
export class ModelError extends Error {
  override readonly name = "ModelError";
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
