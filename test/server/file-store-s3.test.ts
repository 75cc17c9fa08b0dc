/**
 * The file store contract against S3 (s3rver, which checks every signature), plus presigned URLs:
 * a URL made for one object fetches it without credentials, and a tampered one is refused.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { S3FileStore } from "../../src/server/files/s3.js";
import { newPredictionId } from "../../src/server/predictions/ids.js";
import { startS3 } from "../helpers/s3-server.js";
import { fileStoreContract } from "./file-store-contract.js";

async function openS3(presign: boolean) {
  const s3 = await startS3();
  const files = new S3FileStore({
    bucket: s3.bucket,
    prefix: "outputs/",
    endpoint: s3.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    presign,
  });
  return {
    files,
    dispose: async () => {
      files.close();
      await s3.close();
    },
  };
}

fileStoreContract("S3 (s3rver)", () => openS3(false));

test("presigned URLs fetch the object without credentials; a tampered signature is refused", async () => {
  const { files, dispose } = await openS3(true);
  try {
    const id = newPredictionId();
    await files.put(id, "out-0.png", new Uint8Array([1, 2, 3]), "image/png");
    const url = await files.url(id, "out-0.png", 60);
    assert.ok(url);
    assert.match(url, /X-Amz-Signature=/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from([1, 2, 3]));
    const forged = url.replace(
      /X-Amz-Signature=([0-9a-f])/,
      (_m, c: string) => `X-Amz-Signature=${c === "0" ? "1" : "0"}`,
    );
    assert.equal((await fetch(forged)).status, 403);
  } finally {
    await dispose();
  }
});
