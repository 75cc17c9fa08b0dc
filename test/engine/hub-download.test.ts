/**
 * Hub downloads against a local hub (test/helpers/hub-server.ts) serving the tiny-sd1 fixture
 * with the extra files real Stable Diffusion repositories carry (a .ckpt, pickle and Flax
 * weights, fp16 variants, the safety checker), reached through HF_ENDPOINT.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { hubSettingsFromEnv } from "../../src/config.js";
import { HubError } from "../../src/engine/errors.js";
import { pullModel } from "../../src/engine/hub/pull.js";
import { parseHubId } from "../../src/engine/hub/repo-id.js";
import type { HubSettings } from "../../src/engine/hub/settings.js";
import { verifyCachedModel } from "../../src/engine/hub/verify.js";
import { loadPipeline } from "../../src/engine/pipeline.js";
import { readSafetensors } from "../../src/engine/weights/safetensors.js";
import { encodeSafetensors } from "../../src/engine/weights/safetensors-writer.js";
import { modelDir } from "../helpers/fixtures.js";
import { filesOfFolder, LocalHub } from "../helpers/hub-server.js";

const REPO = "sdserve-test/tiny-sd1";
const FAST_RETRY = { attempts: 3, delayMs: 5 };

/** What a pull of the fp32 pipeline must fetch: nothing more, nothing less. */
const NEEDED_FP32 = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json",
  "tokenizer/tokenizer_config.json",
  "tokenizer/vocab.json",
  "unet/config.json",
  "unet/diffusion_pytorch_model.safetensors",
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
];
const UNET = "unet/diffusion_pytorch_model.safetensors";

function fixtureRepoFiles(): Map<string, Buffer> {
  const files = filesOfFolder(modelDir("tiny-sd1"));
  const junk = (n: string) => Buffer.from(`not needed: ${n}\n`.repeat(50));
  // What real SD repositories hold beside the diffusers files.
  files.set("v1-5-pruned-emaonly.ckpt", junk("ckpt"));
  files.set("v1-5-pruned-emaonly.safetensors", junk("single-file checkpoint"));
  files.set("README.md", junk("readme"));
  files.set("unet/diffusion_pytorch_model.bin", junk("pickle"));
  files.set("unet/diffusion_pytorch_model.fp16.safetensors", files.get(UNET) as Buffer);
  files.set(
    "vae/diffusion_pytorch_model.fp16.safetensors",
    files.get("vae/diffusion_pytorch_model.safetensors") as Buffer,
  );
  files.set("text_encoder/flax_model.msgpack", junk("flax"));
  files.set("text_encoder/pytorch_model.bin", junk("pickle"));
  files.set("safety_checker/config.json", junk("safety config"));
  files.set("safety_checker/model.safetensors", junk("safety weights"));
  files.set("feature_extractor/preprocessor_config.json", junk("feature extractor"));
  return files;
}

let hub: LocalHub;
let cacheDir: string;
let settings: HubSettings;

function freshCache(): void {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  cacheDir = mkdtempSync(path.join(os.tmpdir(), "sdserve-hf-cache-"));
  settings = hubSettingsFromEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_HOME: cacheDir });
}

const ref = parseHubId(REPO) as NonNullable<ReturnType<typeof parseHubId>>;
const repoDir = () => path.join(cacheDir, "models--sdserve-test--tiny-sd1");
const blobsDir = () => path.join(repoDir(), "blobs");

before(async () => {
  hub = await LocalHub.start();
  hub.addRepo(REPO, fixtureRepoFiles());
});
after(async () => {
  await hub.close();
  rmSync(cacheDir, { recursive: true, force: true });
});
beforeEach(() => {
  hub.reset();
  freshCache();
});

describe("pull", () => {
  test("the first pull downloads exactly the files the pipeline needs, into the Hugging Face cache layout", async () => {
    const pulled = await pullModel(ref, { settings, retry: FAST_RETRY });
    assert.deepEqual([...hub.downloads()].sort(), NEEDED_FP32);
    assert.deepEqual([...pulled.downloaded].sort(), NEEDED_FP32);
    assert.equal(pulled.source, "hub");
    const repo = hub.repos.get(REPO)!;
    assert.equal(pulled.commit, repo.commit);
    assert.equal(pulled.dir, path.join(repoDir(), "snapshots", repo.commit));
    // refs/main holds the commit, without a newline, as huggingface_hub writes it.
    assert.equal(readFileSync(path.join(repoDir(), "refs", "main"), "utf8"), repo.commit);
    // Every snapshot file is a relative link to the blob named by its sha256 (LFS) or git blob id.
    for (const p of NEEDED_FP32) {
      const link = readlinkSync(path.join(pulled.dir, p));
      const etag = repo.files.get(p)!.etag;
      assert.equal(link, path.relative(path.dirname(path.join(pulled.dir, p)), path.join(blobsDir(), etag)));
      assert.deepEqual(readFileSync(path.join(pulled.dir, p)), repo.files.get(p)!.data);
    }
    assert.equal(repo.files.get(UNET)!.etag.length, 64);
    assert.equal(repo.files.get("model_index.json")!.etag.length, 40);
    assert.deepEqual(
      readdirSync(blobsDir()).filter((n) => n.includes(".")),
      [],
      "no partial files left",
    );
    // The tree listing is paginated (8 a page here); every page was read.
    assert.ok(hub.requests.filter((r) => r.url.includes("/tree/")).length > 1);
    // A commit cannot change: pulled again by its hash, it needs no request at all.
    hub.reset();
    const byCommit = await pullModel({ repo: REPO, revision: repo.commit }, { settings });
    assert.equal(byCommit.dir, pulled.dir);
    assert.deepEqual(hub.requests, []);
  });

  test("a second pull downloads nothing", async () => {
    await pullModel(ref, { settings, retry: FAST_RETRY });
    hub.reset();
    const again = await pullModel(ref, { settings, retry: FAST_RETRY });
    assert.deepEqual(hub.downloads(), []);
    assert.deepEqual(again.downloaded, []);
    assert.equal(again.files.length, NEEDED_FP32.length);
  });

  test("fp16: the fp16 files where the repository has them, fp32 where it has not", async () => {
    const events: string[] = [];
    const pulled = await pullModel(ref, {
      settings,
      variant: "fp16",
      retry: FAST_RETRY,
      onProgress: (e) => e.type === "plan" && events.push(...e.files.map((f) => f.path)),
    });
    const expected = NEEDED_FP32.map((p) =>
      p.replace(/diffusion_pytorch_model\.safetensors$/, "diffusion_pytorch_model.fp16.safetensors"),
    );
    assert.deepEqual([...hub.downloads()].sort(), [...expected].sort());
    assert.deepEqual([...events].sort(), [...expected].sort());
    assert.ok(pulled.files.includes("text_encoder/model.safetensors"));
  });

  test("a download cut off mid-file resumes with a Range request from where it stopped", async () => {
    const size = hub.repos.get(REPO)!.files.get(UNET)!.data.length;
    hub.faults.cut = new Map([[UNET, { afterBytes: 100_000, times: 1 }]]);
    const retries: number[] = [];
    await pullModel(ref, {
      settings,
      retry: FAST_RETRY,
      onProgress: (e) => e.type === "retry" && retries.push(e.resumeAt),
    });
    const unet = hub.requests.filter((r) => r.file === UNET);
    assert.equal(unet.length, 2);
    assert.equal(unet[0]!.range, undefined);
    assert.equal(unet[1]!.range, "bytes=100000-");
    assert.equal(unet[0]!.bytesSent + unet[1]!.bytesSent, size, "no byte was downloaded twice");
    assert.deepEqual(retries, [100_000]);
  });

  test("a pull that gave up leaves a partial blob, and the next pull resumes it", async () => {
    hub.faults.cut = new Map([[UNET, { afterBytes: 200_000, times: 1 }]]);
    await assert.rejects(pullModel(ref, { settings, retry: { attempts: 1, delayMs: 1 } }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "unreachable");
      return true;
    });
    const etag = hub.repos.get(REPO)!.files.get(UNET)!.etag;
    assert.equal(readFileSync(path.join(blobsDir(), `${etag}.incomplete`)).length, 200_000);
    // Nothing half-written is visible in the snapshot.
    const snapshot = path.join(repoDir(), "snapshots", hub.repos.get(REPO)!.commit);
    assert.throws(() => readlinkSync(path.join(snapshot, UNET)));

    hub.reset();
    const pulled = await pullModel(ref, { settings, retry: FAST_RETRY });
    const unet = hub.requests.filter((r) => r.file === UNET);
    assert.deepEqual(
      unet.map((r) => r.range),
      ["bytes=200000-"],
    );
    assert.ok(!hub.downloads().includes("model_index.json"), "files finished before are not fetched again");
    assert.deepEqual(readFileSync(path.join(pulled.dir, UNET)), hub.repos.get(REPO)!.files.get(UNET)!.data);
  });

  test("a full disk stops the pull with an error that says so and what to do", async () => {
    // The kernel's /dev/full fails every write with ENOSPC: the partial blob is made to be it.
    const etag = hub.repos.get(REPO)!.files.get(UNET)!.etag;
    await mkdir(blobsDir(), { recursive: true });
    symlinkSync("/dev/full", path.join(blobsDir(), `${etag}.incomplete`));
    await assert.rejects(pullModel(ref, { settings, retry: FAST_RETRY }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "disk");
      assert.match(
        err.message,
        /no space left on the disk of .* while downloading unet\/diffusion_pytorch_model\.safetensors/,
      );
      assert.match(err.message, /free some space, or set HF_HUB_CACHE/);
      return true;
    });
    // Not retried: a full disk does not empty itself.
    assert.equal(hub.requests.filter((r) => r.file === UNET).length, 1);
    const snapshot = path.join(repoDir(), "snapshots", hub.repos.get(REPO)!.commit);
    assert.throws(() => readlinkSync(path.join(snapshot, UNET)));
  });

  test("bytes that do not match the listed sha256 are rejected, and nothing of them is kept", async () => {
    hub.faults.corrupt = new Set([UNET]);
    await assert.rejects(pullModel(ref, { settings, retry: FAST_RETRY }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "corrupt");
      assert.match(
        err.message,
        /unet\/diffusion_pytorch_model\.safetensors: the downloaded bytes do not match the hub's sha256/,
      );
      return true;
    });
    const etag = hub.repos.get(REPO)!.files.get(UNET)!.etag;
    assert.ok(!readdirSync(blobsDir()).some((n) => n.startsWith(etag)));
    const snapshot = path.join(repoDir(), "snapshots", hub.repos.get(REPO)!.commit);
    assert.throws(() => readlinkSync(path.join(snapshot, UNET)));
  });

  test("verify finds a corrupted blob in the cache and removes it; the next pull fetches only that file", async () => {
    await pullModel(ref, { settings, retry: FAST_RETRY });
    const etag = hub.repos.get(REPO)!.files.get(UNET)!.etag;
    const blob = path.join(blobsDir(), etag);
    const bytes = readFileSync(blob);
    bytes[1000] = (bytes[1000] as number) ^ 1;
    writeFileSync(blob, bytes);

    const result = await verifyCachedModel(ref, { settings });
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.files.filter((f) => f.status !== "ok").map((f) => [f.path, f.status]),
      [[UNET, "corrupt"]],
    );
    assert.equal(result.files.length, NEEDED_FP32.length);

    hub.reset();
    await pullModel(ref, { settings, retry: FAST_RETRY });
    assert.deepEqual(hub.downloads(), [UNET]);
    assert.equal((await verifyCachedModel(ref, { settings })).ok, true);
  });

  test("HF_HUB_OFFLINE=1 uses the cache alone, and says what to do when the model is not there", async () => {
    const offline = { ...settings, offline: true };
    await assert.rejects(pullModel(ref, { settings: offline }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "offline");
      assert.match(err.message, /not in the Hugging Face cache/);
      assert.match(err.message, /HF_HUB_OFFLINE=1 is set/);
      assert.match(err.message, /sdserve models pull sdserve-test\/tiny-sd1/);
      return true;
    });
    const online = await pullModel(ref, { settings, retry: FAST_RETRY });
    hub.reset();
    const cached = await pullModel(ref, {
      settings: hubSettingsFromEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: "1" }),
    });
    assert.deepEqual(hub.requests, [], "no request at all");
    assert.equal(cached.source, "cache");
    assert.equal(cached.dir, online.dir);
    assert.deepEqual([...cached.files].sort(), NEEDED_FP32);
    // By commit too.
    const byCommit = await pullModel({ repo: REPO, revision: online.commit }, { settings: offline });
    assert.equal(byCommit.dir, online.dir);
  });

  test("an unreachable hub falls back to a complete cached copy, or says how to get one", async () => {
    const down = await LocalHub.start();
    const unreachable = { ...settings, endpoint: down.url };
    await down.close();
    await assert.rejects(pullModel(ref, { settings: unreachable, retry: FAST_RETRY }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "unreachable");
      assert.match(err.message, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
      assert.match(err.message, /HF_ENDPOINT/);
      return true;
    });
    await pullModel(ref, { settings, retry: FAST_RETRY });
    const reasons: string[] = [];
    const cached = await pullModel(ref, {
      settings: unreachable,
      onProgress: (e) => e.type === "offline-fallback" && reasons.push(e.reason),
    });
    assert.equal(cached.source, "cache");
    assert.equal(reasons.length, 1);
  });

  test("a gated repository asks for HF_TOKEN, and the token is sent to the endpoint", async () => {
    const gated = "sdserve-test/gated";
    hub.addRepo(gated, filesOfFolder(modelDir("tiny-sd1")), { gatedToken: "hf_test_token" });
    const gatedRef = { repo: gated, revision: "main" };
    await assert.rejects(pullModel(gatedRef, { settings }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "gated");
      assert.match(err.message, /sdserve-test\/gated is gated: accept its conditions at .*, then set HF_TOKEN/);
      return true;
    });
    await assert.rejects(pullModel(gatedRef, { settings: { ...settings, token: "hf_wrong" } }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "gated");
      assert.match(err.message, /has no access yet/);
      return true;
    });
    hub.reset();
    const withToken = hubSettingsFromEnv({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheDir, HF_TOKEN: "hf_test_token" });
    await pullModel(gatedRef, { settings: withToken, retry: FAST_RETRY });
    assert.ok(hub.requests.length > 0);
    assert.ok(hub.requests.every((r) => r.authorization === "Bearer hf_test_token"));
  });

  test("an unknown repository or revision is named in the error", async () => {
    await assert.rejects(pullModel({ repo: "sdserve-test/nope", revision: "main" }, { settings }), (err: unknown) => {
      assert.ok(err instanceof HubError);
      assert.equal(err.kind, "not-found");
      assert.match(err.message, /sdserve-test\/nope was not found on http:\/\/127\.0\.0\.1:\d+: check the id/);
      return true;
    });
    await assert.rejects(pullModel({ repo: REPO, revision: "v9" }, { settings }), /has no revision "v9"/);
  });

  test("a repository with only pickle weights is refused before anything is downloaded", async () => {
    const files = filesOfFolder(modelDir("tiny-sd1"));
    files.delete(UNET);
    files.set("unet/diffusion_pytorch_model.bin", Buffer.from("pickle"));
    hub.addRepo("sdserve-test/pickles", files);
    await assert.rejects(
      pullModel({ repo: "sdserve-test/pickles", revision: "main" }, { settings }),
      /has only PyTorch pickle weights for unet\/ \(unet\/diffusion_pytorch_model\.bin\)/,
    );
    assert.deepEqual(hub.downloads(), []);
  });
});

/** tiny-sd1 with its UNet split in two shards and an index, as large checkpoints are published. */
async function shardedRepo(): Promise<Map<string, Buffer>> {
  const files = filesOfFolder(modelDir("tiny-sd1"));
  const unetFile = path.join(modelDir("tiny-sd1"), UNET);
  const st = await readSafetensors(unetFile);
  const bytes = readFileSync(unetFile);
  const tensors = [...st.tensors.values()];
  const half = Math.ceil(tensors.length / 2);
  const weightMap: Record<string, string> = {};
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  shards.forEach((group, i) => {
    const name = `diffusion_pytorch_model-0000${i + 1}-of-00002.safetensors`;
    const encoded = encodeSafetensors(
      group.map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        data: bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength),
      })),
    );
    files.set(`unet/${name}`, Buffer.from(encoded));
    for (const t of group) weightMap[t.name] = name;
  });
  files.delete(UNET);
  files.set(
    "unet/diffusion_pytorch_model.safetensors.index.json",
    Buffer.from(JSON.stringify({ metadata: { total_size: bytes.length }, weight_map: weightMap })),
  );
  return files;
}

describe("pulled models", () => {
  test("a pulled model, sharded or not, makes the same image as the fixture folder itself", async () => {
    hub.addRepo("sdserve-test/sharded", await shardedRepo());
    const pulled = await pullModel(ref, { settings, retry: FAST_RETRY });
    const sharded = await pullModel(
      { repo: "sdserve-test/sharded", revision: "main" },
      { settings, retry: FAST_RETRY },
    );
    assert.ok(sharded.files.includes("unet/diffusion_pytorch_model-00002-of-00002.safetensors"));
    const request = { prompt: "a lighthouse at dusk", width: 64, height: 64, numInferenceSteps: 3, seed: 7n };
    const images: Buffer[] = [];
    for (const dir of [modelDir("tiny-sd1"), pulled.dir, sharded.dir]) {
      const pipe = await loadPipeline(dir, { threads: 1 });
      try {
        images.push(Buffer.from((await pipe.generate(request)).images[0]!.data));
      } finally {
        await pipe.release();
      }
    }
    assert.ok(images[0]!.equals(images[1]!), "pulled = fixture");
    assert.ok(images[0]!.equals(images[2]!), "sharded = fixture");
  });

  test("HF_* settings: the same precedence as huggingface_hub", async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), "sdserve-hf-home-"));
    try {
      await mkdir(home, { recursive: true });
      await writeFile(path.join(home, "token"), "hf_from_login\n");
      const s = hubSettingsFromEnv({ HF_HOME: home });
      assert.equal(s.cacheDir, path.join(home, "hub"));
      assert.equal(s.token, "hf_from_login");
      assert.equal(s.endpoint, "https://huggingface.co");
      assert.equal(s.offline, false);
      const t = hubSettingsFromEnv({
        HF_HOME: home,
        HF_HUB_CACHE: path.join(home, "elsewhere"),
        HF_TOKEN: "hf_env",
        HF_ENDPOINT: "https://hf-mirror.example/",
        HF_HUB_OFFLINE: "true",
      });
      assert.deepEqual(t, {
        cacheDir: path.join(home, "elsewhere"),
        token: "hf_env",
        endpoint: "https://hf-mirror.example",
        offline: true,
      });
      assert.equal(hubSettingsFromEnv({ XDG_CACHE_HOME: home }).cacheDir, path.join(home, "huggingface", "hub"));
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test("hub ids: owner/name[@revision], never a path", () => {
    assert.deepEqual(parseHubId("stabilityai/sd-turbo"), { repo: "stabilityai/sd-turbo", revision: "main" });
    assert.deepEqual(parseHubId("a/b@refs/pr/1"), { repo: "a/b", revision: "refs/pr/1" });
    for (const notHub of ["./a/b", "/a/b", "a/b/c", "tiny-random", "a/../b", "~/x", "a--b/c", "a/b@", "a/b@../x"]) {
      assert.equal(parseHubId(notHub), undefined, notHub);
    }
  });
});
