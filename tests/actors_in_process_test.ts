/** The indexer, the janitor, the writer and the segmenter alone, in this process, on a real index in a temp folder, with a clock the test sets. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Indexer } from "../actors/indexer.ts";
import { Janitor } from "../actors/janitor.ts";
import { Segmenter } from "../actors/segmenter.ts";
import { Writer } from "../actors/writer.ts";
import { type IndexerMsg, messageBytes, type SegmenterMsg, type WriterMsg } from "../src/record/messages.ts";
import { OpenChunks } from "../src/store/open_chunks.ts";
import { decodeErrors, FIXTURE, frameMd5s, parsedFrames, pattern, sumMetric } from "./helpers.ts";
import { Mailbox } from "../src/runtime/actor.ts";
import type { Clock } from "../src/runtime/clock.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import { Conditions } from "../src/serve/health.ts";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { IndexChanges } from "../src/store/index/index_changes.ts";
import { Leases } from "../src/store/leases.ts";
import type { Engine } from "../src/store/index/schema.ts";
import { ENGINES, indexLocation } from "./postgres_helpers.ts";

const T0 = Date.UTC(2026, 10, 21, 14, 2, 10);
const SESSION = "20261121_140210";
const PATH = (n: number) => `${SESSION}/video_segments/chunk_000${n}.mp4`;
const settings = { chunkMs: 60_000, idleMs: 10_000 };

async function world(engine: Engine = "sqlite") {
  const root = await Deno.makeTempDir();
  const where = await indexLocation(engine, root);
  const index = await ChunkIndex.open(where.location, "test");
  let now = T0;
  const clock: Clock = { now: () => now, monotonic: () => now - T0 };
  const changes = new IndexChanges();
  const heard: string[] = [];
  changes.listen((_stream, kind) => heard.push(kind));
  const indexer = new Indexer({
    index,
    root,
    settings,
    metrics: new Metrics(),
    changes,
    conditions: new Conditions(),
    recover: () => Promise.resolve(null),
    applyAudit: () => Promise.resolve(),
    clock,
  });
  const metadata = async () =>
    JSON.parse(await Deno.readTextFile(join(root, SESSION, "metadata.json"))) as Record<string, any>;
  const events = async () =>
    (await index.unsentEvents(100)).map((e) =>
      `${e.type}:${JSON.parse(e.body).data.chunk_info?.index ?? ""}`
    );
  return {
    root,
    index,
    indexer,
    changes,
    heard,
    metadata,
    events,
    at: (ms: number) => (now = T0 + ms),
    async close() {
      await index.close();
      await where.drop();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** The session's folder, and the indexer told it started at T0. */
async function startSession(w: Awaited<ReturnType<typeof world>>) {
  await Deno.mkdir(join(w.root, SESSION, "video_segments"), { recursive: true });
  await w.indexer.receive({
    type: "session-started",
    stream: "default",
    sessionId: SESSION,
    dir: SESSION,
    startMs: T0,
    videoUrl: "ws://relay",
  });
}

async function openChunk(w: Awaited<ReturnType<typeof world>>, n: number, startMs: number) {
  await w.indexer.receive({
    type: "chunk-opened",
    chunk: {
      stream: "default",
      sessionId: SESSION,
      index: n,
      path: PATH(n),
      startMs: T0 + startMs,
      codec: "avc1.42c01e",
      width: 1280,
      height: 720,
    },
  });
}

for (const engine of ENGINES) {
  Deno.test(`the indexer records a chunk's life, its events with it, and metadata.json at most every 10 s while it grows (${engine})`, async () => {
    const w = await world(engine);
    try {
      await startSession(w);
      await openChunk(w, 1, 0);
      const progress = (ms: number, frames: number) =>
        w.indexer.receive({
          type: "chunk-progress",
          stream: "default",
          sessionId: SESSION,
          path: PATH(1),
          endMs: T0 + ms,
          frames,
          bytes: frames * 1000,
        });
      w.at(1000);
      await progress(1000, 30);
      assert.equal((await w.metadata()).last_updated, (T0 + 1000) / 1000, "the first progress writes it");
      w.at(9000);
      await progress(9000, 270);
      assert.equal((await w.metadata()).last_updated, (T0 + 1000) / 1000, "not again within 10 s");
      assert.deepEqual((await w.index.chunk(PATH(1)))!.frames, 270, "the row follows every fragment");
      w.at(11_500);
      await progress(11_000, 330);
      assert.equal((await w.metadata()).current_chunk_frames, 330, "rewritten once 10 s passed");

      w.at(60_100);
      await w.indexer.receive({
        type: "chunk-closed",
        stream: "default",
        sessionId: SESSION,
        path: PATH(1),
        endMs: T0 + 60_000,
        frames: 1800,
        bytes: 1_800_000,
        partial: false,
        reason: "duration",
      });
      const row = (await w.index.chunk(PATH(1)))!;
      assert.deepEqual([row.status, row.close_reason, row.frames, row.end_ms], [
        "complete",
        "duration",
        1800,
        T0 + 60_000,
      ]);
      await w.indexer.receive({
        type: "session-ended",
        stream: "default",
        sessionId: SESSION,
        endMs: T0 + 60_000,
      });
      assert.deepEqual(await w.events(), ["session_started:", "chunk_saved:1", "session_complete:"]);
      const meta = await w.metadata();
      assert.equal(meta.duration, 60);
      assert.equal(meta.total_frames, 1800);
      assert.ok(w.heard.includes("chunk-closed") && w.heard.includes("session-ended"), w.heard.join());
    } finally {
      await w.close();
    }
  });
}

for (const engine of ENGINES) {
  Deno.test(`the janitor deletes the oldest closed chunks over the budget, leaves a leased one, and says so in events (${engine})`, async () => {
    const w = await world(engine);
    try {
      await startSession(w);
      const MB = 2 ** 20;
      for (let n = 1; n <= 4; n++) {
        await Deno.writeFile(join(w.root, PATH(n)), new Uint8Array(MB));
        await openChunk(w, n, (n - 1) * 60_000);
        await w.indexer.receive({
          type: "chunk-closed",
          stream: "default",
          sessionId: SESSION,
          path: PATH(n),
          endMs: T0 + n * 60_000,
          frames: 1800,
          bytes: MB,
          partial: false,
          reason: "duration",
        });
      }
      const leases = new Leases();
      const release = leases.take([PATH(1)]);
      const janitor = new Janitor({
        index: w.index,
        changes: w.changes,
        leases,
        root: w.root,
        // 4 MiB of chunks plus the index, against a budget of 2.5 MiB: two must go.
        policy: { budgetBytes: 2.5 * MB, maxAgeMs: null, minFreeBytes: 0, keepUntilArchived: false },
        intervalMs: 60_000,
        settings,
        metrics: new Metrics(),
        self: new Mailbox(4),
        indexer: { send: () => true },
        clock: { now: () => T0 + 300_000, monotonic: () => 300_000 },
      });
      try {
        const deleted = await janitor.pass();
        assert.deepEqual(deleted, [PATH(2), PATH(3)], "the oldest not leased");
        release();
        assert.deepEqual(
          (await w.index.chunks({ stream: "default" })).map((c) => c.status),
          ["complete", "deleted", "deleted", "complete"],
        );
        for (const n of [2, 3]) await assert.rejects(Deno.stat(join(w.root, PATH(n))), Deno.errors.NotFound);
        assert.deepEqual((await w.events()).filter((e) => e.startsWith("chunk_deleted")).length, 2);
      } finally {
        janitor.close();
      }
    } finally {
      await w.close();
    }
  });
}

Deno.test("the writer alone: a session folder, a chunk that decodes with every frame sent, the indexer told each step, and chunk numbers never reused", async () => {
  const frames = parsedFrames().slice(0, 90);
  const root = await Deno.makeTempDir();
  const told = new Mailbox<IndexerMsg>(10_000);
  const options = {
    stream: "default",
    videoUrl: "ws://relay",
    layout: { root, multiStream: false },
    fragmentMs: 1000,
    fsyncFragments: false,
    indexer: told,
    metrics: new Metrics(),
    openChunks: new OpenChunks(),
    self: new Mailbox<WriterMsg>(100),
    segmenter: new Mailbox<SegmenterMsg>(100),
    conditions: new Conditions(),
    clock: { now: () => T0, monotonic: () => 0 },
  };
  const writer = new Writer(options);
  try {
    const at = (i: number) => ({ ...frames[i], ts: T0 + i * 1000 / 30 });
    await writer.receive({ type: "session-start", ts: T0 });
    await writer.receive({ type: "chunk-open", frame: at(0), carry: [] });
    // As the segmenter sends them: the opening frame is written like every other.
    for (let i = 0; i < frames.length; i++) await writer.receive({ type: "frame", frame: at(i) });
    await writer.receive({ type: "chunk-close", reason: "duration", partial: false, endTs: T0 + 3000 });
    const messages: IndexerMsg[] = [];
    while (told.size > 0) messages.push((await told.take())!);
    const kinds = messages.map((m) => m.type);
    assert.deepEqual(
      [kinds[0], kinds[1], kinds.at(-1)],
      ["session-started", "chunk-opened", "chunk-closed"],
      kinds.join(),
    );
    assert.ok(kinds.filter((k) => k === "chunk-progress").length >= 2, "progress after each fragment");
    const closed = messages.at(-1) as Extract<IndexerMsg, { type: "chunk-closed" }>;
    assert.equal(closed.frames, 90);
    assert.equal(closed.path, `${SESSION}/video_segments/chunk_0001.mp4`);
    const file = join(root, closed.path);
    assert.equal((await Deno.stat(file)).size, closed.bytes);
    assert.equal(await decodeErrors(file), "");
    // Picture for picture the source's first 90.
    assert.deepEqual(await frameMd5s(file), (await frameMd5s(FIXTURE, true)).slice(0, 90));

    // The janitor deleted the session's only chunk; its row keeps the path, so the next chunk
    // takes a new number, as does one a restarted writer opens in the session it continues.
    await Deno.remove(file);
    await writer.receive({ type: "chunk-open", frame: at(0), carry: [] });
    await writer.receive({ type: "chunk-close", reason: "shutdown", partial: true, endTs: T0 + 40 });
    const restarted = new Writer({
      ...options,
      resume: { sessionId: SESSION, dir: SESSION, lastIdx: 5 },
    });
    await restarted.receive({ type: "chunk-open", frame: at(0), carry: [] });
    await restarted.receive({ type: "chunk-close", reason: "shutdown", partial: true, endTs: T0 + 40 });
    const opened: string[] = [];
    while (told.size > 0) {
      const m = (await told.take())!;
      if (m.type === "chunk-opened") opened.push(m.chunk.path);
    }
    assert.deepEqual(opened, [2, 6].map((n) => `${SESSION}/video_segments/chunk_000${n}.mp4`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the segmenter alone: a frame the writer's queue refuses is counted, the chunk skips to the next keyframe and goes on", async () => {
  const h264 = await pattern({ width: 320, height: 240, fps: 30, seconds: 2, gop: 30, bitrateKbps: 300 });
  const frames = parsedFrames(h264);
  assert.deepEqual(frames.flatMap((f, i) => f.keyframe ? [i] : []), [0, 30]);
  const writer = new Mailbox<WriterMsg>(20, Infinity, messageBytes); // 20 messages, then full
  const metrics = new Metrics();
  const segmenter = new Segmenter({
    stream: "default",
    self: new Mailbox<SegmenterMsg>(10),
    writer,
    metrics,
    gopCacheBytes: 32 * 2 ** 20,
    input: { cut: "keyframe", chunkMs: 60_000, idleMs: 10_000, minFrames: 1, sessionIdleMs: 300_000 },
    clock: { now: () => T0, monotonic: () => 0 },
  });
  const written: number[] = [];
  const drain = async () => {
    while (writer.size > 0) {
      const m = (await writer.take())!;
      if (m.type === "frame") written.push(Math.round((m.frame.ts - T0) * 30 / 1000));
    }
  };
  try {
    const send = (i: number) =>
      segmenter.receive({ type: "frame", frame: { ...frames[i], ts: T0 + i * 1000 / 30, gridTicks: 3000 } });
    // The writer stalls: session-start, chunk-open and 18 frames fill its queue; 18 is refused.
    for (let i = 0; i < 25; i++) send(i);
    await drain();
    for (let i = 25; i < 60; i++) {
      send(i);
      await drain();
    }
    // 19-29 refer to the lost 18: skipped; the chunk goes on from the keyframe at 30.
    assert.deepEqual(written, [
      ...Array.from({ length: 18 }, (_, i) => i),
      ...Array.from({ length: 30 }, (_, i) => 30 + i),
    ]);
    const text = await metrics.registry.metrics();
    assert.equal(sumMetric(text, "storage_frames_dropped_total", { reason: "queue_full" }), 1);
    assert.equal(sumMetric(text, "storage_frames_skipped_total", { reason: "after_drop" }), 11);
  } finally {
    segmenter.close();
  }
});
