/**
 * An S3-compatible server for the tests: s3rver (npm @20minutes/s3rver, a maintained fork of
 * jamhall/s3rver) on loopback, with one bucket, storing objects in a temporary folder. It checks
 * Signature V4 on every request, presigned query strings included (with their expiry), so a
 * wrongly signed request or URL fails here as it would on S3.
 *
 * Why this one: no MinIO, SeaweedFS or Garage server is packaged in Debian 12 or on npm; Debian's
 * Ceph RADOS Gateway (radosgw 16.2) is a real S3 implementation but needs a Ceph monitor and OSD
 * running beside it, and a single-node one did not come up reliably here; s3rver speaks the REST
 * API the AWS SDK uses (PUT/HEAD/GET object, ListObjectsV2, multi-object DELETE) with real
 * signature checks, in-process, in a second.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import S3rver from "@20minutes/s3rver";

export interface TestS3 {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The environment that points sdserve at it. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startS3(bucket = "sdserve-outputs"): Promise<TestS3> {
  const directory = mkdtempSync(path.join(os.tmpdir(), "sdserve-s3-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    allowMismatchedSignatures: false,
    configureBuckets: [{ name: bucket }],
  });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  // s3rver's fixed credentials.
  const accessKeyId = "S3RVER";
  const secretAccessKey = "S3RVER";
  return {
    endpoint,
    bucket,
    accessKeyId,
    secretAccessKey,
    env: {
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      S3_REGION: "us-east-1",
      S3_ACCESS_KEY_ID: accessKeyId,
      S3_SECRET_ACCESS_KEY: secretAccessKey,
    },
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
