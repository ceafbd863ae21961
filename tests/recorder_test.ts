import assert from "node:assert/strict";
import { join } from "node:path";
import { scanChunk } from "../src/store/mp4/fragment_reader.ts";
import { type SourceFrame, sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  decodeErrors,
  gridStep,
  indexRows,
  jitter,
  pattern,
  probeFrames,
  ServiceProcess,
} from "./helpers.ts";

const CHUNK_SECONDS = 3;

Deno.test("a jittered 720p stream is recorded frame for frame, on time, in keyframe-aligned chunks", async () => {
  const h264 = await pattern({ width: 1280, height: 720, fps: 30, seconds: 10, gop: 30, bitrateKbps: 4000 });
  const frames = sourceFrames(h264);
  const sent: { at: number; frame: SourceFrame }[] = [];
  const relay = await startRelay({
    frames,
    intervalMs: jitter(42, 1000 / 30, 1000 / 25), // 25-30 fps, never a fixed rate
    startAfterClients: 1,
    onFrame: (_i, at, frame) => sent.push({ at, frame }),
  });
  const storage = await Deno.makeTempDir();
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    VIDEO_CHUNK_DURATION_SECONDS: String(CHUNK_SECONDS),
    FRAGMENT_DURATION_MS: "500",
  });
  try {
    await relay.finished;
    const health = await fetch(`http://127.0.0.1:${await service.port("http")}/healthz`);
    const body = await health.json();
    assert.equal(health.status, 200);
    assert.equal(body.status, "ok");
    assert.equal(body.broker.state, "connected");
    assert.deepEqual(body.actors.map((a: { actor: string }) => a.actor), [
      "publisher",
      "indexer",
      "janitor",
      "writer",
      "segmenter",
      "connection",
    ]);
    assert.ok(
      body.actors.every((a: { state: string; restarts: number }) =>
        a.state === "running" && a.restarts === 0
      ),
    );

    await relay.close(); // the relay goes away: the last frame is complete
    await service.waitForLog((l) => l.msg === "disconnected");
    const metrics = await service.metrics();
    for (
      const name of [
        "storage_video_chunks_saved_total",
        "storage_video_frames_written_total",
        "storage_video_chunk_duration_seconds",
        "storage_current_chunk_size_bytes",
        "storage_actual_fps",
        "storage_queue_size",
        "storage_partial_chunks_saved_total",
        "storage_frames_skipped_total",
        "storage_frames_dropped_total",
        "storage_reconnects_total",
        "storage_actor_restarts_total",
      ]
    ) assert.match(metrics, new RegExp(`^# TYPE ${name} `, "m"));

    const stopAt = performance.now();
    service.signal("SIGTERM");
    const status = await service.exit();
    const stopMs = performance.now() - stopAt;
    assert.equal(status.code, 0, service.stderr.join("\n"));
    assert.ok(stopMs < 5000, `stopped in ${stopMs} ms`);

    const { sessions, chunks } = indexRows(storage);
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].status, "ended");
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    assert.ok(chunks.every((c) => c.status === "complete"));
    assert.equal(chunks.at(-1)!.partial, 1, "the chunk closed at shutdown is partial");
    assert.ok(chunks.slice(0, -1).every((c) => c.partial === 0));

    // Every frame sent (the first is an IDR) is in a chunk, in order, within one step of the
    // stream's frame grid from its arrival.
    const recorded: { wallMs: number; key: boolean; chunk: number }[] = [];
    let step = Infinity;
    for (const [i, c] of chunks.entries()) {
      const path = join(storage, c.path);
      assert.equal(await decodeErrors(path), "", c.path);
      const probed = await probeFrames(path);
      assert.equal(probed.length, c.frames, `${c.path}: frames in the index`);
      assert.equal(probed[0].key, true, `${c.path} starts with a keyframe`);
      const startMs = scanChunk(await Deno.readFile(path)).startMs!;
      assert.ok(Math.abs(startMs - c.start_ms) <= 1);
      step = Math.min(step, gridStep(probed.map((p) => p.ptsMs)));
      for (const p of probed) recorded.push({ wallMs: startMs + p.ptsMs, key: p.key, chunk: i });
    }
    assert.equal(sent[0].frame.idr, true);
    assert.equal(recorded.length, sent.length);
    const errors = recorded.map((r, i) => Math.abs(r.wallMs - sent[i].at));
    const worst = Math.max(...errors);
    console.log(
      `  ${sent.length} frames; grid step ${step.toFixed(2)} ms; arrival-to-pts error max ${
        worst.toFixed(2)
      } ms, mean ${(errors.reduce((a, b) => a + b) / errors.length).toFixed(2)} ms; stop ${
        stopMs.toFixed(0)
      } ms`,
    );
    // Just under the mean interval (33.3-40 ms): pictures never outrun the steps; each stays within
    // a step of its arrival, plus the jitter (a run of intervals shorter than a step delays it).
    const mean = (sent.at(-1)!.at - sent[0].at) / (sent.length - 1);
    assert.ok(step > 0.9 * mean && step < mean, `grid step ${step} ms, mean interval ${mean} ms`);
    assert.ok(worst <= step + (1000 / 25 - 1000 / 30), `worst timestamp error ${worst} ms`);
    assert.deepEqual(recorded.map((r) => r.key), sent.map((s) => s.frame.idr));

    // Boundaries: a chunk rolls over at the keyframe nearest CHUNK_SECONDS, with no gap.
    const keys = recorded.filter((r) => r.key).map((r) => r.wallMs);
    const gop = Math.max(...keys.slice(1).map((t, i) => t - keys[i]));
    for (let i = 0; i + 1 < chunks.length; i++) {
      const next = recorded.find((r) => r.chunk === i + 1)!;
      const length = next.wallMs - recorded.find((r) => r.chunk === i)!.wallMs;
      assert.ok(next.key, `chunk ${i + 2} starts with a keyframe`);
      assert.ok(Math.abs(length - CHUNK_SECONDS * 1000) <= gop / 2 + step, `chunk ${i + 1} is ${length} ms`);
      assert.ok(Math.abs(chunks[i].end_ms - chunks[i + 1].start_ms) <= 1, "chunks are contiguous");
    }

    // metadata.json in the seed's schema: times in epoch seconds, ISO copies beside them.
    const meta = JSON.parse(await Deno.readTextFile(join(storage, sessions[0].dir, "metadata.json")));
    assert.equal(meta.session_id, sessions[0].session_id);
    assert.equal(meta.start_time, sessions[0].start_ms / 1000);
    assert.equal(meta.end_time, sessions[0].end_ms / 1000);
    assert.equal(new Date(meta.start_time_iso).getTime(), sessions[0].start_ms);
    assert.ok(Math.abs(meta.last_updated * 1000 - Date.now()) < 60_000);
    assert.equal(meta.codec, "H.264");
    assert.equal(meta.chunks[1].start_time, chunks[1].start_ms / 1000);
    assert.equal(meta.partial_chunks_count, 1);
    assert.equal(meta.current_chunk_frames, 0);
    assert.equal(meta.last_frame_time, chunks.at(-1)!.end_ms / 1000);
    assert.match(meta.session_id, /^\d{8}_\d{6}$/);
    assert.equal(meta.chunks.length, chunks.length);
    assert.equal(meta.total_frames, sent.length);
    assert.equal(meta.total_chunks, chunks.length);
    assert.equal(meta.chunks[0].filename, "chunk_0001.mp4");
    assert.deepEqual(meta.partial_chunks, [chunks.length]);
    for (
      const key of [
        "start_time",
        "video_url",
        "chunk_duration_seconds",
        "idle_timeout_seconds",
        "codec",
        "estimated_fps",
        "last_updated",
        "end_time",
        "duration",
        "total_size_bytes",
      ]
    ) {
      assert.ok(key in meta, key);
    }
    assert.equal(meta.total_size_bytes, chunks.reduce((n, c) => n + c.bytes, 0));
    const sizes = await Promise.all(chunks.map(async (c) => (await Deno.stat(join(storage, c.path))).size));
    assert.deepEqual(chunks.map((c) => c.bytes), sizes);
  } finally {
    service.signal("SIGKILL");
    await service.exit().catch(() => {});
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});
