/**
 * One token cannot fill the queue for everyone: past SDSERVE_QUEUE_MAX_PER_TOKEN unfinished
 * predictions its creates get a 429 that says so, while other tokens still get in (up to
 * SDSERVE_QUEUE_MAX in all).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, authHeaders, OTHER_TOKEN, type Sdserve, slowInput, startSdserve, VERSION } from "./server.js";

let server: Sdserve;
const created: { id: string; token?: string }[] = [];

before(async () => {
  server = await startSdserve({ env: { SDSERVE_QUEUE_MAX: "4", SDSERVE_QUEUE_MAX_PER_TOKEN: "2" } });
});
after(async () => {
  for (const p of created) {
    await api(server, "POST", `/v1/predictions/${p.id}/cancel`, undefined, authHeaders(p.token)).catch(() => undefined);
  }
  await server?.stop();
});

async function create(token?: string) {
  const r = await api(server, "POST", "/v1/predictions", { version: VERSION, input: slowInput() }, authHeaders(token));
  if (r.status === 201) created.push({ id: r.json["id"] as string, token });
  return r;
}

test("a token at its cap gets a 429 naming the per-token limit; another token still gets in", async () => {
  assert.equal((await create()).status, 201);
  assert.equal((await create()).status, 201);
  const over = await create();
  assert.equal(over.status, 429);
  assert.equal(over.headers.get("retry-after"), "10");
  assert.match(String(over.json["detail"]), /SDSERVE_QUEUE_MAX_PER_TOKEN/);
  assert.match(String(over.json["detail"]), /this token/i);

  assert.equal((await create(OTHER_TOKEN)).status, 201);
  assert.equal((await create(OTHER_TOKEN)).status, 201);
  // Now the whole queue is full too.
  const full = await create(OTHER_TOKEN);
  assert.equal(full.status, 429);

  // One of the first token's finishing (here: canceled) lets it create again.
  const first = created[0] as { id: string };
  assert.equal((await api(server, "POST", `/v1/predictions/${first.id}/cancel`)).status, 200);
  assert.equal((await create()).status, 201);
});
