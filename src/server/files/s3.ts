/**
 * Output files in S3-compatible object storage (@aws-sdk/client-s3): <prefix><prediction id>/<name>,
 * so that every API node and worker reads what any worker wrote. The API serves them at their
 * capability URLs, either passing the bytes through or redirecting to a presigned GET URL
 * (`presign`), which takes the download off the API node. Retention deletes the objects.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { S3Settings } from "../../config.js";
import type { FileStore, StoredFile } from "./file-store.js";

export type { S3Settings };

/** Names are ours (out-0.png), but the route passes what a client typed: allow plain names only. */
function safeName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && !name.includes("..");
}

function notFound(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    (err.$metadata.httpStatusCode === 404 || err.name === "NotFound" || err.name === "NoSuchKey")
  );
}

export class S3FileStore implements FileStore {
  private readonly client: S3Client;

  constructor(private readonly settings: S3Settings) {
    this.client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle,
      credentials: settings.credentials,
      // Checksums only where the API requires them: S3-compatible servers differ on the newer ones.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    if (settings.forcePathStyle) {
      // A bucket-level request (ListObjectsV2) goes to "/bucket", not "/bucket/": S3 takes both, and
      // some S3-compatible servers (s3rver among them) sign the path without the trailing slash.
      this.client.middlewareStack.add(
        (next) => async (args) => {
          const request = args.request as { path?: string };
          if (request.path === `/${settings.bucket}/`) request.path = `/${settings.bucket}`;
          return next(args);
        },
        { step: "build", name: "bucketPathWithoutSlash" },
      );
    }
  }

  private key(predictionId: string, name: string): string {
    return `${this.settings.prefix}${predictionId}/${name}`;
  }

  async put(predictionId: string, name: string, data: Uint8Array, contentType: string): Promise<void> {
    if (!safeName(name)) throw new Error(`bad output file name ${JSON.stringify(name)}`);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.settings.bucket,
        Key: this.key(predictionId, name),
        Body: data,
        ContentType: contentType,
        ContentLength: data.byteLength,
      }),
    );
  }

  async get(predictionId: string, name: string): Promise<StoredFile | undefined> {
    if (!safeName(name)) return undefined;
    const Key = this.key(predictionId, name);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key }));
      return {
        size: head.ContentLength ?? 0,
        contentType: head.ContentType ?? "application/octet-stream",
        read: async () => {
          const object = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key }));
          if (!object.Body) throw new Error(`s3: ${Key} has no body`);
          return object.Body.transformToByteArray();
        },
      };
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
  }

  async url(predictionId: string, name: string, expiresInSeconds: number): Promise<string | undefined> {
    if (!this.settings.presign || !safeName(name)) return undefined;
    return getSignedUrl(
      this.client,
      new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(predictionId, name) }),
      { expiresIn: Math.max(1, Math.floor(expiresInSeconds)) },
    );
  }

  async removeAll(predictionId: string): Promise<void> {
    const Prefix = `${this.settings.prefix}${predictionId}/`;
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix, ContinuationToken }),
      );
      // One DELETE per object (a prediction has at most four): every S3-compatible server has it,
      // where multi-object delete's checksum rules vary between servers.
      for (const o of page.Contents ?? []) {
        if (o.Key) await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: o.Key }));
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  close(): void {
    this.client.destroy();
  }
}
