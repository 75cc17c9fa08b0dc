/**
 * The PostgreSQL and Redis servers of the scale-out tests. `.ci/run` starts them (`.ci/services`)
 * and passes their URLs as SDSERVE_TEST_DATABASE_URL and SDSERVE_TEST_REDIS_URL; where those are
 * unset but Debian's packages are installed, the first call starts private ones for this test
 * process (stopped when it exits). Under CI a missing server is an error, never a skip.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { REPO_ROOT } from "./fixtures.js";

interface Urls {
  database: string;
  redis: string;
}

let urls: Urls | undefined;
let missing: string | undefined;

function installed(): string | undefined {
  const pgRoot = "/usr/lib/postgresql";
  const hasPostgres =
    existsSync(pgRoot) && readdirSync(pgRoot).some((v) => existsSync(path.join(pgRoot, v, "bin/initdb")));
  if (!hasPostgres) return "PostgreSQL is not installed (apt-get install postgresql)";
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" });
  } catch {
    return "redis-server is not installed (apt-get install redis-server)";
  }
  return undefined;
}

function resolve(): Urls | undefined {
  if (urls || missing) return urls;
  const database = process.env["SDSERVE_TEST_DATABASE_URL"];
  const redis = process.env["SDSERVE_TEST_REDIS_URL"];
  if (database && redis) {
    urls = { database, redis };
    return urls;
  }
  missing = installed();
  if (missing) {
    if (process.env["CI"]) throw new Error(`the scale-out tests need their servers under CI: ${missing}`);
    return undefined;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-services-"));
  const script = path.join(REPO_ROOT, ".ci/services");
  const exports = execFileSync("bash", [script, "start", dir], { encoding: "utf8" });
  process.once("exit", () => {
    execFileSync("bash", [script, "stop", dir], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  });
  const value = (name: string) => new RegExp(`${name}=(\\S+)`).exec(exports)?.[1] as string;
  urls = { database: value("SDSERVE_TEST_DATABASE_URL"), redis: value("SDSERVE_TEST_REDIS_URL") };
  return urls;
}

/** Why the servers cannot be had here (a test's skip reason), or undefined when they can. */
export function servicesUnavailable(): string | undefined {
  resolve();
  return urls ? undefined : missing;
}

/** A new, empty database on the test server; drop() removes it. */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = resolve();
  if (!base) throw new Error(missing);
  const name = `sdserve_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base.database });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base.database);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: base.database });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** The test Redis, and a key prefix of its own for each caller (pub/sub channels ignore db numbers). */
export function redisForTest(): { url: string; prefix: string } {
  const base = resolve();
  if (!base) throw new Error(missing);
  return { url: base.redis, prefix: `sdserve-test-${randomBytes(4).toString("hex")}` };
}
