/**
 * Single-file checkpoints from the hub (`owner/name/file.safetensors[@revision]`) against a local
 * hub (test/helpers/hub-server.ts) reached through HF_ENDPOINT: that one file is downloaded
 * into the Hugging Face cache layout (resumable, hash-checked) and loaded as a single file, the
 * same pipeline as the local file; a pickle is refused before any request, a missing file names
 * what the repository has, a corrupt download is discarded.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { hubSettingsFromEnv } from "../../src/config.js";
import { HubError, ModelError } from "../../src/engine/errors.js";
import { pullFile } from "../../src/engine/hub/pull.js";
import { formatHubFileRef, parseHubFileId } from "../../src/engine/hub/repo-id.js";
import type { HubSettings } from "../../src/engine/hub/settings.js";
import { loadPipeline } from "../../src/engine/pipeline.js";
import { resolveModelSource, sourceKind } from "../../src/engine/sources.js";
import { GOLDEN_FAMILY, maxAbsDiff, modelDir } from "../helpers/fixtures.js";
import { LocalHub } from "../helpers/hub-server.js";

const REPO = "sdserve-test/tiny-sd1-checkpoint";
const FILE = "tiny-sd1.safetensors";
const LOCAL = path.join(GOLDEN_FAMILY, "single_file", FILE);
const FAST_RETRY = { attempts: 3, delayMs: 5 };

let hub: LocalHub;
let cacheDir: string;
let settings: HubSettings;

before(async () => {
  hub = await LocalHub.start();
  hub.addRepo(
    REPO,
    new Map([
      [FILE, readFileSync(LOCAL)],
      ["tiny-sd1-pruned.ckpt", Buffer.from("a pickle, never fetched\n".repeat(40))],
      ["README.md", Buffer.from("# a checkpoint\n")],
      ["extra/other.safetensors", Buffer.from("not needed\n".repeat(40))],
    ]),
  );
});
after(async () => {
  await hub.close();
  rmSync(cacheDir, { recursive: true, force: true });
});
beforeEach(() => {
  hub.reset();
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  cacheDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-hf-file-"));
  settings = hubSettingsFromEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_HOME: cacheDir });
});

const spec = `${REPO}/${FILE}`;
const opts = () => ({ hub: settings, cacheDir });

describe("hub file ids", () => {
  test("owner/name/path/file.safetensors, with an optional @revision after it", () => {
    assert.deepEqual(parseHubFileId("a/b/c.safetensors"), { repo: "a/b", revision: "main", file: "c.safetensors" });
    assert.deepEqual(parseHubFileId("a/b/sub/c.safetensors@v1.0"), {
      repo: "a/b",
      revision: "v1.0",
      file: "sub/c.safetensors",
    });
    assert.deepEqual(parseHubFileId("a/b/c.ckpt@refs/pr/1")?.revision, "refs/pr/1");
    assert.equal(formatHubFileRef(parseHubFileId("a/b/c.safetensors@dev")!), "a/b/c.safetensors@dev");
    for (const notOne of [
      "a/b",
      "a/b/readme.md",
      "./a/b.safetensors",
      "/abs/b/c.safetensors",
      "~/a/b.safetensors",
      "a/b/../c.safetensors",
      "a/b//c.safetensors",
      "a--x/b/c.safetensors",
      "a/b/c.safetensors@",
    ]) {
      assert.equal(parseHubFileId(notOne), undefined, notOne);
    }
  });
});

describe("a single-file checkpoint from the hub", () => {
  test("only that file is downloaded, into the cache layout, and loads as the local file does", async () => {
    assert.equal(await sourceKind(spec), "hub");
    const source = await resolveModelSource(spec, opts());
    assert.deepEqual(hub.downloads(), [FILE]);
    const repo = hub.repos.get(REPO)!;
    const repoDir = path.join(cacheDir, "models--sdserve-test--tiny-sd1-checkpoint");
    assert.equal(source.path, path.join(repoDir, "snapshots", repo.commit, FILE));
    assert.equal(source.label, spec);
    assert.equal(readlinkSync(source.path), path.join("..", "..", "blobs", repo.files.get(FILE)!.etag));
    assert.equal(readFileSync(path.join(repoDir, "refs", "main"), "utf8"), repo.commit);

    const req = { prompt: "a red cube", numInferenceSteps: 2, seed: 4, width: 64, height: 64 };
    // The tiny checkpoint's sizes are not the published SD 1.5's: --config still applies.
    const config = modelDir("tiny-sd1");
    const fromHub = await loadPipeline(source.path, { threads: 1, config });
    const local = await loadPipeline(LOCAL, { threads: 1, config });
    try {
      assert.equal(fromHub.info.family, "sd");
      const a = await fromHub.generate(req);
      const b = await local.generate(req);
      assert.equal(maxAbsDiff(a.latents.data, b.latents.data), 0);
    } finally {
      await fromHub.release();
      await local.release();
    }

    // Again: nothing downloaded; by its commit, no request at all; offline, from the cache.
    hub.reset();
    assert.equal((await resolveModelSource(spec, opts())).path, source.path);
    assert.deepEqual(hub.downloads(), []);
    hub.reset();
    assert.equal((await resolveModelSource(`${spec}@${repo.commit}`, opts())).path, source.path);
    assert.deepEqual(hub.requests, []);
    const offline = hubSettingsFromEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: "1" });
    assert.equal((await resolveModelSource(spec, { hub: offline, cacheDir })).path, source.path);
    assert.deepEqual(hub.requests, []);
  });

  test("a download cut off mid-file resumes from where it stopped", async () => {
    hub.faults.cut = new Map([[FILE, { afterBytes: 20_000, times: 1 }]]);
    const pulled = await pullFile(parseHubFileId(spec)!, { settings, retry: FAST_RETRY });
    assert.deepEqual(readFileSync(path.join(pulled.dir, FILE)), readFileSync(LOCAL));
    const resumed = hub.requests.filter((r) => r.file === FILE && r.range !== undefined);
    assert.ok(resumed.length >= 1, "the second request asks for a range");
  });

  test("a pickle (.ckpt) is refused by name before anything is asked of the hub", async () => {
    await assert.rejects(resolveModelSource(`${REPO}/tiny-sd1-pruned.ckpt`, opts()), (err: Error) => {
      assert.ok(err instanceof ModelError, String(err));
      assert.match(err.message, /tiny-sd1-pruned\.ckpt: is a PyTorch pickle checkpoint.*arbitrary code.*safetensors/);
      return true;
    });
    assert.deepEqual(hub.requests, []);
  });

  test("a file the repository lacks: not found, naming the file and what the repository has", async () => {
    await assert.rejects(resolveModelSource(`${REPO}/v1-5.safetensors`, opts()), (err: Error) => {
      assert.ok(err instanceof HubError && err.kind === "not-found", String(err));
      assert.match(
        err.message,
        /has no file v1-5\.safetensors \(its top-level \.safetensors files: tiny-sd1\.safetensors\)/,
      );
      assert.match(err.message, /no local file/);
      return true;
    });
    assert.deepEqual(hub.downloads(), []);
    await assert.rejects(resolveModelSource("sdserve-test/no-such-repo/x.safetensors", opts()), HubError);
  });

  test("a corrupt download is discarded with the hash named; nothing lands in the snapshot", async () => {
    hub.faults.corrupt = new Set([FILE]);
    await assert.rejects(pullFile(parseHubFileId(spec)!, { settings, retry: FAST_RETRY }), (err: Error) => {
      assert.ok(err instanceof HubError && err.kind === "corrupt", String(err));
      assert.match(err.message, /tiny-sd1\.safetensors: the downloaded bytes do not match the hub's sha256/);
      return true;
    });
    const commit = hub.repos.get(REPO)!.commit;
    assert.ok(!existsSync(path.join(cacheDir, "models--sdserve-test--tiny-sd1-checkpoint", "snapshots", commit, FILE)));
  });
});
