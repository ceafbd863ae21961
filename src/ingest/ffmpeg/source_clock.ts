/**
 * Times an RTSP source's pictures in wall-clock ms from the presentation times the source gives
 * (RTP timestamps, through ffmpeg at millisecond precision): the first picture is timed by its
 * arrival, every later one by the source's clock from there, so network jitter and bursts do not
 * move frames and the intervals are the camera's own. A picture whose source time strays further
 * than `toleranceMs` from its arrival (the camera's clock jumped, or a stall longer than the
 * tolerance) re-anchors the clock at its arrival, and is counted. Times always increase. Pure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SourceClock } from "./source_clock.ts";
 * const clock = new SourceClock(2000);
 * assert.equal(clock.place(90_000, 5000).ts, 5000);
 * assert.equal(clock.place(90_040, 5100).ts, 5040); // the source's interval, not the arrival's
 * assert.deepEqual(clock.place(99_000, 5200), { ts: 5200, reanchored: true });
 * ```
 */
export class SourceClock {
  #anchor: { pts: number; wall: number } | null = null;
  #last = -Infinity;

  constructor(readonly toleranceMs: number) {}

  place(ptsMs: number, arrival: number): { ts: number; reanchored: boolean } {
    let reanchored = false;
    let ts = this.#anchor ? this.#anchor.wall + (ptsMs - this.#anchor.pts) : arrival;
    if (this.#anchor && !(Math.abs(ts - arrival) <= this.toleranceMs)) {
      reanchored = true;
      ts = arrival;
    }
    if (!this.#anchor || reanchored) this.#anchor = { pts: ptsMs, wall: arrival };
    // Two pictures with one time (a source clock that repeats) keep their order 1 ms apart.
    if (ts <= this.#last) ts = this.#last + 1;
    this.#last = ts;
    return { ts, reanchored };
  }
}
