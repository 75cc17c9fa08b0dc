/**
 * What every FileStore promises, run against local disk (file-store-disk.test.ts) and S3
 * (file-store-s3.test.ts): bytes and content type back as written, a second put replaces, plain
 * names only, and removeAll takes every file of one prediction and none of another's.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FileStore } from "../../src/server/files/file-store.js";
import { newPredictionId } from "../../src/server/predictions/ids.js";

export function fileStoreContract(
  label: string,
  open: () => Promise<{ files: FileStore; dispose(): Promise<void> }>,
): void {
  describe(`FileStore contract: ${label}`, () => {
    let files: FileStore;
    let dispose: () => Promise<void>;
    before(async () => {
      ({ files, dispose } = await open());
    });
    after(async () => {
      await dispose?.();
    });

    test("put, then get: size, content type and bytes; a second put replaces", async () => {
      const id = newPredictionId();
      const png = new Uint8Array([137, 80, 78, 71, 1, 2, 3]);
      await files.put(id, "out-0.png", png, "image/png");
      const got = await files.get(id, "out-0.png");
      assert.equal(got?.size, png.length);
      assert.equal(got?.contentType, "image/png");
      assert.deepEqual(Buffer.from((await got?.read()) ?? []), Buffer.from(png));
      await files.put(id, "out-0.png", new Uint8Array([9]), "image/png");
      assert.deepEqual(Buffer.from((await (await files.get(id, "out-0.png"))?.read()) ?? []), Buffer.from([9]));
    });

    test("missing files and unsafe names are not found; unsafe names are not written", async () => {
      const id = newPredictionId();
      assert.equal(await files.get(id, "out-0.png"), undefined);
      assert.equal(await files.get(id, "../etc/passwd"), undefined);
      await assert.rejects(files.put(id, "../x.png", new Uint8Array([1]), "image/png"));
    });

    test("removeAll removes every file of one prediction only", async () => {
      const a = newPredictionId();
      const b = newPredictionId();
      for (const name of ["out-0.png", "out-1.png"]) await files.put(a, name, new Uint8Array([1]), "image/png");
      await files.put(b, "out-0.png", new Uint8Array([2]), "image/png");
      await files.removeAll(a);
      assert.equal(await files.get(a, "out-0.png"), undefined);
      assert.equal(await files.get(a, "out-1.png"), undefined);
      assert.ok(await files.get(b, "out-0.png"));
      await files.removeAll(newPredictionId());
    });
  });
}
