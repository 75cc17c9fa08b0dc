/**
 * The four parts behind the predictions service, chosen by config: the embedded defaults
 * (SQLite, in-process queue and events, local disk), or the shared ones that many API nodes and
 * workers use together (PostgreSQL by DATABASE_URL; BullMQ and pub/sub on Redis by REDIS_URL;
 * S3-compatible storage by S3_BUCKET).
 */
import path from "node:path";
import type { Config } from "../config.js";
import { DiskFileStore } from "./files/disk.js";
import type { FileStore } from "./files/file-store.js";
import { S3FileStore } from "./files/s3.js";
import { LocalPredictionEvents, type PredictionEvents } from "./predictions/events.js";
import { RedisPredictionEvents } from "./predictions/redis-events.js";
import { privateDir, privateFile, tightenIfPresent } from "./private-files.js";
import { BullMqJobQueue } from "./queue/bullmq.js";
import { LocalJobQueue } from "./queue/local.js";
import type { JobQueue } from "./queue/queue.js";
import { PostgresPredictionStore } from "./store/postgres.js";
import { SqlitePredictionStore } from "./store/sqlite.js";
import type { PredictionStore } from "./store/store.js";

export interface Backends {
  store: PredictionStore;
  queue: JobQueue;
  files: FileStore;
  events: PredictionEvents;
  /** Closes the queue and events, then the store (last: the others may still write to it). */
  close(): Promise<void>;
}

export async function openBackends(config: Config, log: (line: string) => void): Promise<Backends> {
  await privateDir(config.dataDir);
  const dbFile = path.join(config.dataDir, "sdserve.db");
  if (!config.databaseUrl) {
    // SQLite gives its -wal and -shm files the database's mode, so a 0600 database makes them 0600.
    await privateFile(dbFile);
    await tightenIfPresent(`${dbFile}-wal`, `${dbFile}-shm`, `${dbFile}-journal`);
  }
  const store = config.databaseUrl
    ? await PostgresPredictionStore.open(config.databaseUrl, { log })
    : new SqlitePredictionStore(dbFile);
  let queue: JobQueue;
  let events: PredictionEvents;
  if (config.redisUrl) {
    const redisEvents = new RedisPredictionEvents(config.redisUrl, config.redisPrefix, log);
    await redisEvents.start();
    events = redisEvents;
    queue = new BullMqJobQueue({ url: config.redisUrl, prefix: config.redisPrefix, lockMs: config.jobLockMs, log });
  } else {
    events = new LocalPredictionEvents();
    queue = new LocalJobQueue();
  }
  if (!config.s3) await privateDir(path.join(config.dataDir, "files"));
  const files: FileStore = config.s3
    ? new S3FileStore(config.s3)
    : new DiskFileStore(path.join(config.dataDir, "files"));
  return {
    store,
    queue,
    files,
    events,
    close: async () => {
      await queue.close();
      await events.close();
      files.close?.();
      await store.close();
    },
  };
}
