import assert from "node:assert/strict";
import { createActor } from "xstate";
import type { Frame, ParamSets } from "../src/h264/frame_parser.ts";
import { type SegmentCommand, type SegmentInput, segmentMachine } from "../src/segment_machine.ts";

const params = (version: number, width = 1280): ParamSets => ({
  version,
  sps: [],
  pps: [],
  info: { profile: 66, constraints: 0, level: 31, spsId: 0, width, height: 720, codec: "avc1" },
});
const P1 = params(1);

const frame = (ts: number, keyframe = false, p: ParamSets = P1): Frame => ({
  ts,
  keyframe,
  corrupt: false,
  data: new Uint8Array(1),
  params: p,
});

const TIMING = { chunkMs: 10_000, idleMs: 2_000, minFrames: 5, sessionIdleMs: 30_000 };

/** The machine on a simulated clock: frames and ticks carry the time, nothing waits. */
function run(input: Partial<SegmentInput> = {}) {
  const out: SegmentCommand[] = [];
  const actor = createActor(segmentMachine, { input: { ...TIMING, ...input } });
  actor.on("*", (c) => out.push(c as SegmentCommand));
  actor.start();
  return {
    out,
    frame: (f: Frame) => actor.send({ type: "FRAME", frame: f }),
    tick: (now: number) => actor.send({ type: "TICK", now }),
    send: (type: "RESET" | "STOP") => actor.send({ type }),
    state: () => String(actor.getSnapshot().value),
    /** Commands without the per-frame writes, with frames shown as their timestamps. */
    plan: () =>
      out.filter((c) => c.type !== "write").map((c) =>
        c.type === "chunk-open" || c.type === "skip"
          ? `${c.type}@${c.frame.ts}`
          : c.type === "chunk-close"
          ? `close:${c.reason}${c.partial ? ":partial" : ""}${c.endTs !== undefined ? `@${c.endTs}` : ""}`
          : `${c.type}@${c.ts}`
      ),
    writes: () => out.filter((c) => c.type === "write").map((c) => (c as { frame: Frame }).frame.ts),
  };
}

/** 30 fps from `from` for `ms`, a keyframe every `gopMs`. */
function feed(m: ReturnType<typeof run>, from: number, ms: number, gopMs = 1000): number {
  let n = 0;
  for (let t = from; t < from + ms; t += 1000 / 30, n++) {
    const ts = Math.round(t);
    m.frame(frame(ts, (ts - from) % gopMs < 1000 / 30));
  }
  return n;
}

Deno.test("frames before the first keyframe are skipped; a chunk starts with a keyframe", () => {
  const m = run();
  m.frame(frame(0));
  m.frame(frame(33));
  m.frame(frame(66, true));
  m.frame(frame(100));
  assert.deepEqual(m.plan(), ["skip@0", "skip@33", "session-start@66", "chunk-open@66"]);
  assert.deepEqual(m.writes(), [66, 100]);
  assert.equal(m.state(), "recording");
});

Deno.test("rollover at the first keyframe at or after the chunk duration; no frame lost or repeated", () => {
  const m = run();
  const sent = feed(m, 0, 25_000, 1500); // keyframes every 1.5 s: 0, 1.5, ..., 10.5, ..., 21
  const plan = m.plan();
  assert.deepEqual(plan, [
    "session-start@0",
    "chunk-open@0",
    "close:duration@10500",
    "chunk-open@10500",
    "close:duration@21000",
    "chunk-open@21000",
  ]);
  const writes = m.writes();
  assert.equal(new Set(writes).size, writes.length);
  assert.equal(writes.length, sent);
});

Deno.test("idle: the chunk closes as partial when it has enough frames, and stays open when it has not", () => {
  const m = run();
  feed(m, 0, 1000); // 30 frames
  m.tick(967 + 1999); // the last frame came at 967
  assert.equal(m.state(), "recording");
  m.tick(967 + 2000);
  assert.deepEqual(m.plan().slice(-1), ["close:idle:partial"]);
  assert.equal(m.state(), "idle");
  m.frame(frame(5000)); // not a keyframe: cannot start a chunk
  m.frame(frame(5033, true));
  assert.deepEqual(m.plan().slice(-2), ["skip@5000", "chunk-open@5033"]);

  const few = run();
  for (let i = 0; i < 3; i++) few.frame(frame(i * 33, i === 0)); // 3 < minFrames
  few.tick(10_000);
  assert.equal(few.state(), "recording");
  few.frame(frame(10_100));
  assert.deepEqual(few.plan(), ["session-start@0", "chunk-open@0"]);
  assert.deepEqual(few.writes(), [0, 33, 66, 10_100]);
});

Deno.test("a changed SPS closes the chunk and the next keyframe opens a new one", () => {
  const m = run();
  feed(m, 0, 2000);
  const p2 = params(2, 640);
  m.frame(frame(2100, true, p2));
  assert.deepEqual(m.plan().slice(-3), ["chunk-open@0", "close:params:partial", "chunk-open@2100"]);
  assert.equal(m.out.filter((c) => c.type === "chunk-open").length, 2);
  // New parameters arriving on a non-keyframe: the chunk closes, frames wait for a keyframe.
  m.frame(frame(2133, false, params(3)));
  m.frame(frame(2166, true, params(3)));
  assert.deepEqual(m.plan().slice(-3), ["close:params:partial", "skip@2133", "chunk-open@2166"]);
});

Deno.test("a session ends after the session idle timeout; the next frame starts a new one", () => {
  const m = run();
  feed(m, 0, 1000);
  m.tick(5000);
  m.tick(967 + 30_000);
  assert.deepEqual(m.plan(), ["session-start@0", "chunk-open@0", "close:idle:partial", "session-end@967"]);
  m.frame(frame(40_000, true));
  assert.deepEqual(m.plan().slice(-2), ["session-start@40000", "chunk-open@40000"]);
});

Deno.test("a frame long after the last one ends the session even without ticks", () => {
  const m = run();
  feed(m, 0, 1000);
  m.frame(frame(100_000, true));
  assert.deepEqual(m.plan().slice(2), [
    "close:session-end:partial",
    "session-end@967",
    "session-start@100000",
    "chunk-open@100000",
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
  m.frame(frame(600));
  m.frame(frame(633, true));
  assert.deepEqual(m.plan(), ["session-start@0", "chunk-open@0", "skip@600", "chunk-open@633"]);
});

Deno.test("a session left open by a crash is continued when frames resume in time, ended otherwise", () => {
  const fresh = run({ resume: { lastFrameMs: 1000 } });
  fresh.frame(frame(5000, true));
  assert.deepEqual(fresh.plan(), ["chunk-open@5000"]);
  const stale = run({ resume: { lastFrameMs: 1000 } });
  stale.frame(frame(60_000, true));
  assert.deepEqual(stale.plan(), ["session-end@1000", "session-start@60000", "chunk-open@60000"]);
});
