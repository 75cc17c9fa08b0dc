/**
 * tar.ts and weights-inputs.ts: Replicate's LoRA tarballs as GNU tar and pax writers make them,
 * and hostile ones (truncated, a wrong checksum, sizes past the end or past 2^53, path
 * traversal, no lora.safetensors, not a tar at all) → a FileInputError naming the input, never
 * a crash; the on-disk cache by content hash, remembered URLs, and its bound.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { encodeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { FileInputError } from "../../src/server/files/file-inputs.js";
import { isUnsafeName, MAX_TAR_HEADERS, readTar } from "../../src/server/files/tar.js";
import { looksLikeSafetensors, unpackWeights, WeightsCache } from "../../src/server/files/weights-inputs.js";
import { ReplacedPromptTooLong, replaceSpecialParams } from "../../src/server/models/sdxl.js";
import { gnuTar as makeTar } from "../helpers/tar.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "sdserve-weights-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const LORA = encodeSafetensors([
  {
    name: "down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
    dtype: "F32",
    shape: [2, 4],
    data: Float32Array.from({ length: 8 }, (_, i) => i / 10),
  },
]);

const gnuTar = (files: Record<string, Uint8Array | string>, format: "gnu" | "pax" = "gnu") =>
  makeTar(tmp, files, format);

/** One hand-made ustar header (for what no tar tool writes): the checksum right unless told otherwise. */
function header(name: string, size: number | Uint8Array, type = "0", badChecksum = false): Uint8Array {
  const h = new Uint8Array(512);
  h.set(Buffer.from(name), 0);
  h.set(Buffer.from("0000644\0"), 100);
  if (typeof size === "number") h.set(Buffer.from(`${size.toString(8).padStart(11, "0")}\0`), 124);
  else h.set(size, 124);
  h[156] = type.charCodeAt(0);
  h.set(Buffer.from("ustar\0" + "00"), 257);
  h.fill(32, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0) + (badChecksum ? 1 : 0);
  h.set(Buffer.from(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  return h;
}
/** cog-sdxl's embeddings.pti: two tokens' vectors for each text encoder. */
const PTI = encodeSafetensors([
  { name: "text_encoders_0", dtype: "F32", shape: [2, 4], data: new Float32Array(8).fill(0.5) },
  { name: "text_encoders_1", dtype: "F32", shape: [2, 6], data: new Float32Array(12).fill(-0.5) },
]);
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const padded = (data: Uint8Array) => concat(data, new Uint8Array((512 - (data.length % 512)) % 512));

const fails = (bytes: Uint8Array, pattern: RegExp) =>
  assert.throws(
    () => unpackWeights(bytes, "replicate_weights"),
    (err: Error) =>
      err instanceof FileInputError && /^replicate_weights: /.test(err.message) && pattern.test(err.message),
  );

describe("unpacking replicate_weights", () => {
  test("a .safetensors LoRA is taken as it is", () => {
    assert.ok(looksLikeSafetensors(LORA));
    const { lora, notes } = unpackWeights(LORA, "replicate_weights");
    assert.equal(lora, LORA);
    assert.deepEqual(notes, []);
  });

  test("Replicate's trained-LoRA tar (GNU and pax formats): lora.safetensors, embeddings.pti, special_params.json", () => {
    for (const format of ["gnu", "pax"] as const) {
      const tar = gnuTar(
        {
          "lora.safetensors": LORA,
          "embeddings.pti": PTI,
          "special_params.json": JSON.stringify({ TOK: "<s0><s1>", "[style]": "<s1>" }),
        },
        format,
      );
      const { lora, notes, trainedTokens } = unpackWeights(tar, "replicate_weights");
      assert.deepEqual(Buffer.from(lora), Buffer.from(LORA), format);
      assert.deepEqual(notes, []);
      assert.deepEqual(Buffer.from(trainedTokens?.embeddings ?? []), Buffer.from(PTI));
      assert.deepEqual(trainedTokens?.tokenMap, [
        ["TOK", "<s0><s1>"],
        ["[style]", "<s1>"],
      ]);
    }
  });

  test("trained tokens that cannot be used: a clear error naming replicate_weights", () => {
    const tar = (params: string | undefined, pti: Uint8Array | null = PTI) =>
      gnuTar({
        "lora.safetensors": LORA,
        ...(pti ? { "embeddings.pti": pti } : {}),
        ...(params === undefined ? {} : { "special_params.json": params }),
      });
    fails(tar(undefined), /holds embeddings\.pti but no special_params\.json/);
    fails(tar('{"TOK": "<s0>"}', null), /holds special_params\.json but no embeddings\.pti/);
    fails(tar("TOK = <s0><s1>"), /special_params\.json in the tar archive is not JSON/);
    fails(tar("\xff\xfe{}"), /special_params\.json in the tar archive is not JSON/);
    fails(tar('["TOK", "<s0>"]'), /is not a JSON object/);
    fails(tar('{"TOK": 3}'), /maps "TOK" to a number, not a string/);
    fails(tar('{"": "<s0>"}'), /has an empty key/);
    fails(tar(JSON.stringify({ TOK: "<s0>".repeat(1000) })), /longer than 1000 characters/);
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`T${i}`, "<s0>"]));
    fails(tar(JSON.stringify(many)), /has 300 entries; at most 64/);
    fails(tar(JSON.stringify({ TOK: "x".repeat(900) }).repeat(200)), /is too large/);
    fails(
      tar('{"TOK": "<s0>"}', new Uint8Array(Buffer.from("not safetensors"))),
      /embeddings\.pti .* not a safetensors/,
    );
  });

  test("prompts take special_params' replacements in order, bounded in length", () => {
    assert.equal(replaceSpecialParams("a photo of TOK, TOK", [["TOK", "<s0><s1>"]]), "a photo of <s0><s1>, <s0><s1>");
    assert.equal(
      replaceSpecialParams("A B", [
        ["A", "B"],
        ["B", "<s0>"],
      ]),
      "<s0> <s0>",
      "each replacement sees the ones before, as str.replace in a loop",
    );
    // Doubling 64 times would be 2^64 characters: refused before the string is built.
    const doubling = Array.from({ length: 64 }, (_, i) => [i % 2 ? "b" : "a", i % 2 ? "aa" : "bb"] as [string, string]);
    assert.throws(() => replaceSpecialParams("a", doubling), ReplacedPromptTooLong);
    assert.throws(
      () => replaceSpecialParams("x".repeat(10_000), [["x", "y".repeat(1000)]]),
      /prompt grows past 100000 characters/,
    );
  });

  test("long member names (GNU ././@LongLink, pax path) and ./ prefixes", () => {
    const long = `${"d".repeat(120)}/x.bin`;
    for (const format of ["gnu", "pax"] as const) {
      const names = readTar(gnuTar({ [long]: "x", "lora.safetensors": LORA }, format)).map((m) => m.name);
      assert.ok(names.includes(long), `${format}: ${names.join(", ")}`);
    }
    const dotted = concat(header("./lora.safetensors", LORA.length), padded(LORA), new Uint8Array(1024));
    assert.deepEqual(Buffer.from(unpackWeights(dotted, "replicate_weights").lora), Buffer.from(LORA));
  });

  test("a tar without lora.safetensors names what it holds; a full-UNet tar is refused by name", () => {
    fails(
      gnuTar({ "readme.txt": "hi", "weights.bin": "x" }),
      /holds no lora\.safetensors \(it has readme\.txt, weights\.bin\)/,
    );
    fails(gnuTar({ "unet.safetensors": LORA }), /unet\.safetensors \(a fully fine-tuned UNet\)/);
    fails(new Uint8Array(concat(new Uint8Array(0), header("empty", 0, "5"), new Uint8Array(1024))), /no lora/);
  });

  test("a lora.safetensors that is not safetensors", () => {
    fails(gnuTar({ "lora.safetensors": "not a safetensors file at all" }), /not a safetensors file/);
  });

  test("truncated archives: cut in a header, cut in a member's data", () => {
    const tar = gnuTar({ "lora.safetensors": LORA });
    fails(tar.subarray(0, 512 + 10), /truncated: the member at byte 0 declares \d+ bytes, but only 10 follow/);
    fails(concat(tar.subarray(0, 512 + padded(LORA).length), new Uint8Array(100)), /truncated: a header/);
  });

  test("huge member sizes: octal past the archive, base-256 past 2^53, a pax size past the archive", () => {
    fails(concat(header("lora.safetensors", 0o77777777777), new Uint8Array(1024)), /declares 8589934591 bytes/);
    const base256 = new Uint8Array(12).fill(0xff);
    base256[0] = 0x80 | 0x3f;
    fails(concat(header("lora.safetensors", base256), new Uint8Array(1024)), /size is too large/);
    const negative = new Uint8Array(12).fill(0xff);
    fails(concat(header("lora.safetensors", negative), new Uint8Array(1024)), /negative size/);
    const record = Buffer.from("30 size=99999999999999999999\n");
    const paxBytes = new Uint8Array(Buffer.concat([Buffer.from(`${record.length + 3} `), record.subarray(3)]));
    fails(
      concat(header("PaxHeaders/x", paxBytes.length, "x"), padded(paxBytes), header("lora.safetensors", 0)),
      /pax header|size|truncated/,
    );
  });

  test("an archive of endless empty members stops at the header limit", () => {
    const one = header("x", 0);
    const many = new Uint8Array(512 * (MAX_TAR_HEADERS + 5));
    for (let i = 0; i < MAX_TAR_HEADERS + 5; i++) many.set(one, 512 * i);
    fails(many, /more than 10000 headers/);
  });

  test("path traversal and absolute member names are refused, never used as paths", () => {
    for (const name of ["../lora.safetensors", "a/../../etc/passwd", "/etc/lora.safetensors", "C:evil"]) {
      assert.ok(isUnsafeName(name), name);
      const tar = concat(
        header("lora.safetensors", LORA.length),
        padded(LORA),
        header(name, 1),
        padded(Uint8Array.of(1)),
      );
      fails(concat(tar, new Uint8Array(1024)), /unsafe path/);
    }
    assert.ok(!isUnsafeName("lora.safetensors") && !isUnsafeName("a/b..c"));
  });

  test("not a tar, not safetensors: bytes of an image, HTML, zeros, a wrong checksum, nothing", () => {
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    for (const bytes of [png, Buffer.from("<html>not found</html>"), new Uint8Array(2048), new Uint8Array(0)]) {
      fails(new Uint8Array(bytes), /neither a \.safetensors LoRA nor a \.tar archive/);
    }
    fails(concat(header("lora.safetensors", 0, "0", true), new Uint8Array(1024)), /neither/);
    // A later header with a wrong checksum, after a good member.
    const tar = concat(header("a", 1), padded(Uint8Array.of(1)), header("lora.safetensors", 0, "0", true));
    fails(tar, /wrong checksum/);
  });

  test("random bytes never crash the reader", () => {
    let seed = 1;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    const good = gnuTar({ "lora.safetensors": LORA, "embeddings.pti": "x" });
    for (let i = 0; i < 300; i++) {
      const bytes = Uint8Array.from(good);
      for (let k = 0; k < 8; k++) bytes[next() * 8 + (next() % 8)] = next();
      try {
        unpackWeights(bytes, "replicate_weights");
      } catch (err) {
        assert.ok(err instanceof FileInputError, String(err));
      }
    }
  });
});

describe("the weights cache", () => {
  let server: http.Server;
  let base: string;
  const served = new Map<string, Uint8Array>();
  let requests = 0;
  before(async () => {
    server = http.createServer((req, res) => {
      requests++;
      if (req.url === "/stall") {
        // Headers, then a trickle that never ends: the fetch's time limit ends it.
        res.writeHead(200, { "content-length": 1_000_000 });
        res.write("x");
        return;
      }
      const body = served.get(req.url ?? "");
      if (!body) {
        res.writeHead(404).end("no");
        return;
      }
      res.writeHead(200, { "content-length": body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const opts = { allowPrivate: true };

  test("fetched once, kept by the SHA-256 of what was fetched; the same LoRA by another URL is the same file", async () => {
    const dir = path.join(tmp, "cache-a");
    const cache = new WeightsCache(dir);
    served.set("/a.tar", gnuTar({ "lora.safetensors": LORA }));
    served.set("/b.safetensors", LORA);
    const before = requests;
    const a = await cache.resolve(`${base}/a.tar`, "replicate_weights", "acct", opts);
    const again = await cache.resolve(`${base}/a.tar`, "replicate_weights", "acct", opts);
    assert.equal(requests - before, 1, "a URL is fetched once");
    assert.equal(again.path, a.path);
    assert.deepEqual(readFileSync(a.path), Buffer.from(LORA));
    assert.equal(path.basename(a.path), `${a.sha256}.safetensors`);
    const b = await cache.resolve(`${base}/b.safetensors`, "replicate_weights", "acct", opts);
    assert.notEqual(b.sha256, a.sha256, "the tar's hash is the tar's");
    const dataUri = `data:application/octet-stream;base64,${Buffer.from(LORA).toString("base64")}`;
    const c = await cache.resolve(dataUri, "replicate_weights", "acct", opts);
    assert.equal(c.path, b.path, "the same bytes are the same file");
    assert.deepEqual(
      readdirSync(dir).sort(),
      [`${a.sha256}.safetensors`, `${b.sha256}.safetensors`].sort(),
      "no partial files left",
    );
  });

  test("a trained-LoRA tar's embeddings.pti is kept beside its LoRA, with its token map remembered", async () => {
    const dir = path.join(tmp, "cache-pti");
    const cache = new WeightsCache(dir);
    served.set(
      "/trained.tar",
      gnuTar({ "lora.safetensors": LORA, "embeddings.pti": PTI, "special_params.json": '{"TOK": "<s0><s1>"}' }),
    );
    const before = requests;
    const a = await cache.resolve(`${base}/trained.tar`, "replicate_weights", "acct", opts);
    assert.equal(path.basename(a.trainedTokens?.path ?? ""), `${a.sha256}.pti`);
    assert.deepEqual(readFileSync(a.trainedTokens?.path ?? ""), Buffer.from(PTI));
    assert.deepEqual(a.trainedTokens?.tokenMap, [["TOK", "<s0><s1>"]]);
    const again = await cache.resolve(`${base}/trained.tar`, "replicate_weights", "acct", opts);
    assert.equal(requests - before, 1);
    assert.deepEqual(again.trainedTokens, a.trainedTokens);
    // The .pti gone (evicted): fetched again rather than used without its tokens.
    rmSync(a.trainedTokens?.path ?? "");
    const third = await cache.resolve(`${base}/trained.tar`, "replicate_weights", "acct", opts);
    assert.equal(requests - before, 2);
    assert.deepEqual(readFileSync(third.trainedTokens?.path ?? ""), Buffer.from(PTI));
  });

  test("URL failures and a URL that is not a LoRA are FileInputErrors naming the input", async () => {
    const cache = new WeightsCache(path.join(tmp, "cache-b"));
    served.set("/page.html", new Uint8Array(Buffer.from("<html>a web page</html>")));
    await assert.rejects(
      cache.resolve(`${base}/page.html`, "replicate_weights", "acct", opts),
      /replicate_weights: is neither a \.safetensors LoRA nor a \.tar archive/,
    );
    await assert.rejects(
      cache.resolve(`${base}/missing.tar`, "replicate_weights", "acct", opts),
      /replicate_weights: fetching the URL answered HTTP 404/,
    );
    await assert.rejects(
      cache.resolve(`${base}/a.tar`, "replicate_weights", "acct", { allowPrivate: false }),
      /replicate_weights: 127\.0\.0\.1 is a loopback, private/,
    );
    const slow = new WeightsCache(path.join(tmp, "cache-slow"), 1e9, 1e9, 300);
    await assert.rejects(
      slow.resolve(`${base}/stall`, "replicate_weights", "acct", opts),
      /replicate_weights: fetching the URL took too long/,
    );
    const small = new WeightsCache(path.join(tmp, "cache-c"), 1e9, 100);
    await assert.rejects(
      small.resolve(`${base}/b.safetensors`, "replicate_weights", "acct", opts),
      /replicate_weights: the file at the URL is \d+ bytes, over the limit of 100/,
    );
  });

  test("bounded: the least recently used files are removed past the budget", async () => {
    const dir = path.join(tmp, "cache-d");
    const one = encodeSafetensors([{ name: "x", dtype: "F32", shape: [64], data: new Float32Array(64).fill(1) }]);
    const cache = new WeightsCache(dir, 2.5 * one.length);
    const uris = [1, 2, 3].map((v) => {
      const bytes = encodeSafetensors([{ name: "x", dtype: "F32", shape: [64], data: new Float32Array(64).fill(v) }]);
      return `data:application/octet-stream;base64,${Buffer.from(bytes).toString("base64")}`;
    });
    const first = await cache.resolve(uris[0] as string, "replicate_weights", "acct", opts);
    const second = await cache.resolve(uris[1] as string, "replicate_weights", "acct", opts);
    await cache.resolve(uris[0] as string, "replicate_weights", "acct", opts); // first is now the most recent
    const third = await cache.resolve(uris[2] as string, "replicate_weights", "acct", opts);
    const left = readdirSync(dir);
    assert.deepEqual(left.sort(), [path.basename(first.path), path.basename(third.path)].sort());
    assert.ok(!left.includes(path.basename(second.path)));
  });
});
