import assert from "node:assert/strict";
import { join } from "node:path";
import { sql } from "kysely";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { isCrossDevice, isDiskFull } from "../src/store/errors.ts";
import { smallFilesystem } from "./helpers.ts";

Deno.test("SQLITE_FULL through kysely is a full disk; an error that only says so in its text is not", async () => {
  const dir = await Deno.makeTempDir();
  const index = await ChunkIndex.open(join(dir, "index.db"), "test");
  try {
    // A page limit makes SQLite answer SQLITE_FULL exactly as a full device does (once no free page
    // is left for the write: the upgrades' rebuilt tables left some).
    await sql`VACUUM`.execute(index.db);
    const { rows } = await sql<{ max_page_count: number }>`PRAGMA page_count`.execute(index.db);
    await sql.raw(`PRAGMA max_page_count = ${Object.values(rows[0])[0]}`).execute(index.db);
    const err = await index.db.schema.createTable("filler").addColumn("x", "blob").execute()
      .then(() => null, (e) => e);
    assert.ok(err, "the write was refused");
    assert.ok(isDiskFull(err), `${err}`);
    assert.equal(isDiskFull(new Error("database or disk is full")), false);
    assert.equal(isDiskFull(new Error("No space left on device (os error 28)")), false);
  } finally {
    await index.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "ENOSPC from a file write is a full disk",
  ignore: Deno.uid() !== 0, // the small filesystem is a tmpfs mount
  fn: async () => {
    const dir = smallFilesystem(1);
    const file = await Deno.open(join(dir, "fill"), { write: true, create: true });
    let err: unknown = null;
    try {
      for (;;) await file.write(new Uint8Array(64 * 1024));
    } catch (e) {
      err = e;
    } finally {
      file.close();
      new Deno.Command("umount", { args: [dir] }).outputSync();
      await Deno.remove(dir);
    }
    assert.ok(isDiskFull(err), `${err}`);
    assert.equal(isDiskFull(new Deno.errors.NotFound("x")), false);
  },
});

Deno.test({
  name: "a rename onto another filesystem is cross-device, told by its code",
  ignore: Deno.uid() !== 0, // the other filesystem is a tmpfs mount
  fn: async () => {
    const dir = smallFilesystem(1);
    const src = await Deno.makeTempFile();
    let err: unknown = null;
    try {
      await Deno.rename(src, join(dir, "moved"));
    } catch (e) {
      err = e;
    } finally {
      new Deno.Command("umount", { args: [dir] }).outputSync();
      await Deno.remove(dir);
      await Deno.remove(src);
    }
    assert.ok(isCrossDevice(err), `${err}`);
    assert.equal(isCrossDevice(new Error("Invalid cross-device link (os error 18)")), false);
  },
});
