/**
 * sdserve serve on PostgreSQL (DATABASE_URL): the API behaves as on SQLite — the replicate client
 * runs a prediction, the list pages with both cursors, tokens see only their own — and after
 * kill -9 a restart on the same database runs what was queued.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Replicate from "replicate";
import { freshDatabase, servicesUnavailable } from "../helpers/services.js";
import {
  api,
  authHeaders,
  eventually,
  newDataDir,
  OTHER_TOKEN,
  type Sdserve,
  smallInput,
  startSdserve,
  TOKEN,
  VERSION,
} from "./server.js";

const skip = servicesUnavailable();
let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;

before(async () => {
  if (!skip) db = await freshDatabase();
});
after(async () => {
  await db?.drop();
});

async function finished(server: Sdserve, id: string, token = TOKEN): Promise<Record<string, unknown>> {
  return eventually(async () => {
    const r = await api(server, "GET", `/v1/predictions/${id}`, undefined, authHeaders(token));
    return ["succeeded", "failed", "canceled"].includes(r.json["status"] as string) ? r.json : undefined;
  }, `prediction ${id} to finish`);
}

test("predictions, pagination and isolation on PostgreSQL; kill -9 and the queue survives", { skip }, async () => {
  const dataDir = newDataDir();
  const env = { DATABASE_URL: db?.url as string };
  const first = await startSdserve({ dataDir, env });
  const ids: string[] = [];
  try {
    assert.match(first.output(), /postgres: applied migration 1/);
    const replicate = new Replicate({ auth: TOKEN, baseUrl: `${first.url}/v1` });
    const [url] = (await replicate.run("stability-ai/stable-diffusion", {
      input: smallInput(),
    })) as unknown as string[];
    assert.equal((await fetch(String(url))).status, 200);

    for (let i = 0; i < 4; i++) {
      const r = await api(first, "POST", "/v1/predictions", { version: VERSION, input: smallInput({ seed: i }) });
      assert.equal(r.status, 201);
      ids.push(r.json["id"] as string);
    }
    // Another token sees none of them.
    assert.equal(
      (await api(first, "GET", `/v1/predictions/${ids[0]}`, undefined, authHeaders(OTHER_TOKEN))).status,
      404,
    );
    assert.deepEqual(
      (await api(first, "GET", "/v1/predictions", undefined, authHeaders(OTHER_TOKEN))).json["results"],
      [],
    );

    // Newest first, two at a time, forward and back again.
    const seen: string[] = [];
    let next: string | null = "/v1/predictions?page_size=2";
    const pages: Record<string, unknown>[] = [];
    while (next) {
      const page = (await api(first, "GET", next)).json;
      pages.push(page);
      seen.push(...(page["results"] as { id: string }[]).map((p) => p.id));
      next = page["next"] as string | null;
    }
    assert.equal(seen.length, 5);
    assert.deepEqual(seen.slice(0, 4), [...ids].reverse());
    const previous = (pages[1] as Record<string, unknown>)["previous"] as string;
    const back = (await api(first, "GET", previous)).json;
    assert.deepEqual(
      (back["results"] as { id: string }[]).map((p) => p.id),
      seen.slice(0, 2),
    );
  } finally {
    await first.kill();
  }

  // The database kept the queue: a new process on it runs whatever had not finished.
  const second = await startSdserve({ dataDir, env });
  try {
    for (const id of ids) assert.equal((await finished(second, id))["status"], "succeeded", id);
    assert.doesNotMatch(second.output(), /applied migration/);
  } finally {
    await second.stop();
  }
});
