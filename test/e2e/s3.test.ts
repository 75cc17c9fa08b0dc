/**
 * Outputs in S3-compatible storage (s3rver, which checks every signature): served through the API,
 * or as redirects to presigned URLs; retention deletes the objects; the openai route still inlines
 * the bytes (b64_json).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import OpenAI from "openai";
import { startS3, type TestS3 } from "../helpers/s3-server.js";
import { api, authHeaders, eventually, smallInput, startSdserve, TOKEN, VERSION } from "./server.js";

let s3: TestS3;
let client: S3Client;

before(async () => {
  s3 = await startS3();
  client = new S3Client({
    region: "us-east-1",
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  // s3rver signs bucket paths without the trailing slash (see src/server/files/s3.ts).
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { path?: string };
      if (request.path === `/${s3.bucket}/`) request.path = `/${s3.bucket}`;
      return next(args);
    },
    { step: "build" },
  );
});
after(async () => {
  client?.destroy();
  await s3?.close();
});

async function keys(prefix: string): Promise<string[]> {
  const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key as string);
}

test("outputs through the API from S3; retention deletes the objects", async () => {
  const server = await startSdserve({
    env: { ...s3.env, S3_PREFIX: "proxied", SDSERVE_OUTPUT_RETENTION: "3s" },
  });
  try {
    const r = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput({ num_outputs: 2 }) },
      {
        ...authHeaders(),
        Prefer: "wait=60",
      },
    );
    assert.equal(r.json["status"], "succeeded");
    const id = r.json["id"] as string;
    assert.deepEqual(await keys(`proxied/${id}/`), [`proxied/${id}/out-0.png`, `proxied/${id}/out-1.png`]);
    const url = (r.json["output"] as string[])[0] as string;
    assert.ok(url.startsWith(server.url));
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.deepEqual([...new Uint8Array(await res.arrayBuffer()).slice(1, 4)], [80, 78, 71]);

    // Past retention the URL says gone and the bucket holds nothing of this prediction.
    await eventually(async () => ((await fetch(url)).status === 410 ? true : undefined), "retention", {
      attempts: 100,
      intervalMs: 200,
    });
    await eventually(async () => ((await keys(`proxied/${id}/`)).length === 0 ? true : undefined), "the delete");
  } finally {
    await server.stop();
  }
});

test("presigned: the output URL redirects to a signed S3 URL; b64_json still has the bytes", async () => {
  const server = await startSdserve({ env: { ...s3.env, SDSERVE_OUTPUT_URLS: "presigned" } });
  try {
    const r = await api(
      server,
      "POST",
      "/v1/predictions",
      { version: VERSION, input: smallInput() },
      {
        ...authHeaders(),
        Prefer: "wait=60",
      },
    );
    const url = (r.json["output"] as string[])[0] as string;
    assert.ok(url.startsWith(server.url), "the output URL stays the API's");
    const redirect = await fetch(url, { redirect: "manual" });
    assert.equal(redirect.status, 302);
    const location = redirect.headers.get("location") as string;
    assert.ok(location.startsWith(`${s3.endpoint}/${s3.bucket}/`), location);
    assert.match(location, /X-Amz-Signature=/);
    const followed = await fetch(url);
    assert.equal(followed.status, 200);
    assert.equal(followed.headers.get("content-type"), "image/png");

    const openai = new OpenAI({ apiKey: TOKEN, baseURL: `${server.url}/v1` });
    const images = await openai.images.generate({
      prompt: "a fox",
      size: "256x256",
      response_format: "b64_json",
      // @ts-expect-error the model's own inputs may be added to the body
      num_inference_steps: 2,
    });
    const png = Buffer.from(images.data?.[0]?.b64_json ?? "", "base64");
    assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71]);
  } finally {
    await server.stop();
  }
});
