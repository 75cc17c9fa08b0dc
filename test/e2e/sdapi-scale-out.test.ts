/**
 * /sdapi/v1's account state where sdserve runs as several processes, or restarts: the checkpoint
 * chosen through /options is kept in the store, so a restart keeps it (SQLite) and another node
 * sharing PostgreSQL sees it; a call running on one node is seen by /progress and stopped by
 * /interrupt on another. A checkpoint no longer served falls back to the default, and says so.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { startS3 } from "../helpers/s3-server.js";
import { freshDatabase, redisForTest, servicesUnavailable } from "../helpers/services.js";
import { api, eventually, newDataDir, OTHER_TOKEN, type Sdserve, startSdserve, TOKEN } from "./server.js";

const DEFAULT_MODEL = "stability-ai/stable-diffusion";
const OTHER_MODEL = "sdserve-test/other";
const running: Sdserve[] = [];
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
});

function basic(token: string): Record<string, string> {
  // Any user name with a token as the password: that token's account (as Open WebUI's auth field sends it).
  return {
    Authorization: `Basic ${Buffer.from(`user:${token}`).toString("base64")}`,
    "Content-Type": "application/json",
  };
}
const ALICE = basic(TOKEN);
const BOB = basic(OTHER_TOKEN);

/** A models file serving the default model and, unless told, the other one. */
function modelsFile(dir: string, withOther = true): string {
  const file = path.join(dir, withOther ? "models.json" : "models-default-only.json");
  const models: Record<string, unknown> = { [DEFAULT_MODEL]: { weights: "tiny-random" } };
  if (withOther) models[OTHER_MODEL] = { weights: "tiny-random" };
  writeFileSync(file, JSON.stringify({ models }));
  return file;
}

async function start(opts: { dataDir?: string; models: string; env?: Record<string, string> }): Promise<Sdserve> {
  const p = await startSdserve({ ...opts, args: ["--models", opts.models] });
  running.push(p);
  return p;
}
async function stop(p: Sdserve): Promise<void> {
  await p.stop();
  running.splice(running.indexOf(p), 1);
}

const checkpoint = async (node: Sdserve, auth: Record<string, string>) =>
  (await api(node, "GET", "/sdapi/v1/options", undefined, auth)).json;
const titleOf = async (node: Sdserve, name: string) => {
  const models = (await api(node, "GET", "/sdapi/v1/sd-models", undefined, ALICE)).json as unknown as {
    title: string;
    model_name: string;
  }[];
  return models.find((m) => m.model_name === name)?.title as string;
};
/** The model a small txt2img ran on (info.sd_model_name). */
async function madeWith(node: Sdserve, auth: Record<string, string>): Promise<string> {
  const res = await api(
    node,
    "POST",
    "/sdapi/v1/txt2img",
    { prompt: "a lighthouse", width: 128, height: 128, steps: 2, seed: 5 },
    auth,
  );
  assert.equal(res.status, 200, JSON.stringify(res.json));
  return JSON.parse(res.json["info"] as string)["sd_model_name"] as string;
}

test("the checkpoint chosen survives a restart; one no longer served falls back to the default, and comes back", async () => {
  const dataDir = newDataDir();
  const both = modelsFile(dataDir);
  let node = await start({ dataDir, models: both });
  const other = await titleOf(node, OTHER_MODEL);
  assert.equal((await api(node, "POST", "/sdapi/v1/options", { sd_model_checkpoint: other }, ALICE)).status, 200);
  await stop(node);

  node = await start({ dataDir, models: both });
  assert.equal((await checkpoint(node, ALICE))["sd_model_checkpoint"], other);
  assert.equal(await madeWith(node, ALICE), OTHER_MODEL);
  // Another account keeps the default.
  assert.equal(await madeWith(node, BOB), DEFAULT_MODEL);
  await stop(node);

  // The operator stops serving it: the default is used, and /options says why.
  node = await start({ dataDir, models: modelsFile(dataDir, false) });
  const fallback = await checkpoint(node, ALICE);
  assert.equal(fallback["sd_model_checkpoint"], await titleOf(node, DEFAULT_MODEL));
  assert.match(fallback["sdserve_checkpoint_notice"] as string, new RegExp(`${OTHER_MODEL}, is not served now`));
  assert.equal(await madeWith(node, ALICE), DEFAULT_MODEL);
  assert.equal("sdserve_checkpoint_notice" in (await checkpoint(node, BOB)), false);
  await stop(node);

  // Served again: the choice is back.
  node = await start({ dataDir, models: both });
  const back = await checkpoint(node, ALICE);
  assert.equal(back["sd_model_checkpoint"], other);
  assert.equal("sdserve_checkpoint_notice" in back, false);
  await stop(node);
});

const skip = servicesUnavailable();

test("two nodes on one PostgreSQL and Redis: a switch on one is the other's; /progress and /interrupt reach a call on the other", {
  skip,
}, async () => {
  const db = await freshDatabase();
  // Outputs in S3: either node's worker may make the other's images.
  const s3 = await startS3();
  try {
    const redis = redisForTest();
    const env = { DATABASE_URL: db.url, REDIS_URL: redis.url, SDSERVE_REDIS_PREFIX: redis.prefix, ...s3.env };
    const models = modelsFile(newDataDir());
    const [a, b] = await Promise.all([start({ models, env }), start({ models, env })]);
    const other = await titleOf(a, OTHER_MODEL);

    // Open WebUI's switch (the whole options object back) on node A; GET /options and txt2img on node B.
    const options = await checkpoint(a, ALICE);
    const set = await api(a, "POST", "/sdapi/v1/options", { ...options, sd_model_checkpoint: other }, ALICE);
    assert.equal(set.status, 200);
    assert.equal((await checkpoint(b, ALICE))["sd_model_checkpoint"], other);
    assert.equal(await madeWith(b, ALICE), OTHER_MODEL);
    // Another account is unaffected, on either node.
    assert.equal((await checkpoint(b, BOB))["sd_model_checkpoint"], await titleOf(b, DEFAULT_MODEL));
    assert.equal(await madeWith(a, BOB), DEFAULT_MODEL);

    // A slow call through node A; node B's /progress follows it and node B's /interrupt stops it.
    const generation = api(
      a,
      "POST",
      "/sdapi/v1/txt2img",
      { prompt: "a slow one", width: 512, height: 512, steps: 500, batch_size: 2, seed: 1 },
      ALICE,
    );
    const seen = await eventually(
      async () => {
        const r = await api(b, "GET", "/sdapi/v1/progress", undefined, ALICE);
        const state = r.json["state"] as Record<string, number>;
        return (state["sampling_step"] ?? 0) > 0 ? r.json : undefined;
      },
      "node B's /progress to see node A's call sampling",
      { attempts: 1200, intervalMs: 100 },
    );
    const state = seen["state"] as Record<string, unknown>;
    assert.equal(state["job_count"], 2);
    assert.equal(state["job_no"], 0);
    assert.equal(state["sampling_steps"], 500);
    assert.match(state["job_timestamp"] as string, /^\d{14}$/);
    assert.ok((seen["progress"] as number) > 0 && (seen["progress"] as number) < 0.5);
    assert.match(seen["textinfo"] as string, /^Sampling step \d+\/500$/);
    // Bob sees nothing of it on either node, and his /interrupt stops nothing.
    assert.equal(
      ((await api(b, "GET", "/sdapi/v1/progress", undefined, BOB)).json["state"] as Record<string, unknown>)[
        "job_count"
      ],
      0,
    );
    await api(b, "POST", "/sdapi/v1/interrupt", undefined, BOB);
    assert.equal(
      ((await api(a, "GET", "/sdapi/v1/progress", undefined, ALICE)).json["state"] as Record<string, unknown>)[
        "job_count"
      ],
      2,
    );

    // /skip on node B stops the image being made; the call goes on to the next.
    assert.equal((await api(b, "POST", "/sdapi/v1/skip", undefined, ALICE)).status, 200);
    await eventually(
      async () => {
        const r = await api(b, "GET", "/sdapi/v1/progress", undefined, ALICE);
        return (r.json["state"] as Record<string, number>)["job_no"] === 1 ? true : undefined;
      },
      "the skipped image counted done",
      { attempts: 600, intervalMs: 100 },
    );
    assert.equal((await api(b, "POST", "/sdapi/v1/interrupt", undefined, ALICE)).status, 200);
    const res = await generation;
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.deepEqual(res.json["images"], []);
    const idle = await api(b, "GET", "/sdapi/v1/progress", undefined, ALICE);
    assert.equal((idle.json["state"] as Record<string, unknown>)["job_count"], 0);

    // A node restarted (or a new one) still has the account's checkpoint.
    await stop(b);
    const c = await start({ models, env });
    assert.equal((await checkpoint(c, ALICE))["sd_model_checkpoint"], other);
  } finally {
    await Promise.all(running.splice(0).map((p) => p.stop()));
    await s3.close();
    await db.drop();
  }
});
