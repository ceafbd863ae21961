import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { CHUNK_STATUSES, SCHEMA_VERSION } from "../src/store/index/schema.ts";
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
  Deno.test(`an index at version ${from} is upgraded to ${SCHEMA_VERSION}, its rows kept and usable`, async () => {
    const { dir, path } = await indexFrom(ddl);
    const index = await ChunkIndex.open(path);
    try {
      const chunks = await index.db.selectFrom("chunks").selectAll().execute();
      assert.deepEqual(chunks.map((c) => [c.path, c.status, c.frames]), [
        ["20261121_140210/video_segments/chunk_0001.mp4", "complete", 1800],
      ]);
      assert.equal((await index.outbox()).depth, from === 2 ? 1 : 0, "an unsent event stays unsent");
      await index.appendEvent(storageEvent("stream_state", "default", { state: "connected" }));
      await index.setStatus(chunks[0].path, "deleting");
      assert.equal((await index.pendingJobs()).length, 0);
    } finally {
      await index.close();
    }
    assert.equal(version(path), SCHEMA_VERSION);
    await Deno.remove(dir, { recursive: true });
  });
}

Deno.test("an index from a newer version is refused, and left as it was", async () => {
  const { dir, path } = await indexFrom(
    `CREATE TABLE future (x); PRAGMA user_version = ${SCHEMA_VERSION + 1};`,
  );
  await assert.rejects(
    ChunkIndex.open(path),
    new RegExp(`index schema version ${SCHEMA_VERSION + 1} is newer than this build's ${SCHEMA_VERSION}`),
  );
  assert.equal(version(path), SCHEMA_VERSION + 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("docs/schema.md gives the columns, indexes, statuses and version the code creates", async () => {
  const { dir, path } = await indexFrom(null);
  await (await ChunkIndex.open(path)).close();
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
