import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Kysely, sql } from "kysely";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import {
  CHUNK_STATUSES,
  type Engine,
  migrate,
  type Schema,
  SCHEMA_VERSION,
  schemaVersion,
} from "../src/store/index/schema.ts";
import { nodeSqliteDialect } from "../src/store/index/sqlite_dialect.ts";
import { postgresDialect } from "../src/store/index/postgres_dialect.ts";
import { ENGINES, indexLocation, pgQuery } from "./postgres_helpers.ts";
import { storageEvent } from "../src/publish/envelope.ts";
import { ROOT } from "./helpers.ts";

/** The DDL as versions 1 and 2 shipped it, written here so the upgrade meets what was really on disk. */
const VERSION_1 = `
  CREATE TABLE sessions (id integer primary key autoincrement, stream text not null,
    session_id text not null, dir text not null, start_ms integer not null, end_ms integer,
    video_url text not null, status text not null,
    constraint sessions_stream_session unique (stream, session_id));
  CREATE TABLE chunks (id integer primary key autoincrement, stream text not null,
    session_id text not null, idx integer not null, path text not null unique,
    start_ms integer not null, end_ms integer not null, frames integer not null,
    bytes integer not null, partial integer not null, codec text not null, width integer not null,
    height integer not null, status text not null, close_reason text);
  CREATE INDEX chunks_stream_start ON chunks (stream, start_ms);
  CREATE INDEX chunks_status ON chunks (status);
  INSERT INTO sessions VALUES (1, 'default', '20261121_140210', '20261121_140210', 1795350130000,
    1795350190000, 'ws://relay/ws/video/consume', 'ended');
  INSERT INTO chunks VALUES (1, 'default', '20261121_140210', 1,
    '20261121_140210/video_segments/chunk_0001.mp4', 1795350130000, 1795350190000, 1800, 4000000, 0,
    'avc1.42c01e', 1280, 720, 'complete', 'duration');
  PRAGMA user_version = 1;`;
const VERSION_2 = VERSION_1.replace("PRAGMA user_version = 1;", "") + `
  CREATE TABLE events (seq integer primary key autoincrement, id text not null unique,
    stream text not null, type text not null, body text not null, created_ms integer not null,
    sent_ms integer);
  CREATE INDEX events_unsent ON events (sent_ms, seq);
  INSERT INTO events VALUES (1, 'e1', 'default', 'chunk_saved', '{}', 1795350190000, NULL);
  PRAGMA user_version = 2;`;

async function indexFrom(ddl: string | null) {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "index.db");
  if (ddl) {
    const db = new DatabaseSync(path);
    db.exec(ddl);
    db.close();
  }
  return { dir, path };
}

const version = (path: string) => {
  const db = new DatabaseSync(path);
  try {
    return Number(Object.values(db.prepare("PRAGMA user_version").get()!)[0]);
  } finally {
    db.close();
  }
};

for (const [from, ddl] of [[1, VERSION_1], [2, VERSION_2]] as const) {
  Deno.test(`an index at version ${from} as shipped is upgraded to ${SCHEMA_VERSION}, its rows kept, the upgrading recorder's, and usable`, async () => {
    const { dir, path } = await indexFrom(ddl);
    const index = await ChunkIndex.open(path, "gs-1");
    try {
      const chunks = await index.db.selectFrom("chunks").selectAll().execute();
      assert.deepEqual(chunks.map((c) => [c.recorder, c.path, c.status, c.frames]), [
        ["gs-1", "20261121_140210/video_segments/chunk_0001.mp4", "complete", 1800],
      ]);
      assert.equal((await index.outbox()).depth, from === 2 ? 1 : 0, "an unsent event stays unsent");
      await index.appendEvent(storageEvent("stream_state", "default", { state: "connected" }));
      await index.setStatus(chunks[0].path, "deleting");
      assert.equal((await index.chunk(chunks[0].path))?.status, "deleting");
      assert.equal((await index.pendingJobs()).length, 0);
    } finally {
      await index.close();
    }
    assert.equal(version(path), SCHEMA_VERSION);
    await Deno.remove(dir, { recursive: true });
  });
}

/**
 * A row of each table version `v` has (none at 0 or at SCHEMA_VERSION), written as that version's
 * columns: from 5 on, rows name their recorder (gs-1, the one that upgrades them in these tests).
 */
function rowsAt(v: number): string[] {
  if (v === 0 || v >= SCHEMA_VERSION) return [];
  // From 5 on, as a recorder writes them: with its name, and ids from the table's own sequence.
  const recorder = v >= 5;
  const [col, val] = recorder ? ["recorder, ", "'gs-1', "] : ["id, ", "7, "];
  return [
    `INSERT INTO sessions (${col}stream, session_id, dir, start_ms, end_ms, video_url, status) VALUES
      (${val}'default', '20261121_140210', '20261121_140210', 1795350130000, NULL, 'ws://relay', 'open')`,
    `INSERT INTO chunks (${col}stream, session_id, idx, path, start_ms, end_ms, frames, bytes, partial, codec,
      width, height, status, close_reason) VALUES (${val}'default', '20261121_140210', 1,
      '20261121_140210/video_segments/chunk_0001.mp4', 1795350130000, 1795350190000, 1800, 5000000000, 0,
      'avc1.42c01e', 1280, 720, 'complete', 'duration')`,
    ...(v >= 2
      ? [`INSERT INTO events (${recorder ? col : ""}id, stream, type, body, created_ms, sent_ms) VALUES
          (${recorder ? val : ""}'e1', 'default', 'chunk_saved', '{}', 1795350190000, NULL)`]
      : []),
    ...(v >= 4
      ? [`INSERT INTO save_jobs (${recorder ? col : ""}id, request, state, created_ms, updated_ms) VALUES
          (${recorder ? val : ""}'j1', '{}', 'queued', 1795350190000, 1795350190000)`]
      : []),
  ];
}

/** An index on `engine` brought by this code to version `v`, with `rowsAt(v)` in it. */
async function indexAt(engine: Engine, v: number) {
  const dir = await Deno.makeTempDir();
  const where = await indexLocation(engine, dir);
  const db = new Kysely<Schema>({
    dialect: engine === "postgres" ? postgresDialect(where.location) : nodeSqliteDialect(where.location),
  });
  await migrate(db, engine, "unused", v);
  for (const row of rowsAt(v)) await sql.raw(row).execute(db);
  await db.destroy();
  return {
    location: where.location,
    async drop() {
      await where.drop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

for (const engine of ENGINES) {
  for (let from = 1; from < SCHEMA_VERSION; from++) {
    Deno.test(`${engine}: an index at version ${from} is upgraded to ${SCHEMA_VERSION}; its rows are kept, are the upgrading recorder's, and new ones follow them`, async () => {
      const at = await indexAt(engine, from);
      const index = await ChunkIndex.open(at.location, "gs-1");
      try {
        const [chunk] = await index.chunks();
        assert.deepEqual(
          [chunk.id, chunk.recorder, chunk.path, chunk.bytes, chunk.end_ms],
          [
            from < 5 ? 7 : 1,
            "gs-1",
            "20261121_140210/video_segments/chunk_0001.mp4",
            5_000_000_000,
            1795350190000,
          ],
        );
        assert.equal((await index.openSessionOf("default"))?.lastFrameMs, 1795350190000);
        assert.equal((await index.outbox()).depth, from >= 2 ? 1 : 0);
        assert.deepEqual(
          (await index.pendingJobs()).map((j) => [j.id, j.recorder]),
          from >= 4 ? [["j1", "gs-1"]] : [],
        );
        // New rows take ids after the copied ones, on PostgreSQL too (a rebuilt table's sequence).
        await index.insertSession({
          stream: "default",
          session_id: "s2",
          dir: "s2",
          start_ms: 1,
          video_url: "ws://x",
        });
        const { id: _id, recorder: _r, close_reason: _c, ...facts } = chunk;
        await index.insertChunk({ ...facts, idx: 2, path: "s2/chunk_0001.mp4", status: "recording" });
        assert.ok((await index.chunk("s2/chunk_0001.mp4"))!.id > chunk.id);
        assert.equal(await schemaVersion(index.db, engine), SCHEMA_VERSION);
      } finally {
        await index.close();
        await at.drop();
      }
    });
  }

  Deno.test(`${engine}: recorders sharing an index each see and write their own rows, with the same stream, session and paths; the fleet's streams list both`, async () => {
    const at = await indexAt(engine, 0);
    // One at a time: SQLite refuses a second upgrader rather than wait (PostgreSQL's is tested below).
    const a = await ChunkIndex.open(at.location, "gs-a");
    const b = await ChunkIndex.open(at.location, "gs-b");
    try {
      const session = {
        stream: "default",
        session_id: "20261121_140210",
        dir: "20261121_140210",
        video_url: "ws://x",
      };
      const chunk = {
        stream: "default",
        session_id: session.session_id,
        idx: 1,
        path: "20261121_140210/video_segments/chunk_0001.mp4",
        end_ms: 2000,
        frames: 30,
        bytes: 1000,
        partial: 0,
        codec: "avc1.42c01e",
        width: 640,
        height: 360,
        status: "recording" as const,
      };
      await a.insertSession({ ...session, start_ms: 1000 });
      await b.insertSession({ ...session, start_ms: 5000 });
      await a.insertChunk({ ...chunk, start_ms: 1000 }, storageEvent("chunk_saved", "default", {}));
      await b.insertChunk({ ...chunk, start_ms: 5000 });
      await b.finish(
        chunk.path,
        { end_ms: 6000, frames: 31, bytes: 2000, partial: 0 },
        "complete",
        "duration",
      );
      assert.deepEqual((await a.chunks()).map((c) => [c.recorder, c.start_ms, c.status]), [[
        "gs-a",
        1000,
        "recording",
      ]]);
      assert.deepEqual((await b.chunks()).map((c) => [c.recorder, c.start_ms, c.status]), [[
        "gs-b",
        5000,
        "complete",
      ]]);
      assert.deepEqual(
        (await a.chunks({ recorder: "gs-b" })).map((c) => c.frames),
        [31],
        "another's, when asked",
      );
      assert.deepEqual((await a.openSessions()).map((s) => s.start_ms), [1000]);
      assert.deepEqual(
        [(await a.outbox()).depth, (await b.outbox()).depth],
        [1, 0],
        "each drains its own outbox",
      );
      assert.equal(JSON.parse((await a.unsentEvents(1))[0].body).recorder, "gs-a");
      assert.deepEqual([await a.usage(), await b.usage()], [1000, 2000]);
      assert.deepEqual(await b.streams(), [{ recorder: "gs-a", stream: "default" }, {
        recorder: "gs-b",
        stream: "default",
      }]);
    } finally {
      await a.close();
      await b.close();
      await at.drop();
    }
  });
}

Deno.test("postgres: recorders starting at once upgrade a new index once, under the advisory lock", async () => {
  const at = await indexAt("postgres", 0);
  const opened = await Promise.all(["r1", "r2", "r3", "r4"].map((r) => ChunkIndex.open(at.location, r)));
  try {
    assert.equal(await schemaVersion(opened[0].db, "postgres"), SCHEMA_VERSION);
    const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM skyreel_schema`.execute(opened[0].db);
    assert.equal(Number(rows[0].n), 1);
  } finally {
    for (const index of opened) await index.close();
    await at.drop();
  }
});

for (const engine of ENGINES) {
  Deno.test(`${engine}: an index from a newer version is refused, and left as it was`, async () => {
    const at = await indexAt(engine, SCHEMA_VERSION);
    const bump = new Kysely<Schema>({
      dialect: engine === "postgres" ? postgresDialect(at.location) : nodeSqliteDialect(at.location),
    });
    await sql.raw(
      engine === "postgres"
        ? `UPDATE skyreel_schema SET version = ${SCHEMA_VERSION + 1}`
        : `PRAGMA user_version = ${SCHEMA_VERSION + 1}`,
    ).execute(bump);
    try {
      await assert.rejects(
        ChunkIndex.open(at.location, "gs-1"),
        new RegExp(`index schema version ${SCHEMA_VERSION + 1} is newer than this build's ${SCHEMA_VERSION}`),
      );
      assert.equal(await schemaVersion(bump, engine), SCHEMA_VERSION + 1);
    } finally {
      await bump.destroy();
      await at.drop();
    }
  });
}

Deno.test("docs/schema.md gives the columns, indexes, statuses and version the code creates", async () => {
  const { dir, path } = await indexFrom(null);
  await (await ChunkIndex.open(path, "gs-1")).close();
  const db = new DatabaseSync(path);
  const doc = Deno.readTextFileSync(join(ROOT, "docs/schema.md"));
  try {
    const tables = db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
      .all().map((r) => String(r.name)).sort();
    const documented = [...doc.matchAll(/^## (\w+)/gm)].map((m) => m[1]).filter((n) => tables.includes(n));
    assert.deepEqual(documented.sort(), tables, "every table has its section");
    for (const table of tables) {
      const section = doc.split(/^## /m).find((s) => s.startsWith(table))!;
      const columns = db.prepare(`PRAGMA table_info(${table})`).all().map((r) => String(r.name)).sort();
      const rows = [...section.matchAll(/^\| ([a-z_, ]+) \|/gm)].map((m) => m[1]).filter((c) =>
        c !== "column"
      );
      assert.deepEqual(rows.flatMap((c) => c.split(", ")).sort(), columns, `${table}: columns`);
      const indexes = db.prepare(`PRAGMA index_list(${table})`).all()
        .filter((r) => !String(r.name).startsWith("sqlite_autoindex"))
        .map((r) =>
          `(${db.prepare(`PRAGMA index_info(${String(r.name)})`).all().map((c) => c.name).join(", ")})`
        ).sort();
      const line = section.match(/^Indexes: (.*)$/m)?.[1] ?? "";
      assert.deepEqual(
        [...line.matchAll(/`(\([^`]+\))`/g)].map((m) => m[1]).sort(),
        indexes,
        `${table}: indexes`,
      );
    }
    const chunks = doc.split(/^## /m).find((s) => s.startsWith("chunks"))!;
    const statuses = chunks.match(/^\| status \| text \| (.*) \|$/m)?.[1];
    assert.equal(statuses, CHUNK_STATUSES.map((s) => `\`${s}\``).join(", "));
    assert.match(doc, new RegExp(`schema version \\(${SCHEMA_VERSION}\\)`));
    const upgrades = doc.split("## Upgrades")[1].split(/^## /m)[0].match(/^\d+\. /gm) ?? [];
    assert.equal(upgrades.length, SCHEMA_VERSION, "one numbered paragraph an upgrade");
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("postgres: the upgrades make the same tables, columns and indexes as on SQLite", async () => {
  const sqlite = await indexAt("sqlite", SCHEMA_VERSION);
  const postgres = await indexAt("postgres", SCHEMA_VERSION);
  try {
    const db = new DatabaseSync(sqlite.location);
    const lite = Object.fromEntries(
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all()
        .map((r) => String(r.name)).map((t) => [
          t,
          db.prepare(`PRAGMA table_info(${t})`).all().map((r) => String(r.name)).sort(),
        ]),
    );
    const liteIndexes = db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'",
    ).all().map((r) => String(r.name)).sort();
    db.close();
    const schema = new URL(postgres.location).searchParams.get("options")!.split("=")[1];
    const columns = await pgQuery<{ table_name: string; column_name: string }>(
      schema,
      "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()",
    );
    const pgTables: Record<string, string[]> = {};
    for (const c of columns) (pgTables[c.table_name] ??= []).push(c.column_name);
    for (const t of Object.values(pgTables)) t.sort();
    assert.deepEqual(pgTables, { ...lite, skyreel_schema: ["version"] });
    const indexes = await pgQuery<{ indexname: string }>(
      schema,
      "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'",
    );
    assert.deepEqual(
      indexes.map((i) => i.indexname).filter((n) => !n.endsWith("_recorder_path") && !n.endsWith("_session"))
        .sort(),
      liteIndexes,
    );
  } finally {
    await sqlite.drop();
    await postgres.drop();
  }
});
