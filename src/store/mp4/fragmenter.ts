import { fragment, type Sample } from "./fragment.ts";
import { toMs, toTicks } from "./timing.ts";

/** A frame as the fragmenter needs it. */
export interface TimedSample {
  ts: number;
  /** Arrival of its first byte, for the latency metric (its time if absent). */
  arrival?: number;
  /** The stream's frame grid step (90 kHz ticks): how long a last frame with no frame after it lasts. */
  gridTicks?: number;
  keyframe: boolean;
  data: Uint8Array;
}

export interface FragmenterOptions {
  /** Wall-clock ms of the chunk's first sample (decode-only or not): media time 0. */
  startMs: number;
  /**
   * A fragment holds frames within this many ms of its first one, and is due (`due`) once that
   * frame arrived this long ago.
   */
  fragmentMs: number;
  /** A pause longer than this is a gap in the timeline, not a long last frame. */
  gapMs?: number;
}

/** What a written fragment added to the chunk. */
export interface FragmentOut {
  bytes: Uint8Array;
  frames: number;
  /** Media end of the chunk after this fragment, in ms from its start. */
  endMs: number;
  /** Arrival times of the fragment's frames, for latency measurement. */
  arrivals: number[];
}

const DEFAULT_FRAME_MS = 1000 / 30;

/**
 * Cuts a chunk's frames into fMP4 fragments. Each sample lasts until the next frame's time, so a
 * sample's presentation time is exactly its frame's own time; a frame is held until the next one
 * arrives (or its fragment is due, `due`) because its duration is known only then. Pure: the
 * caller writes the returned bytes and supplies the clock.
 *
 * @example
 * const f = new Fragmenter({ startMs: first.ts, fragmentMs: 1000 });
 * for (const frame of frames) { const out = f.add(frame); if (out) await write(out.bytes); }
 * const due = f.due(Date.now()); // at f.dueAt(), on a timer
 * const last = f.finish(); // on close
 */
export class Fragmenter {
  #opts: Required<FragmenterOptions>;
  #pending: TimedSample[] = [];
  #sequence = 0;
  #lastTick = -1;
  #lastDuration = 0;

  constructor(opts: FragmenterOptions) {
    this.#opts = { gapMs: 1000, ...opts };
  }

  /** Frames held in memory, not yet in a written fragment. */
  get pendingFrames(): number {
    return this.#pending.length;
  }

  /**
   * The decode-only lead of a chunk that starts mid-GOP: `frames` (from the GOP's keyframe) as one
   * fragment, the last lasting until `nextTs`, the first shown frame.
   */
  lead(frames: readonly TimedSample[], nextTs: number): FragmentOut {
    this.#pending = [...frames];
    return this.#flush(nextTs);
  }

  /** Adds a frame; returns the fragment it completes, if any. */
  add(frame: TimedSample): FragmentOut | null {
    const p = this.#pending;
    let out: FragmentOut | null = null;
    if (p.length > 0) {
      const last = p[p.length - 1];
      if (frame.ts - last.ts > this.#opts.gapMs) out = this.#flush(null);
      else if (frame.ts - p[0].ts >= this.#opts.fragmentMs) out = this.#flush(frame.ts);
    }
    this.#pending.push(frame);
    return out;
  }

  /**
   * When `due` next has a fragment to give (wall-clock ms): `fragmentMs` after the arrival of the
   * first frame pending; null with nothing pending.
   */
  dueAt(): number | null {
    const first = this.#pending[0];
    return first ? (first.arrival ?? first.ts) + this.#opts.fragmentMs : null;
  }

  /**
   * The fragment in progress once its first frame has waited `fragmentMs` (see `dueAt`), so no
   * frame waits longer for its write however the next ones are paced: every pending frame but the
   * last, which ends it exactly and starts the next fragment. A lone frame (a pause) goes too,
   * lasting one grid step; the frame after it keeps its own time.
   */
  due(now: number): FragmentOut | null {
    const at = this.dueAt();
    if (at === null || now < at) return null;
    if (this.#pending.length === 1) return this.#flush(null);
    const next = this.#pending.pop()!;
    const out = this.#flush(next.ts);
    this.#pending.push(next);
    return out;
  }

  /** Flushes everything; `endTs` is when the last frame ends (the next chunk's first frame), if known. */
  finish(endTs?: number): FragmentOut | null {
    if (this.#pending.length === 0) return null;
    const last = this.#pending[this.#pending.length - 1];
    const known = endTs !== undefined && endTs > last.ts && endTs - last.ts <= this.#opts.gapMs;
    return this.#flush(known ? endTs : null);
  }

  #tick(ts: number): number {
    // Arrival times may tie (several frames in one message); decode times must still increase.
    return Math.max(toTicks(ts - this.#opts.startMs), this.#lastTick + 1);
  }

  /** Writes all pending frames; the last one lasts until `nextTs`, or as long as the one before. */
  #flush(nextTs: number | null): FragmentOut {
    const frames = this.#pending;
    this.#pending = [];
    const ticks = frames.map((f) => (this.#lastTick = this.#tick(f.ts)));
    const samples: Sample[] = frames.map((f, i) => {
      const duration = i + 1 < frames.length
        ? ticks[i + 1] - ticks[i]
        : nextTs !== null
        ? Math.max(1, toTicks(nextTs - this.#opts.startMs) - ticks[i])
        : f.gridTicks || this.#lastDuration || toTicks(DEFAULT_FRAME_MS);
      if (i + 1 < frames.length || nextTs !== null) this.#lastDuration = duration;
      return { data: f.data, duration, keyframe: f.keyframe };
    });
    // An estimated last duration may overlap the next frame; that frame keeps its own time.
    const end = ticks[ticks.length - 1] + samples[samples.length - 1].duration;
    const bytes = fragment(++this.#sequence, samples, ticks[0], this.#opts.startMs + toMs(ticks[0]));
    return { bytes, frames: frames.length, endMs: toMs(end), arrivals: frames.map((f) => f.arrival ?? f.ts) };
  }
}
