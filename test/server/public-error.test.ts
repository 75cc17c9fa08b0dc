/**
 * What reaches prediction.error and /health-check: the deliberate errors (ModelError,
 * RequestError, PredictionError) as written; anything else as a generic sentence with an id,
 * its text (local paths, internals) only in the log, under the same id.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { HubError, ModelError, RequestError } from "../../src/engine/errors.js";
import { PredictionError } from "../../src/server/models/model.js";
import { publicErrorMessage } from "../../src/server/public-error.js";

test("an unexpected error (here a real ENOENT naming a local path) is shown generically, logged whole", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-secret-place-"));
  let err: unknown;
  try {
    readFileSync(path.join(dir, "weights.bin"));
  } catch (e) {
    err = e;
  }
  rmSync(dir, { recursive: true, force: true });
  assert.ok(err instanceof Error && err.message.includes(dir));
  const lines: string[] = [];
  const shown = publicErrorMessage(err, "running the prediction", (l) => lines.push(l));
  assert.doesNotMatch(shown, /sdserve-secret-place|ENOENT|weights\.bin|\//);
  const id = /\((err_[0-9a-f]{12});/.exec(shown)?.[1];
  assert.ok(id, shown);
  assert.match(
    shown,
    /^Internal error while running the prediction \(err_[0-9a-f]{12}; the server's log has the details\)\.$/,
  );
  assert.equal(lines.length, 1);
  assert.ok(lines[0]?.startsWith(`${id}: `));
  assert.ok(lines[0]?.includes(dir), "the log has the whole error");
});

test("each unexpected error gets its own id; non-Error values too", () => {
  const a = publicErrorMessage(new TypeError("Cannot read properties of undefined (reading 'data')"), "x");
  const b = publicErrorMessage("/home/someone/.cache/sdserve/unet failed", "x");
  assert.doesNotMatch(a, /Cannot read|undefined/);
  assert.doesNotMatch(b, /home|someone/);
  assert.notEqual(/err_\w+/.exec(a)?.[0], /err_\w+/.exec(b)?.[0]);
});

test("the deliberate errors are shown as written", () => {
  for (const err of [
    new ModelError("is not a regular file; a diffusers model folder has one here", { file: "unet/config.json" }),
    new HubError("offline", "HF_HUB_OFFLINE is set and owner/name is not in the cache"),
    new RequestError("width must be a multiple of 8", "width"),
    new PredictionError("The model could not be loaded: no such model folder"),
  ]) {
    const lines: string[] = [];
    assert.equal(
      publicErrorMessage(err, "x", (l) => lines.push(l)),
      err.message,
    );
    assert.deepEqual(lines, []);
  }
});
