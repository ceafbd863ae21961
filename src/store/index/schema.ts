import { type Generated, Kysely, sql } from "kysely";

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
}

/** The transactional outbox: events written with the state change they report, sent in `seq` order. */
export interface EventTable {
  seq: Generated<number>;
  /** The envelope's id (a UUID): subscribers drop duplicates by it. */
  id: string;
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

export interface Schema {
  sessions: SessionTable;
  chunks: ChunkTable;
  events: EventTable;
  save_jobs: SaveJobTable;
}

type Upgrade = (db: Kysely<Schema>) => Promise<void>;

/**
 * The schema's numbered upgrades: `UPGRADES[n]` takes an index at version n to n + 1 (version 0 is
 * a new, empty file). Each runs in one transaction with its `PRAGMA user_version`, so an index is
 * always at a version, never between two. Append; never edit one that has shipped.
 */
const UPGRADES: Upgrade[] = [
  // 1: sessions and chunks.
  async (db) => {
    await db.schema.createTable("sessions")
      .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
      .addColumn("stream", "text", (c) => c.notNull())
      .addColumn("session_id", "text", (c) => c.notNull())
      .addColumn("dir", "text", (c) => c.notNull())
      .addColumn("start_ms", "integer", (c) => c.notNull())
      .addColumn("end_ms", "integer")
      .addColumn("video_url", "text", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addUniqueConstraint("sessions_stream_session", ["stream", "session_id"])
      .execute();
    await db.schema.createTable("chunks")
      .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
      .addColumn("stream", "text", (c) => c.notNull())
      .addColumn("session_id", "text", (c) => c.notNull())
      .addColumn("idx", "integer", (c) => c.notNull())
      .addColumn("path", "text", (c) => c.notNull().unique())
      .addColumn("start_ms", "integer", (c) => c.notNull())
      .addColumn("end_ms", "integer", (c) => c.notNull())
      .addColumn("frames", "integer", (c) => c.notNull())
      .addColumn("bytes", "integer", (c) => c.notNull())
      .addColumn("partial", "integer", (c) => c.notNull())
      .addColumn("codec", "text", (c) => c.notNull())
      .addColumn("width", "integer", (c) => c.notNull())
      .addColumn("height", "integer", (c) => c.notNull())
      .addColumn("status", "text", (c) => c.notNull())
      .addColumn("close_reason", "text")
      .execute();
    await db.schema.createIndex("chunks_stream_start").on("chunks").columns(["stream", "start_ms"]).execute();
    await db.schema.createIndex("chunks_status").on("chunks").column("status").execute();
  },
  // 2: the events outbox.
  async (db) => {
    await db.schema.createTable("events")
      .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
      .addColumn("id", "text", (c) => c.notNull().unique())
      .addColumn("stream", "text", (c) => c.notNull())
      .addColumn("type", "text", (c) => c.notNull())
      .addColumn("body", "text", (c) => c.notNull())
      .addColumn("created_ms", "integer", (c) => c.notNull())
      .addColumn("sent_ms", "integer")
      .execute();
    await db.schema.createIndex("events_unsent").on("events").columns(["sent_ms", "seq"]).execute();
  },
  // 3: chunks oldest first across streams, for retention (which also brought the `deleting` and
  // `deleted` statuses: values, not columns).
  async (db) => {
    await db.schema.createIndex("chunks_start").on("chunks").column("start_ms").execute();
  },
  // 4: async save jobs.
  async (db) => {
    await db.schema.createTable("save_jobs")
      .addColumn("id", "text", (c) => c.primaryKey())
      .addColumn("request", "text", (c) => c.notNull())
      .addColumn("state", "text", (c) => c.notNull())
      .addColumn("created_ms", "integer", (c) => c.notNull())
      .addColumn("updated_ms", "integer", (c) => c.notNull())
      .addColumn("filename", "text")
      .addColumn("error", "text")
      .addColumn("gaps", "text")
      .execute();
  },
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = UPGRADES.length;

/**
 * Brings the index to SCHEMA_VERSION, one numbered upgrade at a time; an index from a newer
 * version is refused rather than misread.
 *
 * @example
 * await migrate(db);
 */
export async function migrate(db: Kysely<Schema>): Promise<void> {
  const version = await schemaVersion(db);
  if (version > SCHEMA_VERSION) {
    throw new Error(`index schema version ${version} is newer than this build's ${SCHEMA_VERSION}`);
  }
  for (let v = version; v < SCHEMA_VERSION; v++) {
    await db.transaction().execute(async (trx) => {
      await UPGRADES[v](trx);
      await sql.raw(`PRAGMA user_version = ${v + 1}`).execute(trx);
    });
  }
}

/** The index's `PRAGMA user_version`. */
export async function schemaVersion(db: Kysely<Schema>): Promise<number> {
  const { rows } = await sql<{ user_version: number }>`PRAGMA user_version`.execute(db);
  return Number(rows[0]?.user_version ?? 0);
}
