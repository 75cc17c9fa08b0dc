/**
 * File inputs without the server around them: what is refused at create, data: URIs, each
 * redirect re-checked against the SSRF rules, bounded fetches, uploads read inside, and the
 * Files API's expiry on a real SQLite store and disk file store.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { DiskFileStore } from "../../src/server/files/disk.js";
import {
  allowedHostEntry,
  FileInputError,
  fileInputProblem,
  mayBeInternal,
  redirectTarget,
  resolveFileInput,
} from "../../src/server/files/file-inputs.js";
import { Uploads } from "../../src/server/files/uploads.js";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-file-inputs-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let site: http.Server;
let base: string;
before(async () => {
  site = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/loop") res.writeHead(302, { Location: "/loop" }).end();
    else if (url.pathname === "/to-file") res.writeHead(302, { Location: "file:///etc/passwd" }).end();
    else if (url.pathname === "/big") res.writeHead(200, { "Content-Length": "5000" }).end(Buffer.alloc(5000));
    else if (url.pathname === "/chunked") {
      res.writeHead(200);
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(1000));
      res.end();
    } else if (url.pathname === "/stall")
      res.writeHead(200).write("x"); // never ends
    else if (url.pathname === "/ok") res.writeHead(200).end("bytes");
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
});
after(() => {
  site.closeAllConnections();
  site.close();
});

test("what cannot ever be fetched is known at create", () => {
  for (const [value, why] of [
    [42, /must be a URL/],
    ["ftp://example.com/a.png", /scheme ftp/],
    ["file:///etc/passwd", /scheme file/],
    ["javascript:alert(1)", /not a valid URL|scheme javascript/],
    ["data:image/png;base64,@@", /invalid base64/],
    ["data:image/png;base64", /not a well-formed data: URI/],
    ["data:image/png;base64,", /empty data: URI/],
    ["https://user:pw@example.com/a.png", /user name or password/],
    ["a".repeat(10), /not a valid URL/],
  ] as const) {
    assert.match(fileInputProblem(value) ?? "", why, String(value));
  }
  for (const ok of [
    "https://example.com/a.png",
    "HTTP://example.com/a",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:,x",
  ]) {
    assert.equal(fileInputProblem(ok), undefined, ok);
  }
});

test("data: URIs: base64 and percent-encoded, bounded in size", async () => {
  const opts = { allowPrivate: false };
  assert.deepEqual(
    Buffer.from(await resolveFileInput("data:image/png;base64,AAEC", "image", "a", opts)),
    Buffer.from([0, 1, 2]),
  );
  assert.equal(Buffer.from(await resolveFileInput("data:,a%20b", "image", "a", opts)).toString(), "a b");
  await assert.rejects(
    resolveFileInput(`data:;base64,${"A".repeat(4000)}`, "image", "a", { ...opts, maxBytes: 100 }),
    /image: is over 100 bytes/,
  );
});

test("every redirect is checked as the first URL was", () => {
  const from = new URL("https://pictures.example.com/cat.png");
  for (const target of [
    "http://127.0.0.1/secret",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/",
    "http://[::ffff:10.0.0.1]/",
    "http://10.1.2.3/",
    "http://0x7f000001/",
    "http://localhost:9000/",
  ]) {
    assert.throws(
      () => redirectTarget(from, target, "image", false),
      (err: unknown) => err instanceof FileInputError && /image: .* internal address/.test(err.message),
      target,
    );
    assert.equal(redirectTarget(from, target, "image", true).href, new URL(target).href);
  }
  assert.throws(() => redirectTarget(from, "file:///etc/passwd", "image", true), /only http and https are followed/);
  assert.equal(redirectTarget(from, "/dog.png", "image", false).href, "https://pictures.example.com/dog.png");
});

test("SDSERVE_ALLOWED_URL_HOSTS entries: a host or host:port, normalised as URLs are", () => {
  for (const [entry, want] of [
    ["images.internal", "images.internal"],
    ["Images.Internal.:8080", "images.internal:8080"],
    ["127.1:9000", "127.0.0.1:9000"],
    ["0x7f000001", "127.0.0.1"],
    ["[::1]:80", "[::1]:80"],
    ["[::1]", "[::1]"],
    ["10.0.0.5:443", "10.0.0.5:443"],
  ] as const) {
    assert.equal(allowedHostEntry(entry), want, entry);
  }
  for (const bad of ["", "::1", "http://x", "x/y", "user@x", "x:0", "x:65536", "x:", "x?y", "a b"]) {
    assert.equal(allowedHostEntry(bad), undefined, bad);
  }
  const opts = { allowPrivate: false, allowHosts: ["127.0.0.1:9000", "images.internal"] };
  assert.equal(mayBeInternal(new URL("http://127.0.0.1:9000/a.png"), opts), true);
  assert.equal(mayBeInternal(new URL("http://127.1:9000/a.png"), opts), true);
  assert.equal(mayBeInternal(new URL("http://127.0.0.1:9001/a.png"), opts), false);
  assert.equal(mayBeInternal(new URL("http://127.0.0.1/a.png"), opts), false);
  assert.equal(mayBeInternal(new URL("https://IMAGES.internal:8443/a.png"), opts), true);
  assert.equal(mayBeInternal(new URL("http://images.internal.evil.example/a.png"), opts), false);
  assert.equal(mayBeInternal(new URL("http://a.images.internal/a.png"), opts), false);
  assert.equal(mayBeInternal(new URL("http://[::1]:9000/a.png"), opts), false);
  // A port-less entry is any port; the default port counts as given.
  assert.equal(
    mayBeInternal(new URL("http://x.internal/a"), { allowPrivate: false, allowHosts: ["x.internal:80"] }),
    true,
  );
  // A redirect from an allowed host is checked on its own target.
  assert.throws(
    () => redirectTarget(new URL("http://127.0.0.1:9000/a"), "http://127.0.0.1:9001/secret", "image", opts),
    /image: 127\.0\.0\.1 is a loopback, private/,
  );
  assert.throws(() => redirectTarget(new URL("http://127.0.0.1:9000/a"), "http://169.254.169.254/", "image", opts));
  assert.equal(redirectTarget(new URL("http://127.0.0.1:9000/a"), "/b", "image", opts).href, "http://127.0.0.1:9000/b");
});

test("fetches are bounded: redirects, size, time", async () => {
  const opts = { allowPrivate: true, maxBytes: 4096, timeoutMs: 300 };
  assert.equal(Buffer.from(await resolveFileInput(`${base}/ok`, "image", "a", opts)).toString(), "bytes");
  await assert.rejects(resolveFileInput(`${base}/loop`, "image", "a", opts), /redirected more than 5 times/);
  await assert.rejects(resolveFileInput(`${base}/to-file`, "image", "a", opts), /only http and https/);
  await assert.rejects(resolveFileInput(`${base}/big`, "image", "a", opts), /5000 bytes, over the limit of 4096/);
  await assert.rejects(resolveFileInput(`${base}/chunked`, "image", "a", opts), /over the limit of 4096 bytes/);
  await assert.rejects(resolveFileInput(`${base}/stall`, "image", "a", opts), /took too long/);
  await assert.rejects(
    resolveFileInput(`${base}/nothing`, "mask", "a", opts),
    /mask: fetching the URL answered HTTP 404/,
  );
  await assert.rejects(
    resolveFileInput("http://127.0.0.1:1/x.png", "image", "a", { allowPrivate: true }),
    /image: the URL could not be fetched/,
  );
  // The same local server without the setting: refused before connecting.
  await assert.rejects(
    resolveFileInput(`${base}/ok`, "image", "a", { allowPrivate: false }),
    /SDSERVE_ALLOW_PRIVATE_URLS/,
  );
});

test("uploads: read inside for their own token, refused for another, gone once expired and swept", async () => {
  const store = new SqlitePredictionStore(path.join(dir, "db.sqlite"));
  const files = new DiskFileStore(path.join(dir, "files"));
  try {
    const uploads = new Uploads(store, files, 60_000);
    const u = await uploads.create("alice", {
      name: "a.png",
      contentType: "image/png",
      data: Buffer.from("png!"),
      metadata: {},
    });
    const url = `http://anything.example/v1/files/${u.id}/download`;
    const opts = { allowPrivate: false, ownFile: uploads.reader };
    assert.equal(Buffer.from(await resolveFileInput(url, "image", "alice", opts)).toString(), "png!");
    await assert.rejects(
      resolveFileInput(url, "image", "bob", opts),
      /image: file [a-z0-9]+ belongs to another API token/,
    );
    assert.equal(await uploads.get("bob", u.id), undefined);

    const shortLived = new Uploads(store, files, 1);
    const gone = await shortLived.create("alice", {
      name: "b.png",
      contentType: "image/png",
      data: Buffer.from("x"),
      metadata: null,
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await shortLived.get("alice", gone.id), undefined);
    assert.equal(await shortLived.sweep(), 1);
    assert.equal(await store.getUpload(gone.id), undefined);
    assert.equal(await files.get(`upload-${gone.id}`, "content"), undefined);
    assert.ok(await store.getUpload(u.id));
  } finally {
    await store.close();
  }
});
