/**
 * The Postgres schema, as numbered migrations applied in order on start (postgres.ts). A
 * released migration never changes: a new one is appended. JSON is kept as text (JSON.parse
 * keeps the caller's key order, as SQLite's text does); timestamps and ids are text in the "C"
 * collation, so they compare byte by byte (newest-first order, list cursors) as in SQLite.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "predictions, settings, idempotency keys, webhook deliveries",
    sql: `
CREATE TABLE predictions (
  id text COLLATE "C" PRIMARY KEY,
  account text NOT NULL,
  model text NOT NULL,
  version text NOT NULL,
  input text NOT NULL,
  logs text NOT NULL DEFAULT '',
  output text,
  error text,
  status text NOT NULL,
  data_removed boolean NOT NULL DEFAULT false,
  created_at text COLLATE "C" NOT NULL,
  started_at text COLLATE "C",
  completed_at text COLLATE "C",
  webhook text,
  webhook_events_filter text,
  deadline text COLLATE "C",
  api_base text NOT NULL,
  origin text NOT NULL,
  files_key text NOT NULL UNIQUE,
  stream_key text NOT NULL UNIQUE,
  attempts integer NOT NULL DEFAULT 0
);
CREATE INDEX predictions_account_order ON predictions (account, created_at DESC, id DESC);
CREATE INDEX predictions_unfinished ON predictions (status, created_at) WHERE status IN ('starting', 'processing');
CREATE INDEX predictions_retention ON predictions (completed_at) WHERE NOT data_removed;
CREATE INDEX predictions_model ON predictions (model);
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE idempotency_keys (
  account text NOT NULL,
  key text NOT NULL,
  prediction_id text NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  PRIMARY KEY (account, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
CREATE TABLE webhook_deliveries (
  seq bigserial PRIMARY KEY,
  prediction_id text NOT NULL,
  webhook_id text NOT NULL,
  event text NOT NULL,
  attempt integer NOT NULL,
  at text COLLATE "C" NOT NULL,
  status_code integer,
  error text,
  delivered boolean NOT NULL,
  final boolean NOT NULL
);
CREATE INDEX webhook_deliveries_prediction ON webhook_deliveries (prediction_id, at);
`,
  },
  {
    version: 2,
    name: "uploads (the Files API)",
    sql: `
CREATE TABLE uploads (
  id text COLLATE "C" PRIMARY KEY,
  account text NOT NULL,
  name text NOT NULL,
  content_type text NOT NULL,
  size bigint NOT NULL,
  sha256 text NOT NULL,
  metadata text NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  expires_at text COLLATE "C" NOT NULL
);
CREATE INDEX uploads_account_order ON uploads (account, created_at DESC, id DESC);
CREATE INDEX uploads_expiry ON uploads (expires_at);
`,
  },
  {
    version: 3,
    name: "predictions.prompt_syntax (the API's prompt syntax, A1111's for /sdapi)",
    sql: "ALTER TABLE predictions ADD COLUMN prompt_syntax text;",
  },
  {
    version: 4,
    name: "predictions.a1111_settings (an /sdapi call's hires fix and clip skip, JSON)",
    sql: "ALTER TABLE predictions ADD COLUMN a1111_settings text;",
  },
];
