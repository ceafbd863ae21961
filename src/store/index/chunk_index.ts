import { Kysely, type Selectable } from "kysely";
import type { StorageEvent } from "../../publish/envelope.ts";
import type {
  ChunkStatus,
  ChunkTable,
  Engine,
  EventTable,
  SaveJobTable,
  Schema,
  SessionTable,
  UploadTable,
} from "./schema.ts";
import { migrate } from "./schema.ts";
import { nodeSqliteDialect } from "./sqlite_dialect.ts";
import { postgresDialect } from "./postgres_dialect.ts";

export type ChunkRow = Selectable<ChunkTable>;
export type SessionRow = Selectable<SessionTable>;
export type NewChunk = Omit<ChunkRow, "id" | "close_reason" | "recorder" | "archive_key">;
export type UploadRow = Selectable<UploadTable>;
export type NewSession = Omit<SessionRow, "id" | "end_ms" | "status" | "recorder">;
export type EventRow = Selectable<EventTable>;
export type SaveJobRow = Selectable<SaveJobTable>;
export type NewSaveJob = Omit<SaveJobRow, "recorder">;

/** A recorder's id (RECORDER_ID): a stream name that may hold dots, as host names do. */
export const RECORDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A stream as the fleet's index knows it: stream names are unique per recorder. */
export interface StreamKey {
  recorder: string;
  stream: string;
}

/** INDEX_URL's schemes that select PostgreSQL; anything else is a SQLite file's path. */
export function indexEngine(location: string): Engine {
  return /^postgres(ql)?:\/\//.test(location) ? "postgres" : "sqlite";
}

const PLAYABLE = new Set<ChunkStatus>(["recording", "complete", "recovered"]);
/** A chunk closed for good: the archive takes a copy of it. */
const archivable = (s: ChunkStatus) => s === "complete" || s === "recovered";

/** Where the archive keeps each file (src/store/archive/keys.ts makes one). */
export interface ArchiveKeys {
  keyOf(recorder: string, kind: "chunk" | "clip", path: string): string;
}

/** A chunk whose file is on disk and readable (not missing, not being or already deleted). */
export function playable(c: { status: ChunkStatus }): boolean {
  return PLAYABLE.has(c.status);
}

/** What a chunk holds once closed, read back or recovered. */
export interface ChunkFacts {
  end_ms: number;
  frames: number;
  bytes: number;
  partial: number;
}

/**
 * The persisted index of sessions and chunks: the recorder's source of truth for what is on disk.
 * `location` is a SQLite file (one connection, so one writer) or a fleet's PostgreSQL URL. Every
 * write and every read of recording state is this recorder's rows only (each recorder owns its
 * own: docs/fleet.md); `chunks` and `streams` read other recorders' when asked.
 *
 * @example
 * const index = await ChunkIndex.open("recordings/index.db", "groundstation-1");
 * await index.insertChunk({ ...chunk, status: "recording" });
 */
export class ChunkIndex {
  private constructor(
    readonly db: Kysely<Schema>,
    readonly engine: Engine,
    readonly recorder: string,
    readonly location: string,
    readonly archive: ArchiveKeys | null,
  ) {}

  /** `archive`: where completed chunks and saved clips go (ARCHIVE_URL); each is queued for upload with the change that made it. */
  static async open(
    location: string,
    recorder: string,
    archive: ArchiveKeys | null = null,
  ): Promise<ChunkIndex> {
    const engine = indexEngine(location);
    const db = new Kysely<Schema>({
      dialect: engine === "postgres" ? postgresDialect(location) : nodeSqliteDialect(location),
    });
    try {
      await migrate(db, engine, recorder);
    } catch (e) {
      await db.destroy();
      throw e;
    }
    return new ChunkIndex(db, engine, recorder, location, archive);
  }

  /** Bytes the index takes on this machine's disk (its SQLite file and log; none for PostgreSQL): part of the storage budget. */
  async localBytes(): Promise<number> {
    if (this.engine === "postgres") return 0;
    let bytes = 0;
    for (const f of [this.location, `${this.location}-wal`]) {
      bytes += await Deno.stat(f).then((s) => s.size, () => 0);
    }
    return bytes;
  }

  close(): Promise<void> {
    return this.db.destroy();
  }

  /**
   * Runs `change`, and records `event` in the outbox and `upload` in the archive's queue in the
   * same transaction.
   */
  async #withEvent(
    change: (db: Kysely<Schema>) => Promise<unknown>,
    event?: StorageEvent | StorageEvent[],
    upload?: { kind: UploadRow["kind"]; path: string; bytes: number },
  ): Promise<void> {
    const events = event === undefined ? [] : Array.isArray(event) ? event : [event];
    const enqueue = upload && this.archive;
    if (events.length === 0 && !enqueue) {
      await change(this.db);
      return;
    }
    await this.db.transaction().execute(async (trx) => {
      await change(trx);
      for (const e of events) await this.#insertEvent(trx, e);
      if (enqueue) {
        const now = Date.now();
        await trx.insertInto("uploads").values({
          recorder: this.recorder,
          ...upload,
          key: this.archive!.keyOf(this.recorder, upload.kind, upload.path),
          state: "queued",
          attempts: 0,
          next_ms: now,
          last_error: null,
          created_ms: now,
          done_ms: null,
        }).execute();
      }
    });
  }

  async insertSession(s: NewSession, event?: StorageEvent): Promise<void> {
    await this.#withEvent(
      (db) =>
        db.insertInto("sessions").values({ ...s, recorder: this.recorder, end_ms: null, status: "open" })
          .onConflict((oc) => oc.columns(["recorder", "stream", "session_id"]).doNothing()).execute(),
      event,
    );
  }

  async endSession(stream: string, sessionId: string, endMs: number, event?: StorageEvent): Promise<void> {
    await this.#withEvent(
      (db) =>
        db.updateTable("sessions").set({ end_ms: Math.round(endMs), status: "ended" })
          .where("recorder", "=", this.recorder).where("stream", "=", stream).where(
            "session_id",
            "=",
            sessionId,
          ).execute(),
      event,
    );
  }

  /** An event that reports no index change of its own (a connection state). */
  async appendEvent(event: StorageEvent): Promise<void> {
    await this.#insertEvent(this.db, event);
  }

  /** A clip saved under UPLOAD_PATH (`filename` relative to it): its event, and its upload when archiving. */
  async clipSaved(filename: string, bytes: number, event: StorageEvent): Promise<void> {
    await this.#withEvent(() => Promise.resolve(), event, { kind: "clip", path: filename, bytes });
  }

  /** The oldest upload due by `now`, or none. */
  nextUpload(now: number): Promise<UploadRow | undefined> {
    return this.db.selectFrom("uploads").selectAll().where("recorder", "=", this.recorder)
      .where("state", "=", "queued").where("next_ms", "<=", now).orderBy("id").limit(1).executeTakeFirst();
  }

  /** When the next queued upload is due (null: none queued). */
  async nextUploadDue(): Promise<number | null> {
    const row = await this.db.selectFrom("uploads").select((eb) => eb.fn.min("next_ms").as("due"))
      .where("recorder", "=", this.recorder).where("state", "=", "queued").executeTakeFirst();
    return row?.due === null || row?.due === undefined ? null : Number(row.due);
  }

  /** Queued uploads, and the creation time of the oldest (null when none). */
  async uploadQueue(): Promise<{ depth: number; oldestMs: number | null }> {
    const row = await this.db.selectFrom("uploads")
      .select((eb) => [eb.fn.countAll<number>().as("depth"), eb.fn.min("created_ms").as("oldest")])
      .where("recorder", "=", this.recorder).where("state", "=", "queued").executeTakeFirst();
    return {
      depth: Number(row?.depth ?? 0),
      oldestMs: row?.oldest === null || row?.oldest === undefined ? null : Number(row.oldest),
    };
  }

  /** The upload is in the bucket and verified: a chunk's row says where, in the same transaction. */
  async uploadDone(u: UploadRow, now: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable("uploads").set({ state: "done", done_ms: now, last_error: null })
        .where("id", "=", u.id).execute();
      if (u.kind === "chunk") {
        await trx.updateTable("chunks").set({ archive_key: u.key }).where("recorder", "=", this.recorder)
          .where("path", "=", u.path).execute();
      }
    });
  }

  /** A failed attempt: tried again at `nextMs`. */
  async uploadFailed(u: UploadRow, error: string, nextMs: number): Promise<void> {
    await this.db.updateTable("uploads").set({ attempts: u.attempts + 1, last_error: error, next_ms: nextMs })
      .where("id", "=", u.id).execute();
  }

  /** The file went before it was uploaded (deleted by retention under the disk floor, or by hand): it never will be. */
  async uploadLost(kind: UploadRow["kind"], path: string, reason: string): Promise<void> {
    await this.db.updateTable("uploads").set({ state: "lost", last_error: reason })
      .where("recorder", "=", this.recorder).where("kind", "=", kind).where("path", "=", path)
      .where("state", "=", "queued").execute();
  }

  uploads(): Promise<UploadRow[]> {
    return this.db.selectFrom("uploads").selectAll().where("recorder", "=", this.recorder).orderBy("id")
      .execute();
  }

  async insertJob(job: NewSaveJob): Promise<void> {
    await this.db.insertInto("save_jobs").values({ ...job, recorder: this.recorder }).execute();
  }

  async updateJob(id: string, change: Partial<Omit<SaveJobRow, "id" | "recorder">>): Promise<void> {
    await this.db.updateTable("save_jobs").set({ ...change, updated_ms: Date.now() })
      .where("recorder", "=", this.recorder).where("id", "=", id).execute();
  }

  job(id: string): Promise<SaveJobRow | undefined> {
    return this.db.selectFrom("save_jobs").selectAll().where("recorder", "=", this.recorder)
      .where("id", "=", id).executeTakeFirst();
  }

  /** Removes jobs settled (done or failed) before `beforeMs`; returns how many. */
  async pruneJobs(beforeMs: number): Promise<number> {
    const r = await this.db.deleteFrom("save_jobs").where("recorder", "=", this.recorder)
      .where("state", "in", ["done", "failed"])
      .where("updated_ms", "<", beforeMs).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Jobs queued or running, oldest first. */
  pendingJobs(): Promise<SaveJobRow[]> {
    return this.db.selectFrom("save_jobs").selectAll().where("recorder", "=", this.recorder)
      .where("state", "in", ["queued", "running"])
      .orderBy("created_ms").execute();
  }

  /** The oldest unsent events, in the order they must be published. */
  unsentEvents(limit: number): Promise<EventRow[]> {
    return this.db.selectFrom("events").selectAll().where("recorder", "=", this.recorder)
      .where("sent_ms", "is", null).orderBy("seq").limit(limit).execute();
  }

  /** Events after `seq` (sent or not), oldest first: the console's tail of the outbox. */
  eventsAfter(seq: number, limit: number): Promise<EventRow[]> {
    return this.db.selectFrom("events").selectAll().where("recorder", "=", this.recorder)
      .where("seq", ">", seq).orderBy("seq").limit(limit).execute();
  }

  /** The last event's `seq` (0 with none). */
  async lastEventSeq(): Promise<number> {
    const row = await this.db.selectFrom("events").select((e) => e.fn.max("seq").as("seq"))
      .where("recorder", "=", this.recorder).executeTakeFirst();
    return Number(row?.seq ?? 0);
  }

  async markSent(seqs: number[], sentMs: number): Promise<void> {
    if (seqs.length > 0) {
      await this.db.updateTable("events").set({ sent_ms: sentMs }).where("recorder", "=", this.recorder)
        .where("seq", "in", seqs).execute();
    }
  }

  /** Unsent events, and the creation time of the oldest (null when none). */
  async outbox(): Promise<{ depth: number; oldestMs: number | null }> {
    const row = await this.db.selectFrom("events")
      .select((eb) => [eb.fn.countAll<number>().as("depth"), eb.fn.min("created_ms").as("oldest")])
      .where("recorder", "=", this.recorder).where("sent_ms", "is", null).executeTakeFirst();
    return {
      depth: Number(row?.depth ?? 0),
      oldestMs: row?.oldest === null || row?.oldest === undefined ? null : Number(row.oldest),
    };
  }

  /** Deletes events created before `beforeMs`: sent ones, or all of them when nothing publishes. */
  async pruneEvents(beforeMs: number, sentOnly: boolean): Promise<number> {
    let q = this.db.deleteFrom("events").where("recorder", "=", this.recorder)
      .where("created_ms", "<", beforeMs);
    if (sentOnly) q = q.where("sent_ms", "is not", null);
    const r = await q.executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  getSession(stream: string, sessionId: string): Promise<SessionRow | undefined> {
    return this.db.selectFrom("sessions").selectAll().where("recorder", "=", this.recorder)
      .where("stream", "=", stream).where("session_id", "=", sessionId).executeTakeFirst();
  }

  sessions(): Promise<SessionRow[]> {
    return this.db.selectFrom("sessions").selectAll().where("recorder", "=", this.recorder).execute();
  }

  /** Every chunk's path and status: what an audit compares the files with. */
  paths(): Promise<Pick<ChunkRow, "path" | "status">[]> {
    return this.db.selectFrom("chunks").select(["path", "status"]).where("recorder", "=", this.recorder)
      .execute();
  }

  openSessions(): Promise<SessionRow[]> {
    return this.db.selectFrom("sessions").selectAll().where("recorder", "=", this.recorder)
      .where("status", "=", "open").orderBy("start_ms").execute();
  }

  /** A stream's newest open session and where its video ends: what a restarted recording continues. */
  async openSessionOf(
    stream: string,
  ): Promise<{ sessionId: string; dir: string; lastFrameMs: number; lastIdx: number } | null> {
    const row = await this.db.selectFrom("sessions as s")
      .leftJoin(
        "chunks as c",
        (j) =>
          j.onRef("c.recorder", "=", "s.recorder").onRef("c.stream", "=", "s.stream")
            .onRef("c.session_id", "=", "s.session_id"),
      )
      .select((eb) => [
        "s.session_id",
        "s.dir",
        "s.start_ms",
        eb.fn.max("c.end_ms").as("last_end"),
        eb.fn.max("c.idx").as("last_idx"),
      ])
      .where("s.recorder", "=", this.recorder).where("s.stream", "=", stream).where("s.status", "=", "open")
      .groupBy(["s.session_id", "s.dir", "s.start_ms"]).orderBy("s.start_ms", "desc").executeTakeFirst();
    if (!row) return null;
    return {
      sessionId: row.session_id,
      dir: row.dir,
      lastFrameMs: Math.max(row.start_ms, Number(row.last_end ?? 0)),
      lastIdx: Number(row.last_idx ?? 0),
    };
  }

  async insertChunk(c: NewChunk, event?: StorageEvent): Promise<void> {
    const row = {
      ...c,
      recorder: this.recorder,
      start_ms: Math.round(c.start_ms),
      end_ms: Math.round(c.end_ms),
    };
    await this.#withEvent(
      (db) => db.insertInto("chunks").values({ ...row, archive_key: null }).execute(),
      event,
      archivable(c.status) ? { kind: "chunk", path: c.path, bytes: c.bytes } : undefined,
    );
  }

  /** A fragment of an open chunk was written: the chunk is readable up to `end_ms`. */
  async progress(path: string, facts: Omit<ChunkFacts, "partial">): Promise<void> {
    await this.db.updateTable("chunks").set({ ...facts, end_ms: Math.round(facts.end_ms) })
      .where("recorder", "=", this.recorder).where("path", "=", path).where("status", "=", "recording")
      .execute();
  }

  /** Completes a chunk row, and records `event` in the same transaction. */
  async finish(
    path: string,
    facts: ChunkFacts,
    status: ChunkStatus,
    reason: string,
    event?: StorageEvent | StorageEvent[],
  ): Promise<void> {
    await this.#withEvent(
      (db) =>
        db.updateTable("chunks").set({
          ...facts,
          end_ms: Math.round(facts.end_ms),
          status,
          close_reason: reason,
        })
          .where("recorder", "=", this.recorder).where("path", "=", path).execute(),
      event,
      archivable(status) ? { kind: "chunk", path, bytes: facts.bytes } : undefined,
    );
  }

  async setStatus(path: string, status: ChunkStatus, event?: StorageEvent): Promise<void> {
    await this.#withEvent(
      (db) =>
        db.updateTable("chunks").set({ status }).where("recorder", "=", this.recorder).where(
          "path",
          "=",
          path,
        )
          .execute(),
      event,
    );
  }

  async deleteChunk(path: string): Promise<void> {
    await this.db.deleteFrom("chunks").where("recorder", "=", this.recorder).where("path", "=", path)
      .execute();
  }

  /** Bytes of the chunk files on disk (anything not missing or deleted), summed by the database. */
  async usage(): Promise<number> {
    const row = await this.db.selectFrom("chunks").select((eb) => eb.fn.sum<number>("bytes").as("bytes"))
      .where("recorder", "=", this.recorder).where("status", "in", [
        "recording",
        "complete",
        "recovered",
        "deleting",
      ])
      .executeTakeFirst();
    return Number(row?.bytes ?? 0);
  }

  /** The oldest closed chunks (the ones retention may delete), oldest first across streams. */
  oldestClosed(limit: number): Promise<ChunkRow[]> {
    return this.db.selectFrom("chunks").selectAll().where("recorder", "=", this.recorder)
      .where("status", "in", ["complete", "recovered"]).orderBy("start_ms").limit(limit).execute();
  }

  chunk(path: string, recorder = this.recorder): Promise<ChunkRow | undefined> {
    return this.db.selectFrom("chunks").selectAll().where("recorder", "=", recorder).where("path", "=", path)
      .executeTakeFirst();
  }

  /** This recorder's chunks (or `recorder`'s), by stream and start. */
  chunks(
    where: { status?: ChunkStatus; stream?: string; sessionId?: string; recorder?: string } = {},
  ): Promise<ChunkRow[]> {
    let q = this.db.selectFrom("chunks").selectAll().where("recorder", "=", where.recorder ?? this.recorder);
    if (where.status) q = q.where("status", "=", where.status);
    if (where.stream) q = q.where("stream", "=", where.stream);
    if (where.sessionId) q = q.where("session_id", "=", where.sessionId);
    return q.orderBy("stream").orderBy("start_ms").orderBy("idx").execute();
  }

  /** Every recorder's streams that have chunks, by recorder and name. */
  async streams(): Promise<StreamKey[]> {
    const rows = await this.db.selectFrom("chunks").select(["recorder", "stream"]).distinct()
      .orderBy("recorder").orderBy("stream").execute();
    return rows.map(({ recorder, stream }) => ({ recorder, stream }));
  }

  /** Writes `e` to the outbox, stamped with this recorder (the envelope's `recorder`). */
  #insertEvent(db: Kysely<Schema>, e: StorageEvent) {
    return db.insertInto("events").values({
      id: e.id,
      recorder: this.recorder,
      stream: e.stream,
      type: e.type,
      body: JSON.stringify({ ...e, recorder: this.recorder }),
      created_ms: Math.round(e.timestamp * 1000),
      sent_ms: null,
    }).execute();
  }
}
