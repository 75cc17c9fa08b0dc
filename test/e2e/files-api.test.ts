/**
 * Replicate's Files API on the real server, with the real `replicate` client: replicate.run on
 * the img2img and inpainting models with Buffers (uploaded to POST /v1/files by the client) and
 * with data: URIs; files.create / list / get / delete; per-token isolation (another token's file:
 * 404, and as an input: a failed prediction saying so); hostile multipart bodies.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { decode, encode } from "fast-png";
import Replicate from "replicate";
import { api, OTHER_TOKEN, type Sdserve, startSdserve, TOKEN } from "./server.js";

const IMG2IMG = "stability-ai/stable-diffusion-img2img";
const INPAINT = "stability-ai/stable-diffusion-inpainting";

function png(width: number, height: number, fill = 128): Buffer {
  return Buffer.from(
    encode({ width, height, data: new Uint8Array(width * height * 3).fill(fill), channels: 3, depth: 8 }),
  );
}

let server: Sdserve;
let replicate: Replicate;
let other: Replicate;

before(async () => {
  server = await startSdserve();
  replicate = new Replicate({ auth: TOKEN, baseUrl: `${server.url}/v1` });
  other = new Replicate({ auth: OTHER_TOKEN, baseUrl: `${server.url}/replicate/v1` });
});
after(async () => {
  await server?.stop();
});

async function sizeOf(url: string): Promise<{ width: number; height: number }> {
  const res = await fetch(String(url));
  assert.equal(res.status, 200);
  const p = decode(new Uint8Array(await res.arrayBuffer()));
  return { width: p.width, height: p.height };
}

test("replicate.run on img2img with a Buffer: uploaded through the Files API, PNG of the picture's size", async () => {
  const output = (await replicate.run(IMG2IMG, {
    input: { prompt: "a cat", image: png(72, 40), num_inference_steps: 4, prompt_strength: 0.5 },
  })) as string[];
  assert.equal(output.length, 1);
  assert.deepEqual(await sizeOf(output[0] as string), { width: 72, height: 40 });
  // The client's upload is a file of this token's.
  const listed = await replicate.files.list();
  assert.ok(listed.results.some((f) => f.content_type === "image/png" && f.size > 0));
});

test("replicate.run on inpainting with Buffers and with data: URIs", async () => {
  for (const [image, mask] of [
    [png(64, 64), png(64, 64, 255)],
    [
      `data:image/png;base64,${png(64, 64).toString("base64")}`,
      `data:image/png;base64,${png(64, 64, 255).toString("base64")}`,
    ],
  ] as const) {
    const output = (await replicate.run(INPAINT, {
      input: { prompt: "a cat", image, mask, width: 128, height: 256, num_inference_steps: 2 },
    })) as string[];
    assert.deepEqual(await sizeOf(output[0] as string), { width: 128, height: 256 });
  }
});

test("files.create / get / list / delete, with Replicate's fields", async () => {
  const file = await replicate.files.create(png(8, 8), { purpose: "test", n: 1 });
  assert.match(file.id, /^[a-z0-9]+$/);
  assert.equal(file.content_type, "image/png");
  assert.equal(file.size, png(8, 8).length);
  assert.match(file.checksums.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(file.metadata, { purpose: "test", n: 1 });
  assert.ok(Date.parse(file.expires_at as string) > Date.parse(file.created_at));
  assert.equal(file.urls.get, `${server.url}/v1/files/${file.id}/download`);
  assert.deepEqual((await replicate.files.get(file.id)).checksums, file.checksums);
  const download = await fetch(file.urls.get, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(download.status, 200);
  assert.deepEqual(Buffer.from(await download.arrayBuffer()), png(8, 8));
  // Another token sees nothing of it.
  await assert.rejects(other.files.get(file.id), /404/);
  assert.equal((await fetch(file.urls.get, { headers: { Authorization: `Bearer ${OTHER_TOKEN}` } })).status, 404);
  assert.ok(!(await other.files.list()).results.some((f) => f.id === file.id));
  // As an input of another token's prediction: a failed prediction saying whose it is.
  const r = await api(
    server,
    "POST",
    `/v1/models/${IMG2IMG}/predictions`,
    { input: { prompt: "x", image: file.urls.get, num_inference_steps: 2 } },
    { Authorization: `Bearer ${OTHER_TOKEN}`, "Content-Type": "application/json", Prefer: "wait=60" },
  );
  assert.equal(r.json["status"], "failed");
  assert.match(String(r.json["error"]), /image: file [a-z0-9]+ belongs to another API token/);
  assert.equal((await api(server, "DELETE", `/v1/files/${file.id}`)).status, 204);
  assert.equal((await api(server, "GET", `/v1/files/${file.id}`)).status, 404);
  assert.equal((await api(server, "DELETE", `/v1/files/${file.id}`)).status, 404);
});

test("the python client's layout: a metadata field before the content part, and filename/type fields", async () => {
  const form = new FormData();
  form.append("metadata", JSON.stringify({ from: "python" }));
  form.append("filename", "picture.png");
  form.append("type", "image/png");
  form.append("content", new Blob([png(4, 4)], { type: "application/octet-stream" }), "upload");
  const res = await fetch(`${server.url}/replicate/v1/files`, {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}` },
    body: form,
  });
  assert.equal(res.status, 201);
  const file = (await res.json()) as Record<string, unknown>;
  assert.deepEqual(
    [file["name"], file["content_type"], file["metadata"]],
    ["picture.png", "image/png", { from: "python" }],
  );
  assert.match(String((file["urls"] as { get: string }).get), /\/replicate\/v1\/files\/[a-z0-9]+\/download$/);
});

test("hostile multipart bodies are 4xx problems", async () => {
  const post = (body: FormData | string, contentType?: string) =>
    fetch(`${server.url}/v1/files`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, ...(contentType ? { "Content-Type": contentType } : {}) },
      body,
    });
  const noContent = new FormData();
  noContent.append("other", new Blob([png(4, 4)]), "x.png");
  assert.equal((await post(noContent)).status, 422);
  const badMeta = new FormData();
  badMeta.append("content", new Blob([png(4, 4)]), "x.png");
  badMeta.append("metadata", "{not json");
  assert.equal((await post(badMeta)).status, 422);
  const tooMany = new FormData();
  for (let i = 0; i < 5; i++) tooMany.append("content", new Blob([png(4, 4)]), `x${i}.png`);
  assert.equal((await post(tooMany)).status, 413);
  const big = new FormData();
  big.append("content", new Blob([new Uint8Array(33 * 1024 * 1024)]), "big.bin");
  assert.equal((await post(big)).status, 413);
  // Cut off in the middle of a part, and no boundary at all.
  const cut = `--b\r\nContent-Disposition: form-data; name="content"; filename="a.png"\r\n\r\nabc`;
  const r = await post(cut, "multipart/form-data; boundary=b");
  assert.ok(r.status >= 400 && r.status < 500, String(r.status));
  assert.equal((await post("hello", "multipart/form-data")).status >= 400, true);
  assert.equal((await post("{}", "application/json")).status, 415);
  // The server is still fine.
  assert.equal((await api(server, "GET", "/v1/files")).status, 200);
});
