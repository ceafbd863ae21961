import assert from "node:assert/strict";
import { type ClockedFrame, FrameClock } from "../src/ingest/frame_clock.ts";
import { rng } from "./helpers.ts";

type F = ClockedFrame & { i: number };
const BASE = 1_795_000_000_000;
const T = 1000 / 30;

/** Frames arriving at `arrivals`, released as a connection releases them; a keyframe every `gop`. */
function clocked(arrivals: number[], gop = 30): F[] {
  const clock = new FrameClock<F>();
  const out: F[] = [];
  arrivals.forEach((arrival, i) => {
    out.push(...clock.release(arrival));
    out.push(...clock.push({ arrival, ts: 0, gridTicks: 0, keyframe: i % gop === 0, i }));
  });
  out.push(...clock.flush());
  assert.deepEqual(out.map((f) => f.i), arrivals.map((_, i) => i), "every frame, in order");
  return out;
}

const ticks = (f: F) => Math.round(f.ts * 90);

Deno.test("a jittered stream lands on one grid: whole steps apart, each within a step of its arrival", () => {
  const r = rng(7);
  const frames = clocked(Array.from({ length: 900 }, (_, i) => BASE + i * T + r() * 6));
  const step = frames[0].gridTicks;
  assert.ok(frames.every((f) => f.gridTicks === step));
  assert.ok(step < T * 90 && step > 0.85 * T * 90, `step ${step / 90} ms for ${T} ms frames`);
  for (let i = 1; i < frames.length; i++) {
    const d = ticks(frames[i]) - ticks(frames[i - 1]);
    assert.ok(d > 0 && d % step === 0, `interval ${d} ticks is not a whole number of ${step}`);
  }
  const worst = Math.max(...frames.map((f) => Math.abs(f.ts - f.arrival)));
  assert.ok(worst <= step / 90, `a frame ${worst} ms from its arrival`);
});

Deno.test("frames that arrive together never share a time", () => {
  // Five frames per message, 150 ms apart.
  const frames = clocked(Array.from({ length: 300 }, (_, i) => BASE + Math.floor(i / 5) * 150));
  for (let i = 1; i < frames.length; i++) assert.ok(ticks(frames[i]) > ticks(frames[i - 1]));
});

Deno.test("a burst after a stall is laid back into the stall, one step apart, ending at its arrival", () => {
  // 30 fps; frames 100-189 are held up for 3 s and arrive within 5 ms (a link stall, then a burst).
  const arrivals = Array.from({ length: 400 }, (_, i) => BASE + i * T);
  for (let i = 100; i < 190; i++) arrivals[i] = BASE + 189 * T + (i - 100) * 0.05;
  const frames = clocked(arrivals);
  const step = frames[0].gridTicks;
  for (let i = 101; i < 190; i++) assert.equal(ticks(frames[i]) - ticks(frames[i - 1]), step);
  assert.ok(Math.abs(frames[189].ts - arrivals[189]) <= step / 90, "the burst ends at its arrival");
  assert.ok(frames[100].ts < arrivals[100] - 2500, "and reaches back into the stall");
  assert.ok(ticks(frames[100]) > ticks(frames[99]));
  // After it, frames are on time again.
  assert.ok(frames.slice(190).every((f) => Math.abs(f.ts - f.arrival) <= step / 90));
});

Deno.test("an encoder pause stays a gap: nothing arrives late to fill it", () => {
  const arrivals = Array.from({ length: 300 }, (_, i) => BASE + i * T + (i >= 150 ? 4000 : 0));
  const frames = clocked(arrivals);
  assert.ok(frames[150].ts - frames[149].ts > 4000);
  assert.ok(frames.every((f) => Math.abs(f.ts - f.arrival) <= f.gridTicks / 90));
});

Deno.test("a frame is held until nothing earlier can come and half a step passed quietly", () => {
  const clock = new FrameClock<F>();
  const out: F[] = [];
  for (let i = 0; i < 20; i++) {
    out.push(...clock.push({ arrival: BASE + i * T, ts: 0, gridTicks: 0, keyframe: false, i }));
  }
  const held = 20 - out.length;
  assert.ok(held >= 1);
  const last = BASE + 19 * T;
  assert.deepEqual(clock.release(last + 1), [], "not yet quiet");
  assert.equal(clock.release(last + T).length, held);
});

Deno.test("the grid changes only at a keyframe, when the stream's frame rate changes", () => {
  // 30 fps for 300 frames, then 15 fps; keyframes every 30 frames.
  const arrivals = Array.from(
    { length: 600 },
    (_, i) => BASE + (i < 300 ? i * T : 300 * T + (i - 300) * 2 * T),
  );
  const frames = clocked(arrivals);
  const changes = frames.flatMap((f, i) => i > 0 && f.gridTicks !== frames[i - 1].gridTicks ? [i] : []);
  assert.equal(changes.length, 1);
  assert.ok(frames[changes[0]].keyframe && changes[0] > 300);
  assert.ok(frames.at(-1)!.gridTicks > 1.8 * frames[0].gridTicks);
});

Deno.test("frames that arrive in pairs keep pace: the step follows the mean interval, times do not fall behind", () => {
  // Every second frame arrives with the one before it (a link that batches), for 20 s.
  const arrivals = Array.from({ length: 600 }, (_, i) => BASE + (i - (i % 2)) * T + (i % 2) * 0.2);
  const frames = clocked(arrivals);
  const step = frames.at(-1)!.gridTicks;
  assert.ok(step < T * 90 && step > 0.9 * T * 90, `step ${step / 90} ms for ${T} ms frames`);
  const late = frames.slice(-60).map((f) => f.ts - f.arrival);
  assert.ok(Math.max(...late) <= 2 * T, `running ${Math.max(...late)} ms late after 20 s`);
});

Deno.test("a burst after a stall longer than a pause does not change the step", () => {
  // 30 fps; frames 300-449 held up 5 s, then arriving within 15 ms.
  const arrivals = Array.from({ length: 900 }, (_, i) => BASE + i * T);
  for (let i = 300; i < 450; i++) arrivals[i] = BASE + 449 * T + (i - 300) * 0.1;
  const frames = clocked(arrivals);
  assert.equal(new Set(frames.map((f) => f.gridTicks)).size, 1);
  assert.ok(frames.slice(450).every((f) => Math.abs(f.ts - f.arrival) <= f.gridTicks / 90));
});

for (const stallMs of [1500, 2200]) {
  Deno.test(`jitter and repeated ${stallMs} ms stalls, each with its catch-up burst, keep one step`, () => {
    // 30 fps +-40% (the chaos suite's bursty producer); frames 100, 160 and 220 held up.
    const r = rng(3);
    const arrivals: number[] = [];
    let due = BASE;
    for (let i = 0; i < 600; i++) {
      due += T * (0.6 + 0.8 * r());
      arrivals.push(due);
    }
    for (const at of [100, 160, 220]) {
      const end = arrivals[at] + stallMs;
      for (let i = at; i < arrivals.length && arrivals[i] < end; i++) arrivals[i] = end + (i - at) * 0.2;
    }
    const frames = clocked(arrivals);
    const steps = [...new Set(frames.map((f) => Math.round(f.gridTicks / 9) / 10))];
    assert.ok(steps.every((ms) => ms > 0.8 * T && ms < T), `steps ${steps.join(", ")} ms`);
  });
}

Deno.test("clumpy arrivals around a steady rate keep one step", () => {
  // A stream replayed at 8x through timers: frames due every 4.17 ms, sent on 1 ms ticks in clumps.
  const r = rng(3);
  const arrivals = Array.from({ length: 2000 }, (_, i) => BASE + Math.ceil(i * T / 8 + r() * 3));
  const sorted = arrivals.map((a, i) => Math.max(a, ...arrivals.slice(Math.max(0, i - 3), i)));
  const frames = clocked(sorted, 30);
  assert.equal(new Set(frames.map((f) => f.gridTicks)).size, 1);
  assert.ok(Math.max(...frames.slice(-100).map((f) => f.ts - f.arrival)) < 20, "no growing lag");
});

Deno.test("a frame-rate dip that recovers before the next keyframe leaves the grid as it was", () => {
  // 30 fps, then 4 s at 15 fps, then 30 fps again; a keyframe every 10 s (300, in the dip's
  // first second, and 600, long after it).
  const arrivals: number[] = [];
  let t = BASE;
  for (let i = 0; i < 900; i++) arrivals.push(t += i >= 300 && i < 360 ? 2 * T : T);
  const frames = clocked(arrivals, 300);
  assert.equal(new Set(frames.map((f) => f.gridTicks)).size, 1);
  assert.ok(
    frames.slice(-100).every((f) => Math.abs(f.ts - f.arrival) <= f.gridTicks / 90),
    "on time after it",
  );
});

Deno.test("a burst with more frames than its stall's silence runs late without taking the step down", () => {
  // 30 fps; the link stalls 1688 ms at frame 39 and, still catching up, 808 ms at frame 72: the
  // second burst holds 43 frames for a 808 ms silence, so frames run late and drain slowly.
  const arrivals: number[] = [];
  let due = BASE, now = BASE;
  for (let i = 0; i < 600; i++) {
    if (i === 39) now = Math.max(now, due) + 1688;
    if (i === 72) now = Math.max(now, due) + 808;
    now = Math.max(now, due);
    arrivals.push(now);
    due += T;
  }
  const frames = clocked(arrivals);
  const steps = [...new Set(frames.map((f) => Math.round(f.gridTicks / 9) / 10))];
  assert.ok(steps.every((ms) => ms > 0.85 * T && ms < T), `steps ${steps.join(", ")} ms`);
});
