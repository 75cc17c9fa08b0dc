/**
 * The predictions service on its embedded parts, with no HTTP: SQLite in memory, the in-process
 * queue and events, outputs in a temporary folder. `model` is stability-ai/stable-diffusion's
 * name and Input schema (so validation is real) with a predict() the test drives.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DiskFileStore } from "../../src/server/files/disk.js";
import type { ModelAdapter, OutputFile, PredictContext } from "../../src/server/models/model.js";
import {
  imageLimitsOf,
  STABLE_DIFFUSION_SCHEMAS,
  STABLE_DIFFUSION_VERSION,
} from "../../src/server/models/stable-diffusion.js";
import { LocalPredictionEvents } from "../../src/server/predictions/events.js";
import { PredictionLifecycle } from "../../src/server/predictions/lifecycle.js";
import { OutputFiles } from "../../src/server/predictions/output-files.js";
import type { UrlBase } from "../../src/server/predictions/serialize.js";
import { PredictionService, type ServiceLimits } from "../../src/server/predictions/service.js";
import type { SettledPredictionCache } from "../../src/server/predictions/settled-cache.js";
import { LocalJobQueue } from "../../src/server/queue/local.js";
import { type InvalidField, validate } from "../../src/server/schemas/json-schema.js";
import { SqlitePredictionStore } from "../../src/server/store/sqlite.js";

export const BASE: UrlBase = { api: "http://127.0.0.1:1/v1", origin: "http://127.0.0.1:1" };
export const ACCOUNT = "account-a";

/** An adapter whose predict() runs `run` (by default: one 1-byte "image" at once). */
export class TestAdapter implements ModelAdapter {
  readonly model;
  constructor(owner = "stability-ai", name = "stable-diffusion") {
    this.model = { owner, name, description: "test stand-in", githubUrl: null, paperUrl: null, licenseUrl: null };
  }
  readonly version = { id: STABLE_DIFFUSION_VERSION, createdAt: "2022-11-22T22:25:35.000000Z", cogVersion: "0.8.6" };
  /** A copy per adapter, as each real adapter makes its own. */
  readonly schemas = structuredClone(STABLE_DIFFUSION_SCHEMAS);
  readonly imageLimits = imageLimitsOf(STABLE_DIFFUSION_SCHEMAS);
  readonly state = "READY" as const;
  readonly setupError = undefined;
  run: (input: Record<string, unknown>, ctx: PredictContext) => Promise<OutputFile[]> = async () => [
    { name: "out-0.png", contentType: "image/png", data: new Uint8Array([1]) },
  ];

  validateInput(input: unknown): InvalidField[] {
    return validate(this.schemas["Input"] ?? {}, input, {
      root: { components: { schemas: this.schemas } },
      path: "input",
    });
  }
  async setup(): Promise<void> {}
  predict(input: Record<string, unknown>, ctx: PredictContext): Promise<OutputFile[]> {
    return this.run(input, ctx);
  }
  async close(): Promise<void> {}
}

export interface Harness {
  store: SqlitePredictionStore;
  queue: LocalJobQueue;
  events: LocalPredictionEvents;
  files: DiskFileStore;
  lifecycle: PredictionLifecycle;
  service: PredictionService;
  model: TestAdapter;
  /** A new lifecycle and service on the same store, files and queue, as after a restart. */
  restart(): Harness;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** The lifecycle's and the output files' retention (ms after completion); default null: kept forever. */
  outputRetentionMs?: number | null;
  /** The read path's cache, given to the lifecycle and the service. */
  settled?: SettledPredictionCache;
}

export function newHarness(
  limits: Partial<ServiceLimits> = {},
  extraModels: TestAdapter[] = [],
  options: HarnessOptions = {},
): Harness {
  const retention = options.outputRetentionMs ?? null;
  const dir = mkdtempSync(path.join(os.tmpdir(), "sdserve-service-test-"));
  const store = new SqlitePredictionStore(":memory:");
  const files = new DiskFileStore(path.join(dir, "files"));
  const model = new TestAdapter();
  const open = (queue: LocalJobQueue): Harness => {
    const events = new LocalPredictionEvents();
    const lifecycle = new PredictionLifecycle(store, queue, files, events, retention, undefined, options.settled);
    const service = new PredictionService(
      store,
      lifecycle,
      new OutputFiles(store, files, retention),
      events,
      [model, ...extraModels],
      {
        queueMax: 100,
        queueMaxPerToken: 100,
        maxRunTimeMs: null,
        webhookAllowPrivate: false,
        ...limits,
      },
      options.settled,
    );
    return {
      store,
      queue,
      events,
      files,
      lifecycle,
      service,
      model,
      restart: () => {
        lifecycle.shutdown();
        return open(new LocalJobQueue());
      },
      close: async () => {
        lifecycle.shutdown();
        await queue.close();
        await events.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
  return open(new LocalJobQueue());
}

/** A create with a valid body. */
export function createOne(h: Harness, extra: { cancelAfterMs?: number } = {}) {
  return h.service.create(
    ACCOUNT,
    { body: { version: STABLE_DIFFUSION_VERSION, input: { prompt: "a fox" } }, ...extra },
    BASE,
  );
}
