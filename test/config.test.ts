/** config.ts: flags and environment read and validated in one place. */
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { ConfigError, loadConfig, parseDuration, SERVE_HELP, SETTINGS, WORKER_HELP } from "../src/config.js";
import { GOLDEN_FAMILY } from "./helpers/fixtures.js";

test("durations: units combine, a bare number is seconds, anything else is rejected", () => {
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("7d"), 604_800_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("45"), 45_000);
  for (const bad of ["", "s", "1 h", "1y", "-5s", "5s5"]) assert.equal(parseDuration(bad), undefined, bad);
});

test("defaults, and a flag wins over its environment variable", () => {
  const c = loadConfig(["--model", "tiny-random"], { HOME: "/home/u" });
  assert.equal(c.port, 8080);
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.outputRetentionMs, 3_600_000);
  assert.equal(c.queueMax, 100);
  assert.equal(c.bodyLimit, 1024 * 1024);
  assert.equal(c.maxWaitSeconds, 60);
  assert.equal(c.streamKeepaliveMs, 10_000);
  assert.equal(loadConfig(["--model", "m"], { SDSERVE_STREAM_KEEPALIVE: "500ms" }).streamKeepaliveMs, 500);
  assert.equal(c.webhookAllowPrivate, false);
  assert.deepEqual(c.apiTokens, []);
  assert.equal(c.rateLimit, null);
  assert.equal(c.readCacheBytes, 32 * 1024 * 1024);
  assert.equal(loadConfig(["--model", "m"], { SDSERVE_READ_CACHE: "0" }).readCacheBytes, 0);
  assert.equal(loadConfig(["--model", "m"], { SDSERVE_READ_CACHE: "512kb" }).readCacheBytes, 512 * 1024);
  const d = loadConfig(["--port", "9000"], {
    SDSERVE_MODEL: "./sd",
    SDSERVE_PORT: "1234",
    SDSERVE_API_TOKENS: "a, b,,c",
    SDSERVE_OUTPUT_RETENTION: "never",
    SDSERVE_BODY_LIMIT: "2mb",
    SDSERVE_WEBHOOK_ALLOW_PRIVATE: "true",
    SDSERVE_RATE_LIMIT: "600/m",
    SDSERVE_PUBLIC_URL: "https://sd.example.org/base/",
    SDSERVE_CORS_ORIGINS: "*",
  });
  assert.equal(d.port, 9000);
  assert.equal(d.model, "./sd");
  assert.deepEqual(d.apiTokens, ["a", "b", "c"]);
  assert.equal(d.outputRetentionMs, null);
  assert.equal(d.bodyLimit, 2 * 1024 * 1024);
  assert.equal(d.webhookAllowPrivate, true);
  assert.deepEqual(d.rateLimit, { max: 600, windowMs: 60_000 });
  assert.equal(d.publicBaseUrl, "https://sd.example.org/base");
  assert.deepEqual(d.corsOrigins, ["*"]);
});

test("models: stability-ai/stable-diffusion on SD 2.1 by default; --model and the HF_* variables", () => {
  const c = loadConfig([], { HF_ENDPOINT: "https://mirror.example/", HF_HUB_CACHE: "/cache/hf", HF_TOKEN: "hf_x" });
  assert.equal(c.model, undefined);
  assert.deepEqual(
    c.models.map((m) => [m.name, m.weights, m.variant]),
    [
      ["stability-ai/stable-diffusion", "stabilityai/stable-diffusion-2-1", "fp32"],
      // img2img and inpainting on the same weights (sharing one loaded copy).
      ["stability-ai/stable-diffusion-img2img", "stabilityai/stable-diffusion-2-1", "fp32"],
      // On the default weights, inpainting runs Replicate's inpainting checkpoint, loaded when first asked for.
      ["stability-ai/stable-diffusion-inpainting", "stabilityai/stable-diffusion-2-inpainting", "fp32"],
    ],
  );
  assert.deepEqual(
    c.models.map((m) => [m.schema, m.sharesWeightsOf, m.setupOnDemand]),
    [
      [undefined, undefined, undefined],
      ["img2img", "stability-ai/stable-diffusion", undefined],
      ["inpainting", undefined, true],
    ],
  );
  assert.deepEqual(c.hub, { endpoint: "https://mirror.example", cacheDir: "/cache/hf", token: "hf_x", offline: false });
  const d = loadConfig(["--model", "stabilityai/sd-turbo", "--variant", "fp16"], { HF_HUB_OFFLINE: "1" });
  assert.deepEqual(
    d.models.map((m) => [m.name, m.weights, m.variant]),
    [
      ["stability-ai/stable-diffusion", "stabilityai/sd-turbo", "fp16"],
      ["stability-ai/stable-diffusion-img2img", "stabilityai/sd-turbo", "fp16"],
      ["stability-ai/stable-diffusion-inpainting", "stabilityai/sd-turbo", "fp16"],
    ],
  );
  assert.deepEqual(
    d.models.map((m) => m.sharesWeightsOf),
    [undefined, "stability-ai/stable-diffusion", "stability-ai/stable-diffusion"],
  );
  assert.equal(d.hub.offline, true);
});

test("bad values fail at start, naming the setting", () => {
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [["--models", "/nonexistent/models.json"], {}, /models file \/nonexistent\/models\.json: cannot be read/],
    [["--variant", "int4"], {}, /--variant \/ SDSERVE_VARIANT must be fp32 or fp16/],
    [["--model", "m", "--port", "http"], {}, /--port must be an integer/],
    [["--model", "m"], { PORT: "70000" }, /PORT must be an integer from 0 to 65535/],
    [["--model", "m"], { SDSERVE_OUTPUT_RETENTION: "soon" }, /SDSERVE_OUTPUT_RETENTION must be a duration/],
    [["--model", "m"], { SDSERVE_QUEUE_MAX: "0" }, /SDSERVE_QUEUE_MAX/],
    [["--model", "m"], { SDSERVE_BODY_LIMIT: "lots" }, /SDSERVE_BODY_LIMIT/],
    [["--model", "m"], { SDSERVE_READ_CACHE: "-1" }, /SDSERVE_READ_CACHE must be a size/],
    [["--model", "m"], { SDSERVE_READ_CACHE: "1e9" }, /SDSERVE_READ_CACHE must be a size/],
    [
      ["--model", "m"],
      { SDSERVE_WEBHOOK_ALLOW_PRIVATE: "maybe" },
      /SDSERVE_WEBHOOK_ALLOW_PRIVATE must be true or false/,
    ],
    [["--model", "m"], { SDSERVE_RATE_LIMIT: "fast" }, /SDSERVE_RATE_LIMIT/],
    [["--model", "m"], { SDSERVE_STREAM_KEEPALIVE: "10ms" }, /SDSERVE_STREAM_KEEPALIVE must be a duration/],
    [["--model", "m", "--provider", "tpu"], {}, /--provider/],
    [["--model", "m", "--public-url", "ftp://x"], {}, /--public-url must be an http or https URL/],
  ];
  for (const [argv, env, message] of cases) {
    assert.throws(
      () => loadConfig(argv, env),
      (err: Error) => err instanceof ConfigError && message.test(err.message),
    );
  }
});

test("scale-out settings: service URLs checked by scheme, --no-worker needs Redis", () => {
  const c = loadConfig([], {
    DATABASE_URL: "postgres://u:secret@db:5432/sd",
    REDIS_URL: "redis://cache:6379/2",
    SDSERVE_WORKER_CONCURRENCY: "3",
    SDSERVE_JOB_LOCK: "5s",
  });
  assert.equal(c.databaseUrl, "postgres://u:secret@db:5432/sd");
  assert.equal(c.redisUrl, "redis://cache:6379/2");
  assert.equal(c.redisPrefix, "sdserve");
  assert.equal(c.workerConcurrency, 3);
  assert.equal(c.jobLockMs, 5000);
  assert.equal(c.runWorker, true);
  assert.equal(loadConfig(["--no-worker"], { REDIS_URL: "redis://127.0.0.1" }).runWorker, false);
  const d = loadConfig([], {});
  assert.equal(d.databaseUrl, undefined);
  assert.equal(d.redisUrl, undefined);
  assert.equal(d.jobLockMs, 30_000);
  assert.throws(() => loadConfig(["--no-worker"], {}), /--no-worker needs REDIS_URL/);
  assert.throws(
    () => loadConfig([], { DATABASE_URL: "mysql://u:secret@db/sd" }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /DATABASE_URL must be a postgres/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    },
  );
  assert.throws(() => loadConfig([], { REDIS_URL: "not a url" }), /REDIS_URL must be a URL/);
  assert.throws(() => loadConfig([], { SDSERVE_JOB_LOCK: "10ms" }), /SDSERVE_JOB_LOCK/);
});

test("sdserve worker: needs REDIS_URL, takes --concurrency, answers health and metrics on 9090 by default", () => {
  const w = loadConfig(["--concurrency", "2"], { REDIS_URL: "redis://127.0.0.1" }, "worker");
  assert.equal(w.workerConcurrency, 2);
  assert.equal(w.port, 9090);
  assert.throws(() => loadConfig([], {}, "worker"), /sdserve worker needs REDIS_URL/);
  assert.throws(() => loadConfig(["--no-worker"], { REDIS_URL: "redis://127.0.0.1" }, "worker"));
  assert.throws(() => loadConfig(["--concurrency", "2"], {}), /concurrency/);
});

test("S3 settings: the bucket turns them on, keys go in pairs, presigned needs a bucket", () => {
  assert.equal(loadConfig([], {}).s3, undefined);
  const c = loadConfig([], {
    S3_BUCKET: "outputs",
    S3_ENDPOINT: "http://127.0.0.1:9000",
    S3_ACCESS_KEY_ID: "k",
    S3_SECRET_ACCESS_KEY: "s",
    S3_PREFIX: "/sdserve",
    SDSERVE_OUTPUT_URLS: "presigned",
  });
  assert.deepEqual(c.s3, {
    bucket: "outputs",
    prefix: "sdserve/",
    endpoint: "http://127.0.0.1:9000",
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "k", secretAccessKey: "s" },
    presign: true,
  });
  const aws = loadConfig([], { S3_BUCKET: "outputs", AWS_REGION: "eu-west-1" }).s3;
  assert.equal(aws?.forcePathStyle, false);
  assert.equal(aws?.region, "eu-west-1");
  assert.equal(aws?.credentials, undefined);
  assert.equal(aws?.presign, false);
  assert.throws(() => loadConfig([], { SDSERVE_OUTPUT_URLS: "presigned" }), /needs S3_BUCKET/);
  assert.throws(() => loadConfig([], { S3_BUCKET: "outputs", S3_ACCESS_KEY_ID: "k" }), /go together/);
  assert.throws(() => loadConfig([], { S3_BUCKET: "Bad_Bucket" }), /S3_BUCKET/);
});

test("LOG_LEVEL / --log-level and SDSERVE_LOG_FORMAT", () => {
  assert.equal(loadConfig([], {}).logLevel, "info");
  assert.equal(loadConfig([], {}).logFormat, "auto");
  assert.equal(loadConfig([], { LOG_LEVEL: "debug" }).logLevel, "debug");
  assert.equal(loadConfig(["--log-level", "warn"], { LOG_LEVEL: "debug" }).logLevel, "warn");
  assert.equal(loadConfig([], { SDSERVE_LOG_FORMAT: "json" }).logFormat, "json");
  assert.throws(() => loadConfig([], { LOG_LEVEL: "loud" }), /--log-level \/ LOG_LEVEL must be fatal, error/);
  assert.throws(() => loadConfig([], { SDSERVE_LOG_FORMAT: "xml" }), /SDSERVE_LOG_FORMAT must be auto, json or pretty/);
});

test("the engine's caches and the hub come from settings, never from the engine's own reading", () => {
  const c = loadConfig([], { XDG_CACHE_HOME: "/xdg" });
  assert.equal(c.cacheDir, "/xdg/sdserve");
  assert.equal(c.optimizedCache, "/xdg/sdserve/optimized");
  assert.equal(c.hub.cacheDir, "/xdg/huggingface/hub");
  assert.equal(loadConfig([], { SDSERVE_CACHE: "/c" }).optimizedCache, "/c/optimized");
  assert.equal(loadConfig([], { SDSERVE_OPTIMIZED_CACHE: "off" }).optimizedCache, false);
  assert.equal(loadConfig([], { SDSERVE_OPTIMIZED_CACHE: "/o" }).optimizedCache, "/o");
  assert.equal(loadConfig([], { HF_HOME: "/h" }).hub.cacheDir, "/h/hub");
  assert.equal(loadConfig([], { HF_HOME: "/h", HUGGINGFACE_HUB_CACHE: "/old" }).hub.cacheDir, "/old");
});

test("--help is the table: every setting of the command once, with its default, within the width", () => {
  for (const command of ["serve", "worker"] as const) {
    const help = command === "serve" ? SERVE_HELP : WORKER_HELP;
    for (const line of help.split("\n")) assert.ok(line.length <= 110, `too long: ${line}`);
    for (const s of Object.values(SETTINGS)) {
      if (!(s.commands as readonly string[]).includes(command)) continue;
      const name = "flag" in s ? `--${s.flag}` : s.env?.[0];
      assert.equal(help.match(new RegExp(`^  ${name}[ ,\\n]`, "gm"))?.length, 1, `${command}: ${name}`);
    }
  }
  assert.match(SERVE_HELP, /--port <n> +SDSERVE_PORT, PORT +.*\(default 8080\)/s);
  assert.match(WORKER_HELP, /\(default 9090\)/);
  assert.match(SERVE_HELP, /SDSERVE_OUTPUT_RETENTION +.*\(default\s+1h\)/);
  assert.doesNotMatch(WORKER_HELP, /SDSERVE_OUTPUT_RETENTION/);
});

test("--preview-vae gives every model a TAESD preview decoder; --preview-size is bounded", () => {
  const taesd = path.join(GOLDEN_FAMILY, "taesd/tiny-taesd");
  const c = loadConfig(["--model", "tiny-random", "--preview-vae", taesd], {});
  assert.equal(c.models[0]?.previewVae, taesd);
  assert.throws(
    () => loadConfig(["--model", "tiny-random"], { SDSERVE_PREVIEW_VAE: path.join(taesd, "absent") }),
    (err: unknown) =>
      err instanceof ConfigError && /--preview-vae \/ SDSERVE_PREVIEW_VAE: .* has no config\.json/.test(err.message),
  );
  assert.equal(c.previewSize, 256);
  assert.equal(loadConfig(["--model", "m"], { SDSERVE_PREVIEW_SIZE: "512" }).previewSize, 512);
  assert.equal(loadConfig(["--model", "m"], {}).models[0]?.previewVae, undefined);
  for (const bad of ["0", "7", "1025", "-8", "256px", "1e3", "9".repeat(400)]) {
    assert.throws(() => loadConfig(["--model", "m", "--preview-size", bad], {}), /--preview-size/);
  }
});
