/**
 * The default PredictionStore: one SQLite file in the data directory (better-sqlite3, WAL).
 * Writes are synchronous and durable when the call returns, which is what "written to the
 * store before it is announced" needs.
 */
import Database from "better-sqlite3";
import type { PredictionRecord, PredictionStatus, WebhookEvent } from "../predictions/prediction.js";
import {
  glanceFromRow,
  MARK_COLUMNS,
  type MarkRow,
  markFromRow,
  type PredictionRow,
  patchColumns,
  predictionFromRow,
  UPLOAD_COLUMNS,
  type UploadRow,
  uploadFromRow,
  uploadValues,
} from "./rows.js";
import {
  type A1111Glance,
  type A1111Mark,
  type ListPosition,
  type ListQuery,
  LOG_TAIL,
  type PredictionPatch,
  type PredictionStore,
  type UploadRecord,
  type WebhookDelivery,
} from "./store.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL,
  model TEXT NOT NULL,
  version TEXT NOT NULL,
  input TEXT NOT NULL,
  logs TEXT NOT NULL DEFAULT '',
  output TEXT,
  error TEXT,
  status TEXT NOT NULL,
  data_removed INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  started_at TEXT,
  completed_at TEXT,
  webhook TEXT,
  webhook_events_filter TEXT,
  deadline TEXT,
  api_base TEXT NOT NULL,
  origin TEXT NOT NULL,
  files_key TEXT NOT NULL UNIQUE,
  stream_key TEXT NOT NULL UNIQUE,
  attempts INTEGER NOT NULL DEFAULT 0,
  prompt_syntax TEXT,
  a1111_settings TEXT
);
CREATE INDEX IF NOT EXISTS predictions_account_order ON predictions (account, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS predictions_unfinished ON predictions (status, created_at) WHERE status IN ('starting', 'processing');
CREATE INDEX IF NOT EXISTS predictions_retention ON predictions (completed_at) WHERE data_removed = 0;
-- appendLog reads a prediction's status from here, never from its row (which lies past its input).
CREATE INDEX IF NOT EXISTS predictions_id_status ON predictions (id, status);
-- Lines logged while a prediction runs, after predictions.logs. SQLite rewrites a whole row on
-- UPDATE: appended to the prediction's own row, each line would rewrite its input (megabytes of an
-- img2img call's pictures) once per step.
CREATE TABLE IF NOT EXISTS prediction_logs (
  prediction_id TEXT PRIMARY KEY,
  text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency_keys (
  account TEXT NOT NULL,
  key TEXT NOT NULL,
  prediction_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  prediction_id TEXT NOT NULL,
  webhook_id TEXT NOT NULL,
  event TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at TEXT NOT NULL,
  status_code INTEGER,
  error TEXT,
  delivered INTEGER NOT NULL,
  final INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_prediction ON webhook_deliveries (prediction_id, at);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  metadata TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_account_order ON uploads (account, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS uploads_expiry ON uploads (expires_at);
`;

/**
 * What a progress poll reads of an /sdapi call's predictions, covered by indexes (made once the
 * a1111_settings column exists): the row itself lies past its input, megabytes of an img2img
 * call's pictures that SQLite would walk through page by page.
 */
const A1111_INDEXES = `
CREATE INDEX IF NOT EXISTS predictions_a1111_open ON predictions
  (account, created_at, id, status, started_at, a1111_settings, logs)
  WHERE a1111_settings IS NOT NULL AND status IN ('starting', 'processing');
CREATE INDEX IF NOT EXISTS predictions_a1111_calls ON predictions
  (account, created_at, id, status, started_at, a1111_settings) WHERE a1111_settings IS NOT NULL;
`;

/** A predictions row read with its logged lines (prediction_logs.text), as PREDICTIONS selects it. */
type Row = PredictionRow<number> & { logged?: string | null };

const fromRow = (r: Row): PredictionRecord =>
  predictionFromRow(r.logged ? { ...r, logs: r.logs + r.logged } : r, (v) => v !== 0);

/** The predictions table `p` with each one's logged lines, for `SELECT ${PREDICTIONS} WHERE …`. */
const PREDICTIONS = "p.*, l.text AS logged FROM predictions p LEFT JOIN prediction_logs l ON l.prediction_id = p.id";
/** The end of all of a prediction's logs (its latest step line), in a query over PREDICTIONS' join. */
const LOG_TAIL_SQL = `substr(p.logs || coalesce(l.text, ''), -${LOG_TAIL})`;

/** Patch field → column, and how its value is stored. */
const COLUMNS = patchColumns((v) => (v ? 1 : 0));

export class SqlitePredictionStore implements PredictionStore {
  private readonly db: Database.Database;

  /** Prepared statements by their SQL: preparing costs more than running a lookup by key. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    // FULL: a 201 is only sent after the row is on disk, so a crash right after cannot lose it.
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 5000");
    this.db.exec(SCHEMA);
    // A data directory made before the column existed gets it (CREATE TABLE IF NOT EXISTS left its table as it was).
    const columns = this.db.pragma("table_info(predictions)") as { name: string }[];
    if (!columns.some((c) => c.name === "prompt_syntax")) {
      this.db.exec("ALTER TABLE predictions ADD COLUMN prompt_syntax TEXT");
    }
    if (!columns.some((c) => c.name === "a1111_settings")) {
      this.db.exec("ALTER TABLE predictions ADD COLUMN a1111_settings TEXT");
    }
    this.db.exec(A1111_INDEXES);
  }

  async insert(p: PredictionRecord, idempotencyKey?: string): Promise<PredictionRecord> {
    return this.db.transaction(() => {
      if (idempotencyKey !== undefined) {
        const claimed = this.prepare(
          "INSERT OR IGNORE INTO idempotency_keys (account, key, prediction_id, created_at) VALUES (?, ?, ?, ?)",
        ).run(p.account, idempotencyKey, p.id, p.createdAt);
        if (claimed.changes === 0) {
          const earlier = this.idempotent(p.account, idempotencyKey);
          if (earlier) return earlier;
          // The key outlived its prediction: it names this one now.
          this.prepare(
            "UPDATE idempotency_keys SET prediction_id = ?, created_at = ? WHERE account = ? AND key = ?",
          ).run(p.id, p.createdAt, p.account, idempotencyKey);
        }
      }
      this.insertRow(p);
      return p;
    })();
  }

  private idempotent(account: string, key: string): PredictionRecord | undefined {
    const row = this.prepare(
      `SELECT p.*, l.text AS logged FROM idempotency_keys k JOIN predictions p ON p.id = k.prediction_id
         LEFT JOIN prediction_logs l ON l.prediction_id = p.id WHERE k.account = ? AND k.key = ?`,
    ).get(account, key) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  async findByIdempotencyKey(account: string, key: string): Promise<PredictionRecord | undefined> {
    return this.idempotent(account, key);
  }

  async forgetIdempotencyKeys(before: string): Promise<void> {
    this.prepare("DELETE FROM idempotency_keys WHERE created_at < ?").run(before);
  }

  private insertRow(p: PredictionRecord): void {
    this.prepare(
      `INSERT INTO predictions (id, account, model, version, input, logs, output, error, status, data_removed,
           created_at, started_at, completed_at, webhook, webhook_events_filter, deadline, api_base, origin,
           files_key, stream_key, attempts, prompt_syntax, a1111_settings)
         VALUES (@id, @account, @model, @version, @input, @logs, @output, @error, @status, @data_removed,
           @created_at, @started_at, @completed_at, @webhook, @webhook_events_filter, @deadline, @api_base, @origin,
           @files_key, @stream_key, @attempts, @prompt_syntax, @a1111_settings)`,
    ).run({
      id: p.id,
      account: p.account,
      model: p.model,
      version: p.version,
      input: JSON.stringify(p.input),
      logs: p.logs,
      output: p.output === null ? null : JSON.stringify(p.output),
      error: p.error,
      status: p.status,
      data_removed: p.dataRemoved ? 1 : 0,
      created_at: p.createdAt,
      started_at: p.startedAt,
      completed_at: p.completedAt,
      webhook: p.webhook,
      webhook_events_filter: p.webhookEventsFilter === null ? null : JSON.stringify(p.webhookEventsFilter),
      deadline: p.deadline,
      api_base: p.apiBase,
      origin: p.origin,
      files_key: p.filesKey,
      stream_key: p.streamKey,
      attempts: p.attempts,
      prompt_syntax: p.promptSyntax ?? null,
      a1111_settings: p.a1111 ? JSON.stringify(p.a1111) : null,
    });
  }

  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private one(where: string, value: string): PredictionRecord | undefined {
    const row = this.prepare(`SELECT ${PREDICTIONS} WHERE p.${where} = ?`).get(value) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  async get(id: string): Promise<PredictionRecord | undefined> {
    return this.one("id", id);
  }

  async findByFilesKey(key: string): Promise<PredictionRecord | undefined> {
    return this.one("files_key", key);
  }

  async findByStreamKey(key: string): Promise<PredictionRecord | undefined> {
    return this.one("stream_key", key);
  }

  async list(q: ListQuery): Promise<PredictionRecord[]> {
    const where = ["account = @account"];
    const params: Record<string, unknown> = { account: q.account, limit: q.limit };
    if (q.after) {
      where.push("(created_at < @afterCreated OR (created_at = @afterCreated AND id < @afterId))");
      params["afterCreated"] = q.after.createdAt;
      params["afterId"] = q.after.id;
    }
    if (q.before) {
      where.push("(created_at > @beforeCreated OR (created_at = @beforeCreated AND id > @beforeId))");
      params["beforeCreated"] = q.before.createdAt;
      params["beforeId"] = q.before.id;
    }
    for (const [key, column] of [
      ["status", "status"],
      ["model", "model"],
      ["version", "version"],
    ] as const) {
      if (q[key] !== undefined) {
        where.push(`${column} = @${key}`);
        params[key] = q[key];
      }
    }
    if (q.createdAfter !== undefined) {
      where.push("created_at >= @createdAfter");
      params["createdAfter"] = q.createdAfter;
    }
    if (q.createdBefore !== undefined) {
      where.push("created_at < @createdBefore");
      params["createdBefore"] = q.createdBefore;
    }
    // The previous page is the rows just newer than the boundary: take them oldest first, then flip.
    const order = q.before && !q.after ? "ASC" : "DESC";
    const rows = this.prepare(
      `SELECT ${PREDICTIONS} WHERE ${where.join(" AND ")} ORDER BY p.created_at ${order}, p.id ${order} LIMIT @limit`,
    ).all(params) as Row[];
    if (order === "ASC") rows.reverse();
    return rows.map(fromRow);
  }

  async update(
    id: string,
    patch: PredictionPatch,
    whenStatus?: readonly PredictionStatus[],
    whenAttempts?: number,
  ): Promise<PredictionRecord | undefined> {
    const sets: string[] = [];
    const params: Record<string, unknown> = { id };
    for (const [key, value] of Object.entries(patch) as [keyof PredictionPatch, never][]) {
      if (value === undefined) continue;
      const [column, encode] = COLUMNS[key];
      sets.push(`${column} = @${key}`);
      params[key] = encode(value);
    }
    let condition = "";
    if (whenStatus) {
      condition = ` AND status IN (${whenStatus.map((_, i) => `@when${i}`).join(", ")})`;
      whenStatus.forEach((s, i) => {
        params[`when${i}`] = s;
      });
    }
    if (whenAttempts !== undefined) {
      condition += " AND attempts = @whenAttempts";
      params["whenAttempts"] = whenAttempts;
    }
    return this.db.transaction(() => {
      const row = this.prepare(`UPDATE predictions SET ${sets.join(", ")} WHERE id = @id${condition} RETURNING *`).get(
        params,
      ) as Row | undefined;
      if (!row) return undefined;
      // New logs (data removal's "") replace the logged lines too.
      if (patch.logs !== undefined) this.prepare("DELETE FROM prediction_logs WHERE prediction_id = ?").run(id);
      else row.logged = this.logged(id);
      return fromRow(row);
    })();
  }

  private logged(id: string): string | undefined {
    const r = this.prepare("SELECT text FROM prediction_logs WHERE prediction_id = ?").get(id) as
      | { text: string }
      | undefined;
    return r?.text;
  }

  async appendLog(id: string, line: string): Promise<void> {
    // Logs end with the prediction: a line from a step still in flight at cancel is dropped.
    this.prepare(
      `INSERT INTO prediction_logs (prediction_id, text)
         SELECT id, @line FROM predictions INDEXED BY predictions_id_status
           WHERE id = @id AND status IN ('starting', 'processing')
         ON CONFLICT (prediction_id) DO UPDATE SET text = text || excluded.text`,
    ).run({ id, line: `${line}\n` });
  }

  // Both read one of A1111_INDEXES alone: they cover the columns read.
  async openA1111Glances(account: string, limit: number): Promise<A1111Glance[]> {
    const rows = this.prepare(
      `SELECT ${MARK_COLUMNS}, ${LOG_TAIL_SQL} AS log_tail FROM predictions p INDEXED BY predictions_a1111_open
         LEFT JOIN prediction_logs l ON l.prediction_id = p.id
         WHERE account = ? AND a1111_settings IS NOT NULL AND status IN ('starting', 'processing')
         ORDER BY created_at ASC, id ASC LIMIT ?`,
    ).all(account, limit) as MarkRow[];
    return rows.map(glanceFromRow);
  }

  async a1111MarksSince(account: string, createdFrom: string, limit: number): Promise<A1111Mark[]> {
    const rows = this.prepare(
      `SELECT ${MARK_COLUMNS} FROM predictions INDEXED BY predictions_a1111_calls
         WHERE account = ? AND a1111_settings IS NOT NULL AND created_at >= ?
         ORDER BY created_at ASC, id ASC LIMIT ?`,
    ).all(account, createdFrom, limit) as MarkRow[];
    return rows.map(markFromRow);
  }

  async unfinished(): Promise<PredictionRecord[]> {
    const rows = this.prepare(
      `SELECT ${PREDICTIONS} WHERE p.status IN ('starting', 'processing') ORDER BY p.created_at ASC, p.id ASC`,
    ).all() as Row[];
    return rows.map(fromRow);
  }

  async countUnfinished(account?: string): Promise<number> {
    const unfinished = "SELECT count(*) AS n FROM predictions WHERE status IN ('starting', 'processing')";
    const row = (
      account === undefined
        ? this.prepare(unfinished).get()
        : this.prepare(`${unfinished} AND account = ?`).get(account)
    ) as { n: number };
    return row.n;
  }

  async countByModel(model: string): Promise<number> {
    const row = this.prepare("SELECT count(*) AS n FROM predictions WHERE model = ?").get(model) as { n: number };
    return row.n;
  }

  async completedBefore(completedBefore: string): Promise<string[]> {
    const rows = this.prepare(
      "SELECT id FROM predictions WHERE data_removed = 0 AND completed_at IS NOT NULL AND completed_at < ?",
    ).all(completedBefore) as { id: string }[];
    return rows.map((r) => r.id);
  }

  async recordWebhookDelivery(predictionId: string, d: WebhookDelivery): Promise<void> {
    this.prepare(
      `INSERT INTO webhook_deliveries (prediction_id, webhook_id, event, attempt, at, status_code, error, delivered, final)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      predictionId,
      d.webhookId,
      d.event,
      d.attempt,
      d.at,
      d.statusCode,
      d.error,
      d.delivered ? 1 : 0,
      d.final ? 1 : 0,
    );
  }

  async webhookDeliveries(predictionId: string): Promise<WebhookDelivery[]> {
    const rows = this.prepare("SELECT * FROM webhook_deliveries WHERE prediction_id = ? ORDER BY at, rowid").all(
      predictionId,
    ) as {
      webhook_id: string;
      event: string;
      attempt: number;
      at: string;
      status_code: number | null;
      error: string | null;
      delivered: number;
      final: number;
    }[];
    return rows.map((r) => ({
      webhookId: r.webhook_id,
      event: r.event as WebhookEvent,
      attempt: r.attempt,
      at: r.at,
      statusCode: r.status_code,
      error: r.error,
      delivered: r.delivered !== 0,
      final: r.final !== 0,
    }));
  }

  async finishedWithWebhookSince(since: string): Promise<PredictionRecord[]> {
    const rows = this.prepare(
      `SELECT ${PREDICTIONS} WHERE p.webhook IS NOT NULL AND p.completed_at >= ?
           AND p.status IN ('succeeded', 'failed', 'canceled') ORDER BY p.completed_at`,
    ).all(since) as Row[];
    return rows.map(fromRow);
  }

  async insertUpload(u: UploadRecord): Promise<void> {
    this.db.prepare(`INSERT INTO uploads (${UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(uploadValues(u));
  }

  async getUpload(id: string): Promise<UploadRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM uploads WHERE id = ?").get(id) as UploadRow | undefined;
    return row ? uploadFromRow(row) : undefined;
  }

  async listUploads(account: string, limit: number, after?: ListPosition): Promise<UploadRecord[]> {
    const rows = after
      ? this.db
          .prepare(
            `SELECT * FROM uploads WHERE account = ? AND (created_at < ? OR (created_at = ? AND id < ?))
               ORDER BY created_at DESC, id DESC LIMIT ?`,
          )
          .all(account, after.createdAt, after.createdAt, after.id, limit)
      : this.db
          .prepare("SELECT * FROM uploads WHERE account = ? ORDER BY created_at DESC, id DESC LIMIT ?")
          .all(account, limit);
    return (rows as UploadRow[]).map(uploadFromRow);
  }

  async deleteUpload(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM uploads WHERE id = ?").run(id).changes > 0;
  }

  async expiredUploads(now: string): Promise<string[]> {
    const rows = this.db.prepare("SELECT id FROM uploads WHERE expires_at <= ? ORDER BY expires_at").all(now);
    return (rows as { id: string }[]).map((r) => r.id);
  }

  async getSetting(key: string): Promise<string | undefined> {
    const row = this.prepare("SELECT value FROM settings WHERE key = ?").get(key) as { value: string } | undefined;
    return row?.value;
  }

  async setSetting(key: string, value: string): Promise<void> {
    this.prepare(
      "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ).run(key, value);
  }

  async setSettingIfAbsent(key: string, value: string): Promise<string> {
    this.prepare("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING").run(key, value);
    return (await this.getSetting(key)) as string;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
