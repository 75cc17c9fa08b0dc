/**
 * The data directory is its user's alone: after a real server has made its token, database and
 * an output file, everything in it is 0700 (directories) or 0600 (files), including what was
 * already there with looser modes.
 */
import assert from "node:assert/strict";
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { api, authHeaders, eventually, newDataDir, smallInput, startSdserve, VERSION } from "./server.js";

/** Every entry under `dir` (itself included) whose mode is not owner-only, as "path 0755". */
function looseEntries(dir: string): string[] {
  const loose: string[] = [];
  const visit = (p: string) => {
    const st = statSync(p);
    const mode = st.mode & 0o777;
    if (mode !== (st.isDirectory() ? 0o700 : 0o600)) loose.push(`${path.relative(dir, p) || "."} ${mode.toString(8)}`);
    if (st.isDirectory()) for (const name of readdirSync(p)) visit(path.join(p, name));
  };
  visit(dir);
  return loose;
}

test("the data directory, files/, the database (with -wal/-shm) and the token file are owner-only", async () => {
  const dataDir = newDataDir();
  // As an older version (or a umask of 022) left them.
  chmodSync(dataDir, 0o755);
  mkdirSync(path.join(dataDir, "files"), { mode: 0o755 });
  chmodSync(path.join(dataDir, "files"), 0o755);
  closeSync(openSync(path.join(dataDir, "sdserve.db"), "w", 0o644));
  chmodSync(path.join(dataDir, "sdserve.db"), 0o644);

  const server = await startSdserve({ dataDir, env: { SDSERVE_API_TOKENS: "" } });
  try {
    const token = readFileSync(path.join(dataDir, "api-token"), "utf8").trim();
    const headers = authHeaders(token);
    const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: smallInput() }, headers);
    assert.equal(r.status, 201, JSON.stringify(r.json));
    const done = await eventually(async () => {
      const g = await api(server, "GET", `/v1/predictions/${r.json["id"]}`, undefined, headers);
      return g.json["status"] === "succeeded" ? g.json : undefined;
    }, "the prediction to succeed");
    assert.equal((done["output"] as string[]).length, 1);
    const names = readdirSync(dataDir);
    for (const name of ["api-token", "files", "sdserve.db", "sdserve.db-wal", "sdserve.db-shm"]) {
      assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
    }
    assert.deepEqual(looseEntries(dataDir), []);
  } finally {
    await server.stop();
  }
  assert.deepEqual(looseEntries(dataDir), []);
});
