/**
 * bench/progress-poll: what one GET /sdapi/v1/progress costs the store, with a realistic state:
 * an account whose newest predictions are two img2img calls of 16 images each, every one with
 * a picture (and a mask) as data: URIs of about 1 MB, the second call part-way (4 done, one
 * processing with its step lines logged, 11 waiting), and older Replicate predictions behind
 * them. Times, on SQLite (a file) and on PostgreSQL when SDSERVE_TEST_DATABASE_URL is set:
 *
 * - `whole-records`: the read a poll made before the glance, the account's 32 newest
 *   predictions as whole records (inputs parsed), and their step lines;
 * - `glance`: what a poll reads now (server/a1111/calls.ts callsInFlight).
 *
 * Also prints the bytes each read brings back. Nothing is asserted.
 *
 *   npx tsx bench/progress-poll.ts [--picture-kib 1024] [--runs 20] [--json]
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CALL_SEARCH, callsInFlight, lastStep } from "../src/server/a1111/calls.js";
import { progressLine } from "../src/server/models/progress-bar.js";
import { AccountState } from "../src/server/predictions/accounts.js";
import { timestamp } from "../src/server/predictions/ids.js";
import type { PredictionRecord } from "../src/server/predictions/prediction.js";
import { PostgresPredictionStore } from "../src/server/store/postgres.js";
import { SqlitePredictionStore } from "../src/server/store/sqlite.js";
import type { PredictionStore } from "../src/server/store/store.js";
import { record as storedRecord } from "../test/helpers/prediction-record.js";
import { freshDatabase, servicesUnavailable } from "../test/helpers/services.js";
import { intOption, printUsageAndExit } from "./lib/cli.js";
import { LABEL, pad, Report, round } from "./lib/report.js";
import { timeRuns } from "./lib/timing.js";

const BENCH = "progress-poll";
const ACCOUNT = "bench-account";

const { values } = parseArgs({
  options: {
    "picture-kib": { type: "string", default: "1024" },
    runs: { type: "string", default: "20" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) printUsageAndExit(import.meta.url);
const pictureKib = intOption("--picture-kib", values["picture-kib"] as string, 1);
const runs = intOption("--runs", values.runs as string, 1);
const report = new Report(BENCH, values.json as boolean);

/** A prediction of the bench's account, made now (the default record's fields otherwise). */
function record(extra: Partial<PredictionRecord>): PredictionRecord {
  return storedRecord({
    account: ACCOUNT,
    model: "stability-ai/stable-diffusion-img2img",
    input: { prompt: "a fox" },
    createdAt: timestamp(),
    ...extra,
  });
}

const steps = (n: number, of: number) =>
  Array.from({ length: n }, (_, i) => `${progressLine(i + 1, of, (i + 1) * 0.4)}\n`).join("");

async function fill(store: PredictionStore): Promise<void> {
  // base64 of random-looking bytes: as long as a PNG of that size would be.
  const picture = `data:image/png;base64,${Buffer.alloc(pictureKib * 768, 7).toString("base64")}`;
  for (let i = 0; i < 200; i++) {
    await store.insert(record({ status: "succeeded", completedAt: timestamp(), output: ["out-0.png"] }));
  }
  const jobTimestamp = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14);
  for (const [c, done] of [
    [0, 16],
    [1, 4],
  ] as const) {
    const call = { id: randomUUID(), timestamp: jobTimestamp, images: 16, steps: 20 };
    for (let i = 0; i < 16; i++) {
      const status = i < done ? "succeeded" : i === done ? "processing" : "starting";
      const logs = status === "succeeded" ? steps(20, 20) : status === "processing" ? steps(7, 20) : "";
      await store.insert(
        record({
          input: { prompt: `call ${c} image ${i}`, image: picture, mask: picture, prompt_strength: 0.75 },
          promptSyntax: "a1111",
          a1111: { strength: 0.75, call },
          status,
          logs,
          ...(status === "succeeded" ? { completedAt: timestamp(), output: ["out-0.png"] } : {}),
        }),
      );
    }
  }
}

/** The read a poll made before: the account's CALL_SEARCH newest predictions, whole. */
async function wholeRecords(store: PredictionStore): Promise<number> {
  const rows = await store.list({ account: ACCOUNT, limit: CALL_SEARCH + 1 });
  let bytes = 0;
  for (const p of rows) {
    lastStep(p.logs);
    bytes += JSON.stringify(p.input).length + p.logs.length;
  }
  return bytes;
}

async function glance(accounts: AccountState): Promise<number> {
  const calls = await callsInFlight(accounts, ACCOUNT);
  if (calls.length !== 1 || calls[0]?.jobs.length !== 16) throw new Error("the bench's state was not read back");
  const rows = await accounts.openA1111Glances(ACCOUNT, CALL_SEARCH);
  return rows.reduce((n, g) => n + g.logTail.length + JSON.stringify(g.a1111).length, 0);
}

async function measure(label: string, store: PredictionStore): Promise<void> {
  await fill(store);
  const accounts = new AccountState(store);
  report.heading(`${label}: 32 img2img predictions with a ${pictureKib} KiB picture and mask each`);
  for (const [read, fn] of [
    ["whole-records", () => wholeRecords(store)],
    ["glance", () => glance(accounts)],
  ] as const) {
    const bytes = await fn();
    const t = await timeRuns(fn, { warmup: 2, runs });
    report.emit(
      {
        figure: read,
        store: label,
        median_ms: round(t.median * 1000),
        min_ms: round(t.min * 1000),
        max_ms: round(t.max * 1000),
        bytes_read: bytes,
        other_cpus: t.otherCpus,
      },
      `${pad(read, LABEL)} median ${round(t.median * 1000)} ms (min ${round(t.min * 1000)}, max ${round(t.max * 1000)}), ${round(bytes / 2 ** 20, 3)} MiB read${t.otherCpus !== undefined ? `; other processes kept ${round(t.otherCpus, 2)} CPUs busy` : ""}`,
    );
  }
}

const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-progress-poll-"));
try {
  const sqlite = new SqlitePredictionStore(path.join(dir, "predictions.db"));
  await measure("sqlite", sqlite);
  await sqlite.close();
  const why = servicesUnavailable();
  if (why) report.note(`postgresql: skipped (${why})`);
  else {
    const db = await freshDatabase();
    const pgStore = await PostgresPredictionStore.open(db.url);
    try {
      await measure("postgresql", pgStore);
    } finally {
      await pgStore.close();
      await db.drop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
