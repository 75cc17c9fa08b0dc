/**
 * What a user may see of an error. The engine's ModelError and RequestError, and a model's
 * PredictionError, are written to be shown (they say what was wrong and what to do); anything
 * else is a fault inside the server whose text may hold local paths or internals, so the user
 * gets a generic sentence with an id, and the log gets the whole error under the same id.
 */
import { randomBytes } from "node:crypto";
import { ModelError, RequestError } from "../engine/errors.js";
import { PredictionError } from "./models/model.js";

export function publicErrorMessage(err: unknown, doing: string, log?: (line: string) => void): string {
  if (err instanceof ModelError || err instanceof RequestError || err instanceof PredictionError) return err.message;
  const id = `err_${randomBytes(6).toString("hex")}`;
  log?.(`${id}: internal error while ${doing}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return `Internal error while ${doing} (${id}; the server's log has the details).`;
}
