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

test("NUL characters in ids, list filters, keys and webhooks on PostgreSQL: 4xx or nothing found, never a 500", {
  skip,
}, async () => {
  const server = await startSdserve({ env: { DATABASE_URL: db?.url as string } });
  try {
    const created = await api(server, "POST", "/v1/predictions", {
      version: VERSION,
      input: smallInput({ prompt: "a\u0000b" }),
    });
    assert.equal(created.status, 201);
    const got = await finished(server, created.json["id"] as string);
    assert.equal((got["input"] as Record<string, unknown>)["prompt"], "a\u0000b");
    for (const route of [
      "/v1/predictions?model=%00",
      "/v1/predictions?model=stability-ai%2Fstable-diffusion%00",
      "/v1/predictions?version=%00",
      "/v1/predictions/%00",
      `/v1/predictions/${created.json["id"]}%00`,
      "/v1/predictions/%00/webhook_deliveries",
      "/v1/streams/%00",
      "/v1/files/%00/out-0.png",
    ]) {
      const r = await api(server, "GET", route);
      assert.ok(r.status < 500, `${route}: ${r.status} ${JSON.stringify(r.json)}`);
      if (r.status === 200) assert.deepEqual(r.json["results"], [], route);
    }
    const cancel = await api(server, "POST", "/v1/predictions/%00/cancel");
    assert.equal(cancel.status, 404);
    const hook = await api(server, "POST", "/v1/predictions", {
      version: VERSION,
      input: smallInput(),
      webhook: "https://example.org/a\u0000b",
    });
    assert.equal(hook.status, 422, JSON.stringify(hook.json));
  } finally {
    await server.stop();
  }
});
