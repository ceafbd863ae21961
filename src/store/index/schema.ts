import { type ColumnDefinitionBuilder, type Generated, Kysely, sql } from "kysely";

/** A chunk row's states (docs/storage.md gives the transitions). */
export const CHUNK_STATUSES = [
  "recording",
  "complete",
  "recovered",
  "missing",
  "deleting",
  "deleted",
] as const;
export type ChunkStatus = typeof CHUNK_STATUSES[number];

export interface SessionTable {
  id: Generated<number>;
  /** The recorder that owns the row (RECORDER_ID): the only one that writes it. */
  recorder: string;
  stream: string;
  session_id: string;
  /** Folder of the session, relative to STORAGE_PATH. */
  dir: string;
  start_ms: number;
  end_ms: number | null;
  video_url: string;
  status: "open" | "ended";
}

export interface ChunkTable {
  id: Generated<number>;
  recorder: string;
  stream: string;
  session_id: string;
  idx: number;
  /** File, relative to STORAGE_PATH. */
  path: string;
  start_ms: number;
  end_ms: number;
  frames: number;
  bytes: number;
  partial: number;
  codec: string;
  width: number;
  height: number;
  status: ChunkStatus;
  close_reason: string | null;
  /** The archived copy's object key (ARCHIVE_URL), once its upload is verified; null before. */
  archive_key: string | null;
}

/** The transactional outbox: events written with the state change they report, sent in `seq` order. */
export interface EventTable {
  seq: Generated<number>;
  /** The envelope's id (a UUID): subscribers drop duplicates by it. */
  id: string;
  recorder: string;
  stream: string;
  type: string;
  /** The whole envelope, as published. */
  body: string;
  created_ms: number;
  sent_ms: number | null;
}

/** An accepted async save: persisted so that a restart resumes it (docs/clips.md). */
export interface SaveJobTable {
  id: string;
  recorder: string;
  /** The save request's fields (stream, from, to, metadata, tags), as JSON. */
  request: string;
  state: "queued" | "running" | "done" | "failed";
  created_ms: number;
  updated_ms: number;
  /** Relative to UPLOAD_PATH, once done. */
  filename: string | null;
  error: string | null;
  /** The clip's gaps as JSON, once done. */
  gaps: string | null;
}

/** The archive's durable queue: a row per file to upload, written with the change that made it (docs/fleet.md). */
export interface UploadTable {
  id: Generated<number>;
  recorder: string;
  kind: "chunk" | "clip";
  /** A chunk's path relative to STORAGE_PATH, or a clip's relative to UPLOAD_PATH. */
  path: string;
  /** Where it goes in the bucket. */
  key: string;
  bytes: number;
  /** queued, then done (verified in the bucket) or lost (the file went before it could be uploaded). */
  state: "queued" | "done" | "lost";
  attempts: number;
  /** Not tried again before this (a failure's backoff). */
  next_ms: number;
  last_error: string | null;
  created_ms: number;
  done_ms: number | null;
}

export interface Schema {
  sessions: SessionTable;
  chunks: ChunkTable;
  events: EventTable;
  save_jobs: SaveJobTable;
  uploads: UploadTable;
}

/** Which database holds the index: SQLite in STORAGE_PATH, or a fleet's PostgreSQL (INDEX_URL). */
export type Engine = "sqlite" | "postgres";

/** What an upgrade may depend on: the engine's column types, and who upgrades (rows before recorders become its). */
interface UpgradeContext {
  engine: Engine;
  recorder: string;
}

type Upgrade = (db: Kysely<Schema>, c: UpgradeContext) => Promise<void>;

/** Epoch ms and byte counts: SQLite's integer is 64-bit, PostgreSQL's is not. */
const big = (c: UpgradeContext) => c.engine === "postgres" ? "bigint" : "integer";

/** An autoincrementing primary key, as each engine spells it. */
const serial = (c: UpgradeContext) => (col: ColumnDefinitionBuilder) =>
  c.engine === "postgres" ? col.primaryKey() : col.primaryKey().autoIncrement();
const serialType = (c: UpgradeContext) => c.engine === "postgres" ? "bigserial" : "integer";

/** `sessions` and `chunks` as upgrade 5 rebuilds them, under the name `name`. */
function createSessions(db: Kysely<Schema>, c: UpgradeContext, name: string) {
  return db.schema.createTable(name)
    .addColumn("id", serialType(c), serial(c))
    .addColumn("recorder", "text", (col) => col.notNull())
    .addColumn("stream", "text", (col) => col.notNull())
    .addColumn("session_id", "text", (col) => col.notNull())
    .addColumn("dir", "text", (col) => col.notNull())
    .addColumn("start_ms", big(c), (col) => col.notNull())
    .addColumn("end_ms", big(c))
    .addColumn("video_url", "text", (col) => col.notNull())
    .addColumn("status", "text", (col) => col.notNull())
    .addUniqueConstraint("sessions_recorder_stream_session", ["recorder", "stream", "session_id"])
    .execute();
}

function createChunks(db: Kysely<Schema>, c: UpgradeContext, name: string) {
  return db.schema.createTable(name)
    .addColumn("id", serialType(c), serial(c))
    .addColumn("recorder", "text", (col) => col.notNull())
    .addColumn("stream", "text", (col) => col.notNull())
    .addColumn("session_id", "text", (col) => col.notNull())
    .addColumn("idx", "integer", (col) => col.notNull())
    .addColumn("path", "text", (col) => col.notNull())
    .addColumn("start_ms", big(c), (col) => col.notNull())
    .addColumn("end_ms", big(c), (col) => col.notNull())
    .addColumn("frames", "integer", (col) => col.notNull())
    .addColumn("bytes", big(c), (col) => col.notNull())
    .addColumn("partial", "integer", (col) => col.notNull())
    .addColumn("codec", "text", (col) => col.notNull())
    .addColumn("width", "integer", (col) => col.notNull())
    .addColumn("height", "integer", (col) => col.notNull())
    .addColumn("status", "text", (col) => col.notNull())
    .addColumn("close_reason", "text")
    .addUniqueConstraint("chunks_recorder_path", ["recorder", "path"])
    .execute();
}

/**
 * Moves `table`'s rows into `table`_v5 (made by `create`) with `recorder` set, then puts the new
 * table in the old one's place: SQLite cannot drop a column's UNIQUE, which a fleet must widen.
 */
async function rebuild(
  db: Kysely<Schema>,
  c: UpgradeContext,
  table: "sessions" | "chunks",
  create: (db: Kysely<Schema>, c: UpgradeContext, name: string) => Promise<void>,
  columns: string[],
) {
  const next = `${table}_v5`;
  await create(db, c, next);
  const list = sql.join(columns.map((col) => sql.ref(col)));
  await sql`INSERT INTO ${sql.table(next)} (${list}, recorder) SELECT ${list}, ${c.recorder} FROM ${
    sql.table(table)
  }`.execute(db);
  await db.schema.dropTable(table).execute();
  await db.schema.alterTable(next).renameTo(table).execute();
  if (c.engine === "postgres") {
    // Copied ids do not move the sequence on: the next insert would reuse one.
    await sql`SELECT setval(pg_get_serial_sequence(${table}, 'id'), COALESCE(MAX(id), 0) + 1, false) FROM ${
      sql.table(table)
    }`.execute(db);
  }
}

/**
 * The schema's numbered upgrades: `UPGRADES[n]` takes an index at version n to n + 1 (version 0 is
 * an empty database). Each runs in one transaction with the version it reaches, so an index is
 * always at a version, never between two. Append; never edit one that has shipped (upgrades 1-4
 * gained PostgreSQL's spelling of the same columns; SQLite's DDL is as shipped).
 */
const UPGRADES: Upgrade[] = [
  // 1: sessions and chunks.
  async (db, c) => {
    await db.schema.createTable("sessions")
      .addColumn("id", serialType(c), serial(c))
      .addColumn("stream", "text", (col) => col.notNull())
      .addColumn("session_id", "text", (col) => col.notNull())
      .addColumn("dir", "text", (col) => col.notNull())
      .addColumn("start_ms", big(c), (col) => col.notNull())
      .addColumn("end_ms", big(c))
      .addColumn("video_url", "text", (col) => col.notNull())
      .addColumn("status", "text", (col) => col.notNull())
      .addUniqueConstraint("sessions_stream_session", ["stream", "session_id"])
      .execute();
    await db.schema.createTable("chunks")
      .addColumn("id", serialType(c), serial(c))
      .addColumn("stream", "text", (col) => col.notNull())
      .addColumn("session_id", "text", (col) => col.notNull())
      .addColumn("idx", "integer", (col) => col.notNull())
      .addColumn("path", "text", (col) => col.notNull().unique())
      .addColumn("start_ms", big(c), (col) => col.notNull())
      .addColumn("end_ms", big(c), (col) => col.notNull())
      .addColumn("frames", "integer", (col) => col.notNull())
      .addColumn("bytes", big(c), (col) => col.notNull())
      .addColumn("partial", "integer", (col) => col.notNull())
      .addColumn("codec", "text", (col) => col.notNull())
      .addColumn("width", "integer", (col) => col.notNull())
      .addColumn("height", "integer", (col) => col.notNull())
      .addColumn("status", "text", (col) => col.notNull())
      .addColumn("close_reason", "text")
      .execute();
    await db.schema.createIndex("chunks_stream_start").on("chunks").columns(["stream", "start_ms"]).execute();
    await db.schema.createIndex("chunks_status").on("chunks").column("status").execute();
  },
  // 2: the events outbox.
  async (db, c) => {
    await db.schema.createTable("events")
      .addColumn("seq", serialType(c), serial(c))
      .addColumn("id", "text", (col) => col.notNull().unique())
      .addColumn("stream", "text", (col) => col.notNull())
      .addColumn("type", "text", (col) => col.notNull())
      .addColumn("body", "text", (col) => col.notNull())
      .addColumn("created_ms", big(c), (col) => col.notNull())
      .addColumn("sent_ms", big(c))
      .execute();
    await db.schema.createIndex("events_unsent").on("events").columns(["sent_ms", "seq"]).execute();
  },
  // 3: chunks oldest first across streams, for retention (which also brought the `deleting` and
  // `deleted` statuses: values, not columns).
  async (db) => {
    await db.schema.createIndex("chunks_start").on("chunks").column("start_ms").execute();
  },
  // 4: async save jobs.
  async (db, c) => {
    await db.schema.createTable("save_jobs")
      .addColumn("id", "text", (col) => col.primaryKey())
      .addColumn("request", "text", (col) => col.notNull())
      .addColumn("state", "text", (col) => col.notNull())
      .addColumn("created_ms", big(c), (col) => col.notNull())
      .addColumn("updated_ms", big(c), (col) => col.notNull())
      .addColumn("filename", "text")
      .addColumn("error", "text")
      .addColumn("gaps", "text")
      .execute();
  },
  // 5: recorders. Every row names the recorder that owns it, and the rows already there become the
  // upgrading recorder's; names and paths are unique per recorder, not across a fleet.
  async (db, c) => {
    await rebuild(db, c, "sessions", createSessions, [
      "id",
      "stream",
      "session_id",
      "dir",
      "start_ms",
      "end_ms",
      "video_url",
      "status",
    ]);
    await rebuild(db, c, "chunks", createChunks, [
      "id",
      "stream",
      "session_id",
      "idx",
      "path",
      "start_ms",
      "end_ms",
      "frames",
      "bytes",
      "partial",
      "codec",
      "width",
      "height",
      "status",
      "close_reason",
    ]);
    await db.schema.createIndex("chunks_recorder_stream_start").on("chunks")
      .columns(["recorder", "stream", "start_ms"]).execute();
    await db.schema.createIndex("chunks_recorder_start").on("chunks").columns(["recorder", "start_ms"])
      .execute();
    await db.schema.createIndex("chunks_status").on("chunks").column("status").execute();
    for (const table of ["events", "save_jobs"] as const) {
      await db.schema.alterTable(table).addColumn("recorder", "text", (col) => col.notNull().defaultTo(""))
        .execute();
      await db.updateTable(table).set({ recorder: c.recorder }).execute();
    }
    await db.schema.dropIndex("events_unsent").execute();
    await db.schema.createIndex("events_recorder_unsent").on("events").columns(["recorder", "sent_ms", "seq"])
      .execute();
  },
  // 6: the archive: its upload queue, and where a chunk's archived copy is.
  async (db, c) => {
    await db.schema.createTable("uploads")
      .addColumn("id", serialType(c), serial(c))
      .addColumn("recorder", "text", (col) => col.notNull())
      .addColumn("kind", "text", (col) => col.notNull())
      .addColumn("path", "text", (col) => col.notNull())
      .addColumn("key", "text", (col) => col.notNull())
      .addColumn("bytes", big(c), (col) => col.notNull())
      .addColumn("state", "text", (col) => col.notNull())
      .addColumn("attempts", "integer", (col) => col.notNull())
      .addColumn("next_ms", big(c), (col) => col.notNull())
      .addColumn("last_error", "text")
      .addColumn("created_ms", big(c), (col) => col.notNull())
      .addColumn("done_ms", big(c))
      .execute();
    await db.schema.createIndex("uploads_recorder_state").on("uploads").columns([
      "recorder",
      "state",
      "next_ms",
    ])
      .execute();
    await db.schema.alterTable("chunks").addColumn("archive_key", "text").execute();
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = UPGRADES.length;

/** Any fixed number: the key of the PostgreSQL advisory lock that one upgrading recorder holds. */
const UPGRADE_LOCK = 0x736b7972;

/**
 * Brings the index to `target` (SCHEMA_VERSION; an earlier one only in tests of the upgrades),
 * one numbered upgrade at a time; an index from a newer
 * version is refused rather than misread. On PostgreSQL several recorders may start at once: each
 * upgrade's transaction holds an advisory lock and reads the version under it, so each upgrade
 * runs once.
 *
 * @example
 * await migrate(db, "sqlite", "groundstation-1");
 */
export async function migrate(
  db: Kysely<Schema>,
  engine: Engine,
  recorder: string,
  target = SCHEMA_VERSION,
): Promise<void> {
  const context = { engine, recorder };
  for (;;) {
    const done = await db.transaction().execute(async (trx) => {
      if (engine === "postgres") await sql`SELECT pg_advisory_xact_lock(${UPGRADE_LOCK})`.execute(trx);
      const version = await schemaVersion(trx, engine);
      if (version > SCHEMA_VERSION) {
        throw new Error(`index schema version ${version} is newer than this build's ${SCHEMA_VERSION}`);
      }
      if (version >= target) return true;
      await UPGRADES[version](trx, context);
      await setVersion(trx, engine, version + 1);
      return false;
    });
    if (done) return;
  }
}

/** The index's schema version: SQLite's `PRAGMA user_version`, PostgreSQL's `skyreel_schema` row. */
export async function schemaVersion(db: Kysely<Schema>, engine: Engine): Promise<number> {
  if (engine === "sqlite") {
    const { rows } = await sql<{ user_version: number }>`PRAGMA user_version`.execute(db);
    return Number(rows[0]?.user_version ?? 0);
  }
  await sql`CREATE TABLE IF NOT EXISTS skyreel_schema (version integer NOT NULL)`.execute(db);
  const { rows } = await sql<{ version: number }>`SELECT version FROM skyreel_schema`.execute(db);
  return Number(rows[0]?.version ?? 0);
}

async function setVersion(db: Kysely<Schema>, engine: Engine, version: number): Promise<void> {
  if (engine === "sqlite") {
    await sql.raw(`PRAGMA user_version = ${version}`).execute(db);
    return;
  }
  await sql`DELETE FROM skyreel_schema`.execute(db);
  await sql`INSERT INTO skyreel_schema (version) VALUES (${version})`.execute(db);
}
