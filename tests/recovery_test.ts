import assert from "node:assert/strict";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { Metrics } from "../src/runtime/metrics.ts";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { Fragmenter } from "../src/store/mp4/fragmenter.ts";
import { initSegment } from "../src/store/mp4/init_segment.ts";
import { OpenChunks } from "../src/store/open_chunks.ts";
import { applyAudit, audit, recover } from "../src/store/recovery.ts";
import {
  decodeErrors,
  exists,
  indexRows,
  type LogLine,
  parsedFrames,
  recordPattern,
  ServiceProcess,
  SMALL_PATTERN,
} from "./helpers.ts";
import { ENGINES, indexLocation } from "./postgres_helpers.ts";

/**
 * Starts the service on existing storage (no relay) and stops it once recovery has run (and, with
 * `audited`, once the janitor's walk has been applied by the indexer).
 */
async function restart(storage: string, audited = false): Promise<LogLine[]> {
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: "ws://127.0.0.1:9/ws/video/consume",
    STORAGE_PATH: storage,
  });
  await service.waitForLog((l) => l.msg === "recording", "start-up");
  if (audited) await service.waitForLog((l) => l.msg === "audit applied", "the audit");
  service.signal("SIGTERM");
  assert.equal((await service.exit()).code, 0);
  return service.logs;
}

const facts = (
  c: Record<string, unknown>,
) => [c.path, c.start_ms, c.end_ms, c.frames, c.bytes, c.width, c.height, c.codec];

Deno.test("a deleted index is rebuilt from the chunk files; a closed chunk's file, or a whole session folder, deleted by hand becomes missing in the background audit", async () => {
  const { storage } = await recordPattern({
    ...SMALL_PATTERN,
    intervalMs: 25,
    env: { VIDEO_CHUNK_DURATION_SECONDS: "1" },
  });
  try {
    const before = indexRows(storage);
    assert.ok(before.chunks.length >= 3);
    for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
      await Deno.remove(join(storage, f)).catch(() => {});
    }
    await restart(storage);
    const rebuilt = indexRows(storage);
    assert.deepEqual(rebuilt.chunks.map(facts), before.chunks.map(facts));
    assert.ok(rebuilt.chunks.every((c) => c.status === "recovered"));
    assert.deepEqual(
      rebuilt.sessions.map((s) => [s.session_id, s.dir, s.start_ms]),
      before.sessions.map((s) => [s.session_id, s.dir, s.start_ms]),
    );

    const gone = rebuilt.chunks[1];
    await Deno.remove(join(storage, gone.path));
    await restart(storage, true);
    const after = indexRows(storage);
    assert.deepEqual(
      after.chunks.map((c) => c.status),
      rebuilt.chunks.map((c) => c.path === gone.path ? "missing" : "recovered"),
    );
    const meta = JSON.parse(await Deno.readTextFile(join(storage, after.sessions[0].dir, "metadata.json")));
    assert.equal(meta.chunks[1].status, "missing");
    assert.equal(meta.total_frames, before.chunks.reduce((n, c) => n + c.frames, 0) - gone.frames);

    // Whole session folders deleted by hand (or a new disk under a shared index): every chunk is
    // missing, and no actor fails over a metadata.json there is no folder for.
    for (const session of after.sessions) await Deno.remove(join(storage, session.dir), { recursive: true });
    const logs = await restart(storage, true);
    assert.ok(indexRows(storage).chunks.every((c) => c.status === "missing"));
    assert.deepEqual(logs.filter((l) => l.msg === "actor failed, restarting"), []);
    assert.equal(await exists(join(storage, after.sessions[0].dir)), false);
  } finally {
    await Deno.remove(storage, { recursive: true });
  }
});

for (const engine of ENGINES) {
  Deno.test(`recovery alone: a torn chunk is cut at its last whole fragment and its row says what is left; a file without a row is indexed (${engine})`, async () => {
    // The fixture's frames at 30 fps, in 1 s fragments, as the writer writes them.
    const frames = parsedFrames().slice(0, 150);
    const t0 = Date.UTC(2026, 10, 21, 14, 2, 10);
    const f = new Fragmenter({ startMs: t0, fragmentMs: 1000 });
    const parts = [initSegment(frames[0].params!)];
    const perFragment: number[] = [];
    frames.forEach((fr, i) => {
      const out = f.add({ ...fr, ts: t0 + i * 1000 / 30 });
      if (out) (parts.push(out.bytes), perFragment.push(out.frames));
    });
    const whole = Buffer.concat(parts);
    const wholeFragments = parts.length - 2; // the last is torn below
    const keep = parts.slice(0, -1).reduce((n, p) => n + p.length, 0);
    const torn = whole.subarray(0, keep + Math.floor(parts.at(-1)!.length / 2));

    const root = await Deno.makeTempDir();
    const where = await indexLocation(engine, root);
    const index = await ChunkIndex.open(where.location, "test");
    try {
      const session = "20261121_140210";
      await Deno.mkdir(join(root, session, "video_segments"), { recursive: true });
      const path = (n: number) => `${session}/video_segments/chunk_000${n}.mp4`;
      await Deno.writeFile(join(root, path(1)), torn);
      await Deno.writeFile(join(root, path(2)), whole); // no row: a crash before the indexer heard of it
      await index.insertSession({
        stream: "default",
        session_id: session,
        dir: session,
        start_ms: t0,
        video_url: "ws://x",
      });
      await index.insertChunk({
        stream: "default",
        session_id: session,
        idx: 1,
        path: path(1),
        start_ms: t0,
        end_ms: t0,
        frames: 0,
        bytes: 0,
        partial: 0,
        codec: "avc1.42c01e",
        width: 854,
        height: 480,
        status: "recording",
      });
      const options = {
        index,
        layout: { root, multiStream: false },
        defaultStream: "default",
        settings: { chunkMs: 60_000, idleMs: 10_000 },
        metrics: new Metrics(),
        openChunks: new OpenChunks(),
        videoUrlOf: () => "ws://x",
      };
      const report = await recover(options);
      assert.deepEqual([report.recovered, report.orphans], [1, 1]);
      const rows = await index.chunks({ stream: "default" });
      const expected = perFragment.slice(0, wholeFragments).reduce((a, b) => a + b, 0);
      assert.deepEqual(rows.map((r) => [r.path, r.status, r.frames]), [
        [path(1), "recovered", expected],
        [path(2), "recovered", perFragment.slice(0, parts.length - 1).reduce((a, b) => a + b, 0)],
      ]);
      assert.equal((await Deno.stat(join(root, path(1)))).size, keep, "cut at the last whole fragment");
      assert.equal(rows[0].bytes, keep);
      assert.equal(rows[0].start_ms, t0);
      assert.equal(await decodeErrors(join(root, path(1))), "", "what is left decodes");
      const events = (await index.unsentEvents(10)).map((e) => e.type);
      assert.deepEqual(events, ["chunk_recovered", "chunk_recovered"]);

      // The session ends. What no crash causes is left to the audit: start-up recovery does not
      // look into an ended session's folder, so it neither sees the file deleted by hand nor the
      // one copied in.
      await index.endSession("default", session, t0 + 5000);
      await Deno.remove(join(root, path(1)));
      await Deno.writeFile(join(root, path(3)), whole);
      const again = await recover(options);
      assert.deepEqual([again.recovered, again.orphans, again.missing], [0, 0, 0]);
      const findings = await audit(index, root);
      assert.deepEqual([findings.missing, findings.orphans], [[path(1)], [path(3)]]);
      // Each finding is checked again when applied: a chunk opened since the walk is left alone.
      options.openChunks.add(path(3));
      assert.equal((await applyAudit(options, findings)).orphans, 0);
      options.openChunks.delete(path(3));
      const applied = await applyAudit(options, findings);
      assert.deepEqual(
        [applied.missing, applied.orphans],
        [0, 1],
        "path(1) was marked missing the first time",
      );
      const after = await index.chunks({ stream: "default" });
      assert.deepEqual(after.map((r) => [r.path, r.status]), [
        [path(1), "missing"],
        [path(2), "recovered"],
        [path(3), "recovered"],
      ]);
    } finally {
      await index.close();
      await where.drop();
      await Deno.remove(root, { recursive: true });
    }
  });
}
