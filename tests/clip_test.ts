import { chunkFile } from "../src/serve/clip/chunk_bytes.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { faststartClip, fragmentedClip } from "../src/serve/clip/mux.ts";
import { planClip } from "../src/serve/clip/plan.ts";
import { scanChunk } from "../src/store/mp4/fragment_reader.ts";
import {
  decodeErrors,
  indexRows,
  probeDurationMs,
  probeFrames,
  recordPattern,
  ServiceProcess,
} from "./helpers.ts";

Deno.test("clips across a chunk boundary: exact length, keyframe start, clean decode, both formats", async () => {
  // A 720p pattern (a keyframe every 30 frames, one frame every 15 ms) in 2-second chunks.
  const { storage } = await recordPattern({
    width: 1280,
    height: 720,
    fps: 30,
    seconds: 12,
    gop: 30,
    bitrateKbps: 2000,
    intervalMs: 15,
    env: { VIDEO_CHUNK_DURATION_SECONDS: "2" },
  });
  const chunks = indexRows(storage).chunks;
  try {
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    const frameMs = 15;
    const from = chunks[0].start_ms + 700, to = chunks[1].start_ms + 900;
    const plan = planClip(chunks as any, from, to, 1000);
    assert.deepEqual(plan.chunks.map((c) => c.path), [chunks[0].path, chunks[1].path]);
    assert.deepEqual(plan.gaps, []);

    const saved = join(storage, "clip.mp4");
    const file = await Deno.open(saved, { write: true, createNew: true });
    const summary = await faststartClip((c) => chunkFile(storage, c.path), plan, from, to, file);
    file.close();
    assert.equal(await decodeErrors(saved), "");
    // [from, to), from the start of the picture on screen at `from` (it may have lasted two steps).
    const duration = await probeDurationMs(saved);
    const early = duration - (to - from);
    assert.ok(early >= -1 && early <= 2 * frameMs, `duration ${duration} for ${to - from}`);
    // It starts with the picture on screen at `from`, from that picture's start.
    assert.ok(
      summary.startMs <= from && from - summary.startMs < 2 * frameMs,
      `starts ${from - summary.startMs} ms early`,
    );
    const probed = await probeFrames(saved);
    assert.equal(probed[0].key, true);
    // Every recorded frame from the keyframe at or before `from` to the last one starting before `to`.
    const recorded = [];
    for (const c of chunks.slice(0, 2)) {
      const scan = scanChunk(await Deno.readFile(join(storage, c.path)));
      for (const x of scan.samples) recorded.push({ wall: scan.startMs! + x.time / 90, key: x.key });
    }
    const firstKey = recorded.findLastIndex((r) => r.key && r.wall <= from);
    const lastBeforeTo = recorded.findLastIndex((r) => r.wall < to);
    assert.equal(probed.length, lastBeforeTo - firstKey + 1);
    assert.ok(firstKey > 0 && lastBeforeTo < recorded.length - 1, "the clip is cut inside the recording");
    assert.deepEqual(
      boxTypes(await Deno.readFile(saved)),
      ["ftyp", "moov", "mdat"],
      "faststart: moov before mdat",
    );

    const fmp4 = join(storage, "clip_f.mp4");
    const parts: Uint8Array[] = [];
    const clip = await fragmentedClip((c) => chunkFile(storage, c.path), plan, from, to);
    assert.ok(
      clip.startMs <= from && from - clip.startMs < 30 * frameMs,
      "starts at the keyframe before from",
    );
    for await (const p of clip.pieces) parts.push(p);
    await Deno.writeFile(fmp4, new Uint8Array(parts.flatMap((p) => [...p])));
    assert.equal(await decodeErrors(fmp4), "");
    assert.ok(parts.length > 3, "streamed in pieces");
    assert.deepEqual((await probeFrames(fmp4)).length, probed.length);
    // It ends with the last picture starting before `to`, which lasts one or two grid steps.
    assert.ok(Math.abs(await probeDurationMs(fmp4) - (to - clip.startMs)) <= 2 * frameMs);
  } finally {
    await Deno.remove(storage, { recursive: true });
  }
});

function boxTypes(bytes: Uint8Array): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  for (let at = 0; at + 8 <= bytes.length; at += view.getUint32(at)) {
    out.push(String.fromCharCode(...bytes.subarray(at + 4, at + 8)));
    if (view.getUint32(at) < 8) break;
  }
  return out;
}

Deno.test("clip reads are bounded: beyond CLIP_MAX_CONCURRENT a 503 with Retry-After; a slow client's clip is whole and byte-equal to a fast one's", async () => {
  const { storage } = await recordPattern({
    width: 640,
    height: 360,
    fps: 30,
    seconds: 6,
    gop: 30,
    // About 15 MB: far more than loopback's socket buffers hold for a client that stopped reading
    // (the send side grows to 4 MiB at most), so the stalled clip is still being read.
    bitrateKbps: 20000,
    noise: true,
    intervalMs: 10,
    env: { VIDEO_CHUNK_DURATION_SECONDS: "2" },
  });
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: "ws://127.0.0.1:9/ws/video/consume",
    STORAGE_PATH: storage,
    CLIP_MAX_CONCURRENT: "1",
  });
  try {
    const chunks = indexRows(storage).chunks;
    const base = `http://127.0.0.1:${await service.port("http")}`;
    const url = `${base}/api/clip?from=${new Date(chunks[0].start_ms).toISOString()}&to=${
      new Date(chunks.at(-1)!.end_ms).toISOString()
    }`;
    // A client that takes one piece, then stalls: its clip is still being read.
    const slow = await fetch(url);
    const reader = slow.body!.getReader();
    const parts: Uint8Array[] = [(await reader.read()).value!];
    const refused = await fetch(url);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.match((await refused.json()).error, /CLIP_MAX_CONCURRENT/);
    for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (whole.set(p, at), at + p.length), 0);
    const clip = join(storage, "slow.mp4");
    await Deno.writeFile(clip, whole);
    assert.equal(await decodeErrors(clip), "");
    assert.equal((await probeFrames(clip)).length, chunks.reduce((n, c) => n + c.frames, 0));
    const fast = new Uint8Array(await (await fetch(url)).arrayBuffer());
    assert.deepEqual(whole, fast);
    // The slot is free again once the stream ended.
    const again = await fetch(url);
    assert.equal(again.status, 200);
    await again.body!.cancel();
    assert.equal(await service.metric("storage_clips_refused_total"), 1);
  } finally {
    service.signal("SIGTERM");
    await service.exit();
    await Deno.remove(storage, { recursive: true });
  }
});
