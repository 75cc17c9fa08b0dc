/**
 * The scale-out PredictionStore: PostgreSQL (node-postgres), shared by every API node and worker.
 * Same behaviour as the SQLite store (the contract tests in test/server/store-contract.ts run
 * against both). Timestamps and ids are text in the "C" collation, so that newest-first order and
 * the list cursors compare them byte by byte, exactly as SQLite does. The schema is migrated on
 * open, under an advisory lock, so nodes starting together migrate once.
 */
import pg from "pg";
import type { PredictionRecord, PredictionStatus, WebhookEvent } from "../predictions/prediction.js";
import { MIGRATIONS } from "./postgres-migrations.js";
import {
  glanceFromRow,
  MARK_COLUMNS,
  type MarkRow,
  markFromRow,
  POSTGRES_LOG_TAIL,
  type PredictionRow,
  patchColumns,
  predictionFromRow,
  UPLOAD_COLUMNS,
  type UploadRow,
  uploadFromRow,
  uploadValues,
} from "./rows.js";
import type {
  A1111Glance,
  A1111Mark,
  ListPosition,
  ListQuery,
  PredictionPatch,
  PredictionStore,
  UploadRecord,
  WebhookDelivery,
} from "./store.js";

/** Any fixed number: the key of the advisory lock held while migrating. */
const MIGRATION_LOCK = 7_361_104_529;

type Row = PredictionRow<boolean>;

const fromRow = (r: Row): PredictionRecord => predictionFromRow(r, (v) => v);

/** Patch field → column, and how its value is stored. */
const COLUMNS = patchColumns((v) => v);

const SELECT = "SELECT p.* FROM predictions p";

export interface PostgresStoreOptions {
  /** Most connections this process opens (default 10). */
  maxConnections?: number;
  log?: (line: string) => void;
}

/**
 * PostgreSQL text cannot hold a NUL character, and a parameter with one is an error, not a
 * mismatch: a lookup by such a value (a crafted id, ?model=%00) finds nothing instead.
 */
function hasNul(...values: (string | undefined)[]): boolean {
  return values.some((v) => v?.includes("\u0000"));
}

export class PostgresPredictionStore implements PredictionStore {
  private constructor(private readonly pool: pg.Pool) {}

  /** Connects and brings the schema up to date. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresPredictionStore> {
    const pool = new pg.Pool({ connectionString: url, max: opts.maxConnections ?? 10 });
    // An idle connection that the server drops must not take the process down.
    pool.on("error", (err) => opts.log?.(`postgres: ${err.message}`));
    try {
      await migrate(pool, opts.log);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PostgresPredictionStore(pool);
  }

  private async rows(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.pool.query<Row>(sql, params)).rows;
  }

  async insert(p: PredictionRecord, idempotencyKey?: string): Promise<PredictionRecord> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      if (idempotencyKey !== undefined) {
        // A concurrent claim of the same key waits here until the other transaction ends.
        const claimed = await client.query(
          `INSERT INTO idempotency_keys (account, key, prediction_id, created_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account, key) DO NOTHING`,
          [p.account, idempotencyKey, p.id, p.createdAt],
        );
        if (claimed.rowCount === 0) {
          const earlier = await client.query<Row>(
            `${SELECT} JOIN idempotency_keys k ON p.id = k.prediction_id WHERE k.account = $1 AND k.key = $2`,
            [p.account, idempotencyKey],
          );
          if (earlier.rows[0]) {
            await client.query("COMMIT");
            return fromRow(earlier.rows[0]);
          }
          // The key outlived its prediction: it names this one now.
          await client.query(
            "UPDATE idempotency_keys SET prediction_id = $1, created_at = $2 WHERE account = $3 AND key = $4",
            [p.id, p.createdAt, p.account, idempotencyKey],
          );
        }
      }
      await client.query(
        `INSERT INTO predictions (id, account, model, version, input, logs, output, error, status, data_removed,
           created_at, started_at, completed_at, webhook, webhook_events_filter, deadline, api_base, origin,
           files_key, stream_key, attempts, prompt_syntax, a1111_settings)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
        [
          p.id,
          p.account,
          p.model,
          p.version,
          JSON.stringify(p.input),
          p.logs,
          p.output === null ? null : JSON.stringify(p.output),
          p.error,
          p.status,
          p.dataRemoved,
          p.createdAt,
          p.startedAt,
          p.completedAt,
          p.webhook,
          p.webhookEventsFilter === null ? null : JSON.stringify(p.webhookEventsFilter),
          p.deadline,
          p.apiBase,
          p.origin,
          p.filesKey,
          p.streamKey,
          p.attempts,
          p.promptSyntax ?? null,
          p.a1111 ? JSON.stringify(p.a1111) : null,
        ],
      );
      await client.query("COMMIT");
      return p;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async findByIdempotencyKey(account: string, key: string): Promise<PredictionRecord | undefined> {
    if (hasNul(account, key)) return undefined;
    const [row] = await this.rows(
      `${SELECT} JOIN idempotency_keys k ON p.id = k.prediction_id WHERE k.account = $1 AND k.key = $2`,
      [account, key],
    );
    return row ? fromRow(row) : undefined;
  }

  async forgetIdempotencyKeys(before: string): Promise<void> {
    await this.pool.query("DELETE FROM idempotency_keys WHERE created_at < $1", [before]);
  }

  private async one(column: "id" | "files_key" | "stream_key", value: string): Promise<PredictionRecord | undefined> {
    if (hasNul(value)) return undefined;
    const [row] = await this.rows(`${SELECT} WHERE p.${column} = $1`, [value]);
    return row ? fromRow(row) : undefined;
  }

  get(id: string): Promise<PredictionRecord | undefined> {
    return this.one("id", id);
  }

  findByFilesKey(key: string): Promise<PredictionRecord | undefined> {
    return this.one("files_key", key);
  }

  findByStreamKey(key: string): Promise<PredictionRecord | undefined> {
    return this.one("stream_key", key);
  }

  async list(q: ListQuery): Promise<PredictionRecord[]> {
    if (hasNul(q.account, q.model, q.version, q.status, q.after?.id, q.before?.id)) return [];
    const params: unknown[] = [q.account];
    const where = ["p.account = $1"];
    const param = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.after) {
      const c = param(q.after.createdAt);
      where.push(`(p.created_at < ${c} OR (p.created_at = ${c} AND p.id < ${param(q.after.id)}))`);
    }
    if (q.before) {
      const c = param(q.before.createdAt);
      where.push(`(p.created_at > ${c} OR (p.created_at = ${c} AND p.id > ${param(q.before.id)}))`);
    }
    if (q.status !== undefined) where.push(`p.status = ${param(q.status)}`);
    if (q.model !== undefined) where.push(`p.model = ${param(q.model)}`);
    if (q.version !== undefined) where.push(`p.version = ${param(q.version)}`);
    if (q.createdAfter !== undefined) where.push(`p.created_at >= ${param(q.createdAfter)}`);
    if (q.createdBefore !== undefined) where.push(`p.created_at < ${param(q.createdBefore)}`);
    // The previous page is the rows just newer than the boundary: take them oldest first, then flip.
    const order = q.before && !q.after ? "ASC" : "DESC";
    const rows = await this.rows(
      `${SELECT} WHERE ${where.join(" AND ")} ORDER BY p.created_at ${order}, p.id ${order} LIMIT ${param(q.limit)}`,
      params,
    );
    if (order === "ASC") rows.reverse();
    return rows.map(fromRow);
  }

  async update(
    id: string,
    patch: PredictionPatch,
    whenStatus?: readonly PredictionStatus[],
    whenAttempts?: number,
  ): Promise<PredictionRecord | undefined> {
    const params: unknown[] = [id];
    const sets: string[] = [];
    for (const [key, value] of Object.entries(patch) as [keyof PredictionPatch, never][]) {
      if (value === undefined) continue;
      const [column, encode] = COLUMNS[key];
      params.push(encode(value));
      sets.push(`${column} = $${params.length}`);
    }
    let condition = "";
    if (whenStatus) {
      params.push([...whenStatus]);
      condition = ` AND status = ANY($${params.length}::text[])`;
    }
    if (whenAttempts !== undefined) {
      params.push(whenAttempts);
      condition += ` AND attempts = $${params.length}`;
    }
    const [row] = await this.rows(
      `UPDATE predictions SET ${sets.join(", ")} WHERE id = $1${condition} RETURNING *`,
      params,
    );
    return row ? fromRow(row) : undefined;
  }

  async appendLog(id: string, line: string): Promise<void> {
    // Logs end with the prediction: a line from a step still in flight at cancel is dropped.
    await this.pool.query(
      "UPDATE predictions SET logs = logs || $1 WHERE id = $2 AND status IN ('starting', 'processing')",
      [`${line}\n`, id],
    );
  }

  // The input (an img2img call's pictures) is kept out of line (TOAST): these never read it.
  async openA1111Glances(account: string, limit: number): Promise<A1111Glance[]> {
    if (hasNul(account)) return [];
    const { rows } = await this.pool.query<MarkRow>(
      `SELECT ${MARK_COLUMNS}, ${POSTGRES_LOG_TAIL} AS log_tail FROM predictions
         WHERE account = $1 AND a1111_settings IS NOT NULL AND status IN ('starting', 'processing')
         ORDER BY created_at ASC, id ASC LIMIT $2`,
      [account, limit],
    );
    return rows.map(glanceFromRow);
  }

  async a1111MarksSince(account: string, createdFrom: string, limit: number): Promise<A1111Mark[]> {
    if (hasNul(account, createdFrom)) return [];
    const { rows } = await this.pool.query<MarkRow>(
      `SELECT ${MARK_COLUMNS} FROM predictions
         WHERE account = $1 AND a1111_settings IS NOT NULL AND created_at >= $2
         ORDER BY created_at ASC, id ASC LIMIT $3`,
      [account, createdFrom, limit],
    );
    return rows.map(markFromRow);
  }

  async unfinished(): Promise<PredictionRecord[]> {
    const rows = await this.rows(
      `${SELECT} WHERE p.status IN ('starting', 'processing') ORDER BY p.created_at ASC, p.id ASC`,
    );
    return rows.map(fromRow);
  }

  async countUnfinished(account?: string): Promise<number> {
    const unfinished = "SELECT count(*)::int AS n FROM predictions WHERE status IN ('starting', 'processing')";
    const { rows } =
      account === undefined
        ? await this.pool.query<{ n: number }>(unfinished)
        : await this.pool.query<{ n: number }>(`${unfinished} AND account = $1`, [account]);
    return rows[0]?.n ?? 0;
  }

  async countByModel(model: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM predictions WHERE model = $1",
      [model],
    );
    return rows[0]?.n ?? 0;
  }

  async completedBefore(completedBefore: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      "SELECT id FROM predictions WHERE NOT data_removed AND completed_at IS NOT NULL AND completed_at < $1",
      [completedBefore],
    );
    return rows.map((r) => r.id);
  }

  async recordWebhookDelivery(predictionId: string, d: WebhookDelivery): Promise<void> {
    await this.pool.query(
      `INSERT INTO webhook_deliveries (prediction_id, webhook_id, event, attempt, at, status_code, error, delivered, final)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [predictionId, d.webhookId, d.event, d.attempt, d.at, d.statusCode, d.error, d.delivered, d.final],
    );
  }

  async webhookDeliveries(predictionId: string): Promise<WebhookDelivery[]> {
    const { rows } = await this.pool.query<{
      webhook_id: string;
      event: string;
      attempt: number;
      at: string;
      status_code: number | null;
      error: string | null;
      delivered: boolean;
      final: boolean;
    }>("SELECT * FROM webhook_deliveries WHERE prediction_id = $1 ORDER BY at, seq", [predictionId]);
    return rows.map((r) => ({
      webhookId: r.webhook_id,
      event: r.event as WebhookEvent,
      attempt: r.attempt,
      at: r.at,
      statusCode: r.status_code,
      error: r.error,
      delivered: r.delivered,
      final: r.final,
    }));
  }

  async finishedWithWebhookSince(since: string): Promise<PredictionRecord[]> {
    const rows = await this.rows(
      `${SELECT} WHERE p.webhook IS NOT NULL AND p.completed_at >= $1
         AND p.status IN ('succeeded', 'failed', 'canceled') ORDER BY p.completed_at`,
      [since],
    );
    return rows.map(fromRow);
  }

  async insertUpload(u: UploadRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO uploads (${UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      uploadValues(u),
    );
  }

  async getUpload(id: string): Promise<UploadRecord | undefined> {
    const { rows } = await this.pool.query<UploadRow>("SELECT * FROM uploads WHERE id = $1", [id]);
    return rows[0] ? uploadFromRow(rows[0]) : undefined;
  }

  async listUploads(account: string, limit: number, after?: ListPosition): Promise<UploadRecord[]> {
    const { rows } = after
      ? await this.pool.query<UploadRow>(
          `SELECT * FROM uploads WHERE account = $1 AND (created_at, id) < ($2, $3)
             ORDER BY created_at DESC, id DESC LIMIT $4`,
          [account, after.createdAt, after.id, limit],
        )
      : await this.pool.query<UploadRow>(
          "SELECT * FROM uploads WHERE account = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
          [account, limit],
        );
    return rows.map(uploadFromRow);
  }

  async deleteUpload(id: string): Promise<boolean> {
    const r = await this.pool.query("DELETE FROM uploads WHERE id = $1", [id]);
    return (r.rowCount ?? 0) > 0;
  }

  async expiredUploads(now: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      "SELECT id FROM uploads WHERE expires_at <= $1 ORDER BY expires_at",
      [now],
    );
    return rows.map((r) => r.id);
  }

  async getSetting(key: string): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ value: string }>("SELECT value FROM settings WHERE key = $1", [key]);
    return rows[0]?.value;
  }

  async setSetting(key: string, value: string): Promise<void> {
    await this.pool.query(
      "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [key, value],
    );
  }

  async setSettingIfAbsent(key: string, value: string): Promise<string> {
    // A concurrent insert of the same key makes this one wait for it and then do nothing; the
    // read that follows (a new snapshot) sees the row that won.
    await this.pool.query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [
      key,
      value,
    ]);
    return (await this.getSetting(key)) as string;
  }

  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }
}

/** Applies the migrations this database has not had yet, each in its own transaction. */
async function migrate(pool: pg.Pool, log?: (line: string) => void): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS sdserve_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ version: number }>("SELECT version FROM sdserve_migrations");
      const done = new Set(rows.map((r) => r.version));
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(m.sql);
          await client.query("INSERT INTO sdserve_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => undefined);
          throw new Error(`postgres migration ${m.version} (${m.name}) failed: ${(err as Error).message}`);
        }
        log?.(`postgres: applied migration ${m.version} (${m.name})`);
      }
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
}
