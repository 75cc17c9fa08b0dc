/** The version is package.json's, wherever it is shown. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { USER_AGENT } from "../../src/engine/hub/http.js";
import { SDSERVE_VERSION } from "../../src/engine/version.js";
import { REPO_ROOT } from "../helpers/fixtures.js";

test("sdserve --version, the server's version and the hub user agent are package.json's version", async () => {
  const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
  assert.equal(SDSERVE_VERSION, version);
  assert.ok(USER_AGENT.startsWith(`sdserve/${version};`));
  const { stdout } = await promisify(execFile)(process.execPath, [
    "--import",
    "tsx",
    path.join(REPO_ROOT, "src/cli/main.ts"),
    "--version",
  ]);
  assert.equal(stdout, `${version}\n`);
});
