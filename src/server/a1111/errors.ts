/**
 * AUTOMATIC1111's error shapes (/sdapi/v1): FastAPI's 422 validation list `{detail: [{loc, msg,
 * type}]}`, and its exception middleware's `{error, detail, body, errors}` for everything else.
 */
import { problemOf } from "../http/problem.js";

/** A1111's error envelopes: FastAPI's validation list, or its middleware's {error, detail, body, errors}. */
export class A1111Error extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof body["detail"] === "string" ? body["detail"] : "A1111 API error");
  }
}

/** FastAPI's 422: one entry per field at fault, `loc` from the body down. */
export function invalid(field: string | (string | number)[], msg: string, type = "value_error"): A1111Error {
  const loc = ["body", ...(Array.isArray(field) ? field : [field])];
  return new A1111Error(422, { detail: [{ loc, msg, type }] });
}

/**
 * A1111's HTTPException, as its exception handler writes it: `errors` is str(e), which for
 * Starlette's HTTPException is "status: detail".
 */
export function httpException(status: number, detail: string, headers: Record<string, string> = {}): A1111Error {
  return new A1111Error(status, { error: "HTTPException", detail, body: "", errors: `${status}: ${detail}` }, headers);
}

/** Any error at this edge, in A1111's shapes (FastAPI's for validation, its middleware's otherwise). */
export function toA1111Error(err: unknown, logFault: (err: unknown) => void): A1111Error {
  if (err instanceof A1111Error) return err;
  const problem = problemOf(err);
  if (problem?.status === 401) {
    // --api-auth's HTTPException, through the same handler; the challenge header is kept for browsers.
    return httpException(401, "Incorrect username or password", { "WWW-Authenticate": "Basic" });
  }
  if (problem?.status === 400) {
    // A body that is not JSON (or not an object): FastAPI answers 422 with the decoding error.
    return new A1111Error(422, { detail: [{ loc: ["body"], msg: problem.detail, type: "value_error.jsondecode" }] });
  }
  if (problem?.status === 422) {
    const fields = (problem.extra["invalid_fields"] ?? []) as { field: string; description: string; type: string }[];
    return new A1111Error(422, {
      detail: fields.map((f) => ({
        loc: [
          "body",
          ...f.field
            .replace(/^input\./, "")
            .split(".")
            .filter(Boolean),
        ],
        msg: f.description,
        type: `value_error.${f.type}`,
      })),
    });
  }
  if (problem) return httpException(problem.status, problem.detail, problem.headers);
  const status = (err as { statusCode?: number }).statusCode;
  if (status && status >= 400 && status < 500) return httpException(status, (err as Error).message);
  logFault(err);
  return new A1111Error(500, {
    error: "RuntimeError",
    detail: "",
    body: "",
    errors: "The server failed to handle this request.",
  });
}
