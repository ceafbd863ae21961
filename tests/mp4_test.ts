import assert from "node:assert/strict";
import { join } from "node:path";
import { scanChunk } from "../src/store/mp4/fragment_reader.ts";
import { type ClockedFrame, FrameClock } from "../src/ingest/frame_clock.ts";
import { Fragmenter } from "../src/store/mp4/fragmenter.ts";
import { initSegment } from "../src/store/mp4/init_segment.ts";
import { fragmentedClip } from "../src/serve/clip/mux.ts";
import { chunkFile } from "../src/serve/clip/chunk_bytes.ts";
import { concat } from "../src/runtime/bytes.ts";
import { decodeErrors, jitter, parsedFrames, probeFrames } from "./helpers.ts";

const frames = parsedFrames();

/** The fixture's first `times.length` frames at those times, through the fragmenter, into one file. */
function mux(fragmentMs: number, times: number[], stepTicks?: number) {
  const f = new Fragmenter({ startMs: times[0], fragmentMs });
  const parts = [initSegment(frames[0].params!, undefined, stepTicks)];
  const fragmentFrames: number[] = [];
  frames.slice(0, times.length).forEach((fr, i) => {
    const out = f.add({ ...fr, ts: times[i] });
    if (out) (parts.push(out.bytes), fragmentFrames.push(out.frames));
  });
  const last = f.finish();
  if (last) (parts.push(last.bytes), fragmentFrames.push(last.frames));
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (bytes.set(p, at), at += p.length);
  return { bytes, fragmentFrames, boundaries: parts.map((p) => p.length) };
}

/** Jittered arrivals, placed on the frame grid as the connection's clock places them. */
const arrivals = (() => {
  const step = jitter(7, 55, 80);
  const clock = new FrameClock<ClockedFrame>();
  const timed: ClockedFrame[] = [];
  let t = 1_795_000_000_000.25;
  for (let i = 0; i < frames.length; i++, t += step(i)) {
    timed.push(...clock.push({ arrival: t, ts: 0, gridTicks: 0, keyframe: frames[i].keyframe }));
  }
  timed.push(...clock.flush());
  return timed.map((f) => f.ts);
})();

Deno.test("each sample's presentation time is its frame's own timestamp (ffprobe)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { bytes } = mux(1000, arrivals);
    const path = join(dir, "c.mp4");
    await Deno.writeFile(path, bytes);
    const probed = await probeFrames(path);
    assert.equal(probed.length, 144);
    assert.deepEqual(probed.map((p) => p.key).indexOf(true), 0);
    probed.forEach((p, i) => assert.ok(Math.abs(p.ptsMs - (arrivals[i] - arrivals[0])) < 0.02, `frame ${i}`));
    assert.equal(await decodeErrors(path), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fragments hold the frames of at most FRAGMENT_DURATION_MS", () => {
  const { fragmentFrames } = mux(500, arrivals);
  assert.equal(fragmentFrames.reduce((a, b) => a + b), 144);
  let i = 0;
  for (const n of fragmentFrames) {
    assert.ok(arrivals[i + n - 1] - arrivals[i] < 500, `fragment starting at frame ${i}`);
    i += n;
  }
});

Deno.test("a scan finds the last complete fragment of a torn file and its wall-clock times", () => {
  const { bytes, fragmentFrames, boundaries } = mux(1000, arrivals);
  const full = scanChunk(bytes);
  assert.equal(full.frames, 144);
  assert.equal(full.validBytes, bytes.length);
  assert.ok(Math.abs(full.startMs! - arrivals[0]) < 0.001);
  assert.equal(full.startsWithKeyframe, true);
  assert.deepEqual([full.width, full.height, full.codec], [854, 480, "avc1.42c01e"]);
  const endOfThird = boundaries.slice(0, 4).reduce((a, b) => a + b); // init + 3 fragments
  for (const cut of [endOfThird, endOfThird + 1, endOfThird + 200, endOfThird + boundaries[4] - 1]) {
    const torn = scanChunk(bytes.subarray(0, cut));
    assert.equal(torn.validBytes, endOfThird, `cut at ${cut}`);
    assert.equal(torn.frames, fragmentFrames.slice(0, 3).reduce((a, b) => a + b));
  }
  assert.equal(scanChunk(bytes.subarray(0, boundaries[0] - 1)).validBytes, 0);
  assert.equal(scanChunk(bytes.subarray(0, boundaries[0])).frames, 0);
});

/** The file's boxes with every mdat's payload left out, as a clip reads a chunk; torn boxes dropped. */
function withoutSampleData(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  for (let at = 0; at + 8 <= bytes.length;) {
    const size = view.getUint32(at);
    if (at + size > bytes.length) break;
    const mdat = String.fromCharCode(...bytes.subarray(at + 4, at + 8)) === "mdat";
    parts.push(bytes.subarray(at, at + (mdat ? 8 : size)));
    at += size;
  }
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

Deno.test("a scan of the boxes alone (sample data left out) gives the file's offsets, whole or torn", () => {
  const { bytes, boundaries } = mux(1000, arrivals);
  const endOfThird = boundaries.slice(0, 4).reduce((a, b) => a + b);
  for (const cut of [bytes.length, endOfThird + 200]) {
    const file = bytes.subarray(0, cut);
    const boxes = withoutSampleData(file);
    assert.ok(boxes.length < file.length / 10);
    assert.deepEqual(scanChunk(boxes, file.length), scanChunk(file), `cut at ${cut}`);
  }
});

Deno.test("a pause longer than the gap limit starts a new fragment instead of stretching the last frame", () => {
  const times = arrivals.map((t, i) => i >= 50 ? t + 5000 : t);
  const { bytes, fragmentFrames } = mux(1000, times);
  assert.equal(fragmentFrames.reduce((a, b) => a + b), 144);
  const scan = scanChunk(bytes);
  assert.ok(Math.abs(scan.endMs - (times[143] - times[0]) - (times[143] - times[142])) < 0.05);
});

Deno.test("a chunk of few pictures on a grid, a pause among them, carries its step: ffmpeg's output times stay apart", async () => {
  // As recorded across a stall: 3 pictures, 5.6 s of silence (whole steps), 12 more. ffmpeg
  // guesses a frame rate from 16 intervals or more; with fewer it falls back on a nominal one.
  const step = 2848;
  const times = Array.from(
    { length: 15 },
    (_, i) => 1_795_000_000_000 + (i + (i >= 3 ? 176 : 0)) * step / 90,
  );
  const dir = await Deno.makeTempDir();
  try {
    const [bare, stepped] = [join(dir, "bare.mp4"), join(dir, "stepped.mp4")];
    const [bareBytes, steppedBytes] = [mux(1000, times).bytes, mux(1000, times, step).bytes];
    await Deno.writeFile(bare, bareBytes);
    await Deno.writeFile(stepped, steppedBytes);
    assert.match(await decodeErrors(bare), /non monotonically increasing dts/, "the fault this prevents");
    assert.equal(await decodeErrors(stepped), "");
    const probed = await probeFrames(stepped);
    assert.deepEqual(
      probed.map((p) => Math.round(p.ptsMs * 90)),
      times.map((t) => Math.round((t - times[0]) * 90)),
    );
    assert.equal(scanChunk(steppedBytes).stepTicks, step);
    assert.equal(scanChunk(bareBytes).stepTicks, null);
    // A fragmented clip of it carries the step on.
    const chunk = { path: "stepped.mp4", start_ms: times[0], end_ms: times[14] + 31.6, frames: 15 };
    const clip = await fragmentedClip(
      () => chunkFile(dir, chunk.path),
      { chunks: [{ ...chunk, codec: "avc1", width: 854, height: 480, bytes: 0 }], gaps: [], stopped: null },
      times[0],
      times[14] + 1,
    );
    const clipPath = join(dir, "clip.mp4");
    await Deno.writeFile(clipPath, concat(await Array.fromAsync(clip.pieces)));
    assert.equal(await decodeErrors(clipPath), "");
    assert.equal((await probeFrames(clipPath)).length, 15);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("on its timer a fragment goes FRAGMENT_DURATION_MS after its first frame arrived, its last sample ending exactly at the next frame", async () => {
  // Frames reach the writer 67 ms after they arrive (the connection holds each for two frame
  // intervals); the timer fires at `dueAt`. A pause of 3 s after frame 100 leaves a lone frame.
  const arrival = (i: number) => arrivals[i] + 3.7 + (i > 100 ? 3000 : 0);
  const times = arrivals.map((t, i) => t + (i > 100 ? 3000 : 0));
  const f = new Fragmenter({ startMs: times[0], fragmentMs: 1000 });
  const parts = [initSegment(frames[0].params!)];
  const waited: number[] = [];
  const write = (out: ReturnType<Fragmenter["add"]>, at: number) => {
    if (!out) return;
    parts.push(out.bytes);
    waited.push(...out.arrivals.map((a) => at - a));
  };
  frames.forEach((fr, i) => {
    const delivered = arrival(i) + 67;
    for (let at = f.dueAt(); at !== null && at <= delivered; at = f.dueAt()) write(f.due(at), at);
    write(f.add({ ...fr, ts: times[i], arrival: arrival(i) }), delivered);
  });
  // The stream ends: the timer writes the rest.
  for (let at = f.dueAt(); at !== null; at = f.dueAt()) write(f.due(at), at);
  assert.equal(f.finish(), null);
  assert.ok(waited.every((w) => w <= 1000), `waited ${Math.max(...waited)} ms`);
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "c.mp4");
    await Deno.writeFile(path, new Uint8Array(parts.flatMap((p) => [...p])));
    const probed = await probeFrames(path);
    assert.equal(probed.length, 144);
    probed.forEach((p, i) => assert.ok(Math.abs(p.ptsMs - (times[i] - times[0])) < 0.02, `frame ${i}`));
    assert.equal(await decodeErrors(path), "");
    // Contiguous across every timer cut: each sample lasts until the next, but for the lone one.
    const { samples } = scanChunk(await Deno.readFile(path));
    const gaps = samples.slice(0, -1).flatMap((s, i) =>
      s.time + s.duration === samples[i + 1].time ? [] : [i]
    );
    assert.deepEqual(gaps, [100]);
    assert.ok(parts.length > 144 / 30 + 1, "the timer cut fragments"); // and each cut is exact
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
