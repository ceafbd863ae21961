import assert from "node:assert/strict";
import { createActor } from "xstate";
import { GopCache } from "../src/record/gop_cache.ts";
import type { Frame, ParamSets } from "../src/ingest/h264/frame_parser.ts";
import type { SpsInfo } from "../src/ingest/h264/sps.ts";
import { type SegmentCommand, type SegmentInput, segmentMachine } from "../src/record/segment_machine.ts";
import type { SegmenterMsg, WriterMsg } from "../src/record/messages.ts";

const params = (key: string, width = 1280): ParamSets => ({
  key,
  sps: [],
  pps: [],
  info: { width, height: 720, codec: "avc1" } as SpsInfo,
});
const P1 = params("p1");
const GRID = 3000;

const frame = (ts: number, keyframe = false, p: ParamSets = P1, gridTicks = GRID): Frame => ({
  ts,
  arrival: ts,
  gridTicks,
  keyframe,
  corrupt: false,
  incomplete: false,
  gapBefore: false,
  data: new Uint8Array(1),
  params: p,
  frameNum: 0,
  reference: true,
});

const TIMING: SegmentInput = {
  chunkMs: 10_000,
  idleMs: 2_000,
  minFrames: 5,
  sessionIdleMs: 30_000,
  cut: "keyframe",
};

/**
 * The machine on a simulated clock, fed as the segmenter feeds it: each frame with whether the GOP
 * before it is at hand (a real GopCache) and the last keyframe interval.
 */
function run(input: Partial<SegmentInput> = {}, gopBytes = 1e9) {
  const out: SegmentCommand[] = [];
  const actor = createActor(segmentMachine, { input: { ...TIMING, ...input } });
  const gop = new GopCache<Frame>(gopBytes);
  actor.on("*", (c) => out.push(c as SegmentCommand));
  actor.start();
  return {
    out,
    gop,
    frame: (f: Frame) => {
      actor.send({ type: "FRAME", frame: f, carry: gop.carries(f), keyIntervalMs: gop.keyIntervalAt(f) });
      gop.add(f);
    },
    /** The GOP is lost (a writer restart): frames wait for a keyframe. */
    forget: () => gop.clear(),
    tick: (now: number) => actor.send({ type: "TICK", now }),
    send: (type: "RESET" | "STOP") => actor.send({ type }),
    /** The state's full path, e.g. "session.recording.broken". */
    state: () => {
      const path: string[] = [];
      for (let v: string | object = actor.getSnapshot().value;;) {
        if (typeof v === "string") return [...path, v].join(".");
        const [key, sub] = Object.entries(v)[0];
        path.push(key);
        v = sub;
      }
    },
    lost: () => actor.send({ type: "FRAME_LOST" }),
    /** Commands without the per-frame writes, with frames shown as their timestamps. */
    plan: () =>
      out.filter((c) => c.type !== "write").map((c) =>
        c.type === "chunk-open"
          ? `open${c.carried ? "-carried" : ""}@${c.frame.ts}`
          : c.type === "skip"
          ? `skip${c.afterDrop ? "-after-drop" : ""}@${c.frame.ts}`
          : c.type === "chunk-close"
          ? `close:${c.reason}${c.partial ? ":partial" : ""}${c.endTs !== undefined ? `@${c.endTs}` : ""}`
          : `${c.type}@${c.ts}`
      ),
    writes: () => out.filter((c) => c.type === "write").map((c) => (c as { frame: Frame }).frame.ts),
    /** Start times of the chunks opened, ms. */
    opens: () => out.filter((c) => c.type === "chunk-open").map((c) => (c as { frame: Frame }).frame.ts),
  };
}

/** 30 fps from `from` for `ms`, a keyframe every `gopMs`. Returns the frames sent. */
function feed(m: ReturnType<typeof run>, from: number, ms: number, gopMs = 1000): number {
  const gopFrames = Math.round(gopMs * 30 / 1000);
  let n = 0;
  for (; n * 1000 / 30 < ms; n++) m.frame(frame(Math.round(from + n * 1000 / 30), n % gopFrames === 0));
  return n;
}

Deno.test("frames before the first keyframe are skipped; a chunk starts with a keyframe", () => {
  const m = run();
  m.frame(frame(0));
  m.frame(frame(33));
  m.frame(frame(66, true));
  m.frame(frame(100));
  assert.deepEqual(m.plan(), ["skip@0", "skip@33", "session-start@66", "open@66"]);
  assert.deepEqual(m.writes(), [66, 100]);
  assert.equal(m.state(), "session.recording.intact");
});

Deno.test("chunks roll over at the keyframe nearest the target, whatever the GOP; no frame lost or repeated", () => {
  for (const [gopMs, targetMs] of [[4000, 9000], [9800, 10_000], [1500, 10_000], [30_000, 10_000]]) {
    const m = run({ chunkMs: targetMs });
    const sent = feed(m, 0, 100_000, gopMs);
    const opens = m.opens();
    const lengths = opens.slice(1).map((t, i) => t - opens[i]);
    // A chunk is a whole number of GOPs, the number nearest the target (at least one).
    const gops = Math.max(1, Math.round(targetMs / gopMs - 1e-9));
    for (const len of lengths) {
      assert.ok(Math.abs(len - gops * gopMs) < 40, `GOP ${gopMs} target ${targetMs}: a ${len} ms chunk`);
    }
    if (gopMs <= targetMs) {
      assert.ok(
        lengths.every((len) => Math.abs(len - targetMs) <= gopMs / 2 + 40),
        `GOP ${gopMs}: ${lengths}`,
      );
    }
    const writes = m.writes();
    assert.equal(new Set(writes).size, writes.length);
    assert.equal(writes.length, sent);
  }
  // A 4 s GOP and a 9 s target: 8 s chunks, within 2 s of the target (the first waits for a key interval).
  const m = run({ chunkMs: 9000 });
  feed(m, 0, 60_000, 4000);
  assert.deepEqual(m.opens().slice(0, 4), [0, 8000, 16_000, 24_000]);
});

Deno.test("an exact cut rolls over at the first frame at or after the target, carrying the GOP", () => {
  const m = run({ chunkMs: 9000, cut: "exact" });
  const sent = feed(m, 0, 40_000, 4000);
  const opens = m.out.filter((c) => c.type === "chunk-open") as Extract<
    SegmentCommand,
    { type: "chunk-open" }
  >[];
  assert.ok(opens.every((o) => o.carried === !o.frame.keyframe), "a chunk starting mid-GOP carries its GOP");
  assert.ok(opens.filter((o) => o.carried).length >= 3);
  const starts = opens.map((o) => o.frame.ts);
  for (let i = 1; i < starts.length; i++) {
    const len = starts[i] - starts[i - 1];
    assert.ok(len >= 9000 && len < 9000 + 34, `chunk ${i}: ${len} ms`);
  }
  assert.equal(m.writes().length, sent);
  // The close that precedes each carried open says where the last frame ends: at the next chunk's start.
  const closes = m.out.filter((c) => c.type === "chunk-close") as Extract<
    SegmentCommand,
    { type: "chunk-close" }
  >[];
  assert.deepEqual(closes.map((c) => c.endTs), starts.slice(1));
});

Deno.test("idle: the chunk closes as partial; frames resuming mid-GOP open the next chunk with the GOP carried", () => {
  const m = run();
  feed(m, 0, 1000); // 30 frames, a keyframe at 0
  m.tick(967 + 1999); // the last frame came at 967
  assert.equal(m.state(), "session.recording.intact");
  m.tick(967 + 2000);
  assert.deepEqual(m.plan().slice(-1), ["close:idle:partial"]);
  assert.equal(m.state(), "session.waiting");
  m.frame(frame(5000)); // continues the coded sequence: its GOP is at hand
  m.frame(frame(5033));
  assert.deepEqual(m.plan().slice(-1), ["open-carried@5000"]);
  assert.deepEqual(m.writes().slice(-2), [5000, 5033]);

  // A GOP that was not kept (over the bound, or lost with a writer restart): wait for a keyframe.
  const lost = run({}, 10);
  for (let i = 0; i < 30; i++) lost.frame(frame(i * 33, i === 0));
  lost.tick(10_000);
  lost.frame(frame(10_100));
  lost.frame(frame(10_133, true));
  assert.deepEqual(lost.plan().slice(-3), ["close:idle:partial", "skip@10100", "open@10133"]);

  // GOP_CACHE_MB=0: the cache is off, frames wait for a keyframe, and that is no overflow.
  const off = run({}, 0);
  feed(off, 0, 1000);
  off.tick(10_000);
  off.frame(frame(10_100));
  off.frame(frame(10_133, true));
  assert.deepEqual(off.plan().slice(-3), ["close:idle:partial", "skip@10100", "open@10133"]);
  assert.equal(off.gop.overflows, 0);

  const few = run();
  for (let i = 0; i < 3; i++) few.frame(frame(i * 33, i === 0)); // 3 < minFrames
  few.tick(10_000);
  assert.equal(few.state(), "session.recording.intact");
  few.frame(frame(10_100));
  assert.deepEqual(few.plan(), ["session-start@0", "open@0"]);
  assert.deepEqual(few.writes(), [0, 33, 66, 10_100]);
});

Deno.test("a changed SPS closes the chunk at the frame that uses it; the next keyframe opens a new one", () => {
  const m = run();
  feed(m, 0, 2000);
  const p2 = params("p2", 640);
  m.frame(frame(2100, true, p2));
  assert.deepEqual(m.plan().slice(-3), ["open@0", "close:params:partial@2100", "open@2100"]);
  // New parameters on a frame that is not a keyframe: the old GOP cannot lead up to it.
  m.frame(frame(2133, false, params("p3")));
  m.frame(frame(2166, true, params("p3")));
  assert.deepEqual(m.plan().slice(-3), ["close:params:partial@2133", "skip@2133", "open@2166"]);
});

Deno.test("a change of the frame grid (at a keyframe) starts a new chunk there", () => {
  const m = run();
  feed(m, 0, 2000);
  m.frame(frame(2000, true, P1, 1500));
  assert.deepEqual(m.plan().slice(-2), ["close:frame-rate:partial@2000", "open@2000"]);
});

Deno.test("a session ends after the session idle timeout; the next frame starts a new one", () => {
  const m = run();
  feed(m, 0, 1000);
  m.tick(5000);
  m.tick(967 + 30_000);
  assert.deepEqual(m.plan(), ["session-start@0", "open@0", "close:idle:partial", "session-end@967"]);
  m.frame(frame(40_000, true));
  assert.deepEqual(m.plan().slice(-2), ["session-start@40000", "open@40000"]);
});

Deno.test("a frame long after the last one ends the session even without ticks", () => {
  const m = run();
  feed(m, 0, 1000);
  m.frame(frame(100_000, true));
  assert.deepEqual(m.plan().slice(2), [
    "close:session-end:partial",
    "session-end@967",
    "session-start@100000",
    "open@100000",
  ]);
});

Deno.test("shutdown closes the open chunk and ends the session", () => {
  const m = run();
  feed(m, 0, 1000);
  m.send("STOP");
  assert.deepEqual(m.plan().slice(-2), ["close:shutdown:partial", "session-end@967"]);
  assert.equal(m.state(), "stopped");
});

Deno.test("a writer reset drops the chunk without a close and waits for a keyframe in the same session", () => {
  const m = run();
  feed(m, 0, 500);
  m.send("RESET");
  m.forget(); // the segmenter clears its GOP with the reset
  m.frame(frame(600));
  m.frame(frame(633, true));
  assert.deepEqual(m.plan(), ["session-start@0", "open@0", "skip@600", "open@633"]);
});

Deno.test("a lost frame: the chunk stays open, frames are skipped until the next keyframe, which is written in it", () => {
  const m = run();
  feed(m, 0, 500); // a keyframe at 0, then 14 frames
  m.lost(); // the frame at 467 never reached the writer
  assert.equal(m.state(), "session.recording.broken");
  m.frame(frame(500));
  m.frame(frame(533));
  m.tick(600); // ticks change nothing
  m.frame(frame(566, true));
  m.frame(frame(600));
  assert.deepEqual(m.plan(), ["session-start@0", "open@0", "skip-after-drop@500", "skip-after-drop@533"]);
  assert.deepEqual(m.writes().slice(-2), [566, 600]);
  assert.equal(m.state(), "session.recording.intact");
  m.send("STOP");
  assert.deepEqual(m.plan().slice(-2), ["close:shutdown:partial", "session-end@600"]);
});

Deno.test("a session left open by a crash is continued when frames resume in time, ended otherwise", () => {
  const fresh = run({ resume: { lastFrameMs: 1000 } });
  fresh.frame(frame(5000, true));
  assert.deepEqual(fresh.plan(), ["open@5000"]);
  const stale = run({ resume: { lastFrameMs: 1000 } });
  stale.frame(frame(60_000, true));
  assert.deepEqual(stale.plan(), ["session-end@1000", "session-start@60000", "open@60000"]);
});

Deno.test("the segmenter's routine frames skip the machine but not its decisions: the writer gets what the machine alone decides", async () => {
  const { Segmenter } = await import("../actors/segmenter.ts");
  const { Mailbox } = await import("../src/runtime/actor.ts");
  const { Metrics } = await import("../src/runtime/metrics.ts");
  const { rng } = await import("./helpers.ts");
  type Step = { frame: Frame } | { tick: number } | { reset: true };
  for (const cut of ["keyframe", "exact"] as const) {
    // A seeded script: keyframes every 1-3 s, pauses past the idle and session timeouts, parameter
    // and grid changes at and between keyframes, ticks, and writer resets.
    const random = rng(cut === "keyframe" ? 7 : 8);
    // First, a frame the machine decides on (a keyframe) right before a pause past the session's
    // timeout, with no tick in between: the next frame must end the session, not be routine.
    const script: Step[] = [
      ...Array.from({ length: 40 }, (_, i) => ({ frame: frame(i * 33, i % 30 === 0) })),
      { frame: frame(60 * 33, true) },
      { frame: frame(60 * 33 + 40_000) },
    ];
    let ts = 60 * 33 + 40_033, gop = 30, p = P1, grid = GRID;
    for (let i = 0; i < 3000; i++) {
      const r = random();
      if (r < 0.003) ts += 2500; // past idle
      else if (r < 0.004) ts += 40_000; // past the session
      if (r > 0.998) p = params(`p${i}`); // sometimes mid-GOP
      if (r > 0.996 && r <= 0.998) grid = GRID + 30;
      const key = i % gop === 0;
      if (key && random() < 0.2) gop = 30 + Math.floor(random() * 60);
      script.push({ frame: frame(ts, key, p, grid) });
      if (random() < 0.05) script.push({ tick: ts + 100 });
      if (random() < 0.002) script.push({ reset: true });
      ts += 33;
    }
    const input = { ...TIMING, cut };
    // The machine alone, fed every frame.
    const alone = run(input);
    const expected: string[] = [];
    alone.out.length = 0;
    for (const s of script) {
      if ("frame" in s) alone.frame(s.frame);
      else if ("tick" in s) alone.tick(s.tick);
      else {
        alone.forget();
        alone.send("RESET");
      }
    }
    alone.send("STOP");
    for (const c of alone.out) {
      if (c.type === "write") expected.push(`frame@${c.frame.ts}`);
      else if (c.type === "chunk-open") expected.push(`open@${c.frame.ts}`);
      else if (c.type === "chunk-close") expected.push(`close:${c.reason}@${c.endTs}`);
      else if (c.type !== "skip") expected.push(`${c.type}@${c.ts}`);
    }
    // The segmenter: routine frames bypass the machine.
    const writer = new Mailbox<WriterMsg>(1_000_000);
    const segmenter = new Segmenter({
      stream: "s",
      input,
      self: new Mailbox<SegmenterMsg>(10),
      writer,
      metrics: new Metrics(),
      gopCacheBytes: 1e9,
    });
    for (const s of script) {
      if ("frame" in s) segmenter.receive({ type: "frame", frame: s.frame });
      else if ("tick" in s) segmenter.receive({ type: "tick", now: s.tick });
      else segmenter.receive({ type: "writer-reset", reason: "writer_restart" });
    }
    segmenter.stop();
    segmenter.close();
    const got: string[] = [];
    while (writer.size > 0) {
      const m = (await writer.take())!;
      if (m.type === "frame") got.push(`frame@${m.frame.ts}`);
      else if (m.type === "chunk-open") got.push(`open@${m.frame.ts}`);
      else if (m.type === "chunk-close") got.push(`close:${m.reason}@${m.endTs}`);
      else if (m.type !== "tick") got.push(`${m.type}@${m.ts}`);
    }
    assert.ok(expected.filter((e) => e.startsWith("close:")).length > 10, "the script exercises decisions");
    assert.deepEqual(got, expected);
  }
});
