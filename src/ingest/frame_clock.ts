/** What the clock reads and writes on a frame. */
export interface ClockedFrame {
  /** Arrival of its first byte, wall-clock ms. */
  arrival: number;
  /** Set by the clock: its time on the grid, wall-clock ms (a whole number of 90 kHz ticks). */
  ts: number;
  /** Set by the clock: the grid step, 90 kHz ticks. */
  gridTicks: number;
  keyframe: boolean;
}

/** What a release did to the frames' times, for the metrics and the log. */
export interface Retiming {
  /** Frames placed more than one grid step from their arrival (a burst spread out, or pushed). */
  moved: number;
  /** The largest such move, ms: negative is earlier than arrival. */
  maxShiftMs: number;
}

const TICKS_PER_MS = 90;
/** ffmpeg derives the frame rate from the common step of the first frames only when it exceeds 2 ms. */
const MIN_GRID_TICKS = 181;
const DEFAULT_GRID_TICKS = 3000;
/** Intervals kept for the estimate, the fewest that start the grid, and how often it is revised. */
const WINDOW = 64;
const FIRST_INTERVALS = 16;
const REVISE_EVERY = 8;
/** Longest the first frames are held while the grid is unknown. */
const FIRST_HOLD_MS = 2000;
/** A longer interval is a pause, not the frame rate. */
const MAX_INTERVAL_MS = 2000;
/** The step is this far below the mean interval, so frames do not outrun the steps. */
const MARGIN = 0.97;
/**
 * The step changes when the estimate stays this much coarser or finer for PERSIST_MS of arrivals:
 * noise, or a burst catching up after a stall, must not split chunks.
 */
const GROW = 1.2;
const SHRINK = 0.9;
const PERSIST_MS = 3000;
/** Frames in a row placed over a step late that show the steps are too coarse. */
const LAG_FRAMES = 16;
/** Frames held at most: a stream that never pauses still has its frames released. */
const MAX_HELD = 512;

/**
 * Places each frame on a time grid whose step is just under the stream's observed frame interval,
 * at the step nearest its arrival, and never less than one step after the frame before. On such a
 * grid every interval between frames is a whole number of steps, which is what players and ffmpeg
 * take as the frame rate, so no two frames share a time even after rounding to it; and a frame's
 * time stays within about half a step of its arrival.
 *
 * Frames that arrive closer together than half a step (a burst after a stall) are held until the
 * burst ends and are then laid back, one step apart, into the silence before them: they were
 * captured during it. Only when the silence is too short for them do they run late.
 *
 * The step is estimated from the mean of recent intervals, bursts included (it is the rate frames
 * come at, whatever their clumping), and changes only at a keyframe, so a chunk that starts at a
 * keyframe has one step.
 * Pure: the caller supplies arrival times and the horizon, the earliest arrival of anything still
 * to come.
 *
 * @example
 * const clock = new FrameClock();
 * for (const frame of clock.push(parsed)) deliver(frame);
 * for (const frame of clock.release(parser.pendingSince ?? now)) deliver(frame); // on a timer
 */
export class FrameClock<F extends ClockedFrame> {
  /** Counts of what releases did to frames' times since the caller last took them. */
  retiming: Retiming = { moved: 0, maxShiftMs: 0 };
  #held: F[] = [];
  #intervals: number[] = [];
  /** A pause was left out of the estimate: the burst catching up after it is left out too. */
  #afterPause = false;
  #sinceRevised = 0;
  /** Arrival since which the estimate has stayed outside the band around the step; null: inside. */
  #outsideSince: number | null = null;
  #lastArrival: number | null = null;
  #grid: number | null = null;
  #origin = 0;
  #lastTick: number | null = null;
  /** A step to change to at the next keyframe, and what asked for it. */
  #nextGrid: { ticks: number; cause: "estimate" | "lateness" } | null = null;
  /** Released frames in a row placed over a step late; counted once a frame was on time after a switch. */
  #late = 0;
  #armed = false;
  #placedArrival: number | null = null;

  /** The grid step in 90 kHz ticks; null until enough frames have arrived to estimate it. */
  get gridTicks(): number | null {
    return this.#grid;
  }

  /** Adds a frame (in arrival order); returns the frames whose times are now final. */
  push(frame: F): F[] {
    if (this.#lastArrival !== null) this.#observe(frame.arrival - this.#lastArrival, frame.arrival);
    this.#lastArrival = frame.arrival;
    const last = this.#held.at(-1);
    const out = last && this.#grid !== null && this.#quietSince(last, frame.arrival) ? this.#release() : [];
    this.#held.push(frame);
    if (this.#grid === null && this.#intervals.length >= FIRST_INTERVALS) this.#start();
    if (this.#held.length >= MAX_HELD) return out.concat(this.#release());
    return out;
  }

  /** Frames whose times are final now that nothing arriving before `horizon` is still to come. */
  release(horizon: number): F[] {
    const last = this.#held.at(-1);
    if (!last) return [];
    if (this.#grid === null) {
      if (horizon - this.#held[0].arrival < FIRST_HOLD_MS) return [];
      this.#start();
    }
    return this.#quietSince(last, horizon) ? this.#release() : [];
  }

  /** The stream ended: every held frame, timed. */
  flush(): F[] {
    if (this.#held.length === 0) return [];
    if (this.#grid === null) this.#start();
    return this.#release();
  }

  /** A clump ends when half a step passes without a frame. */
  #quietSince(last: F, now: number): boolean {
    return (now - last.arrival) * TICKS_PER_MS >= this.#grid! / 2;
  }

  /**
   * An interval between arrivals feeds the estimate, unless it is a pause, or the burst that makes
   * up for one: counting the burst without the pause would take it for the frame rate.
   */
  #observe(ms: number, arrival: number): void {
    if (ms > MAX_INTERVAL_MS) {
      this.#afterPause = true;
      return;
    }
    if (this.#afterPause && ms * TICKS_PER_MS < (this.#grid ?? DEFAULT_GRID_TICKS) / 2) return;
    this.#afterPause = false;
    this.#intervals.push(ms);
    if (this.#intervals.length > WINDOW) {
      this.#intervals.shift();
      // A clump's intervals leave with the gap before it: the mean would otherwise take a burst
      // (or the second of a pair) for the rate for as long as the gap it makes up for is gone.
      const clumped = (this.#grid ?? DEFAULT_GRID_TICKS) / 2 / TICKS_PER_MS;
      while (this.#intervals.length > 1 && this.#intervals[0] < clumped) this.#intervals.shift();
    }
    if (this.#grid === null || ++this.#sinceRevised < REVISE_EVERY) return;
    this.#sinceRevised = 0;
    const target = this.#estimate();
    if (target <= GROW * this.#grid && target >= SHRINK * this.#grid) {
      // Back in the band before a keyframe came: the stream no longer has the step it asked for.
      this.#outsideSince = null;
      if (this.#nextGrid?.cause === "estimate") this.#nextGrid = null;
    } else if (this.#outsideSince === null) this.#outsideSince = arrival;
    else if (arrival - this.#outsideSince >= PERSIST_MS) {
      this.#nextGrid = { ticks: target, cause: "estimate" };
    }
  }

  /**
   * Lateness: frames placed more than a step after their arrival, many in a row, outrun the steps
   * (the stream sped up by less than the hysteresis): the step shrinks. Lateness carried over a
   * change is being absorbed, so the check waits for a frame on time first; frames that arrived in
   * a burst are late for another reason and are not counted.
   */
  #lateness(ticksLate: number, burst: boolean): void {
    if (burst) return;
    if (ticksLate <= this.#grid! / 2) {
      this.#armed = true;
      this.#late = 0;
    } else if (
      this.#armed && ticksLate > this.#grid! && ++this.#late >= LAG_FRAMES && this.#nextGrid === null
    ) {
      // Only frames coming faster than the steps outrun them for good; with a step under the mean
      // interval, lateness is jitter (or a burst that overfilled its stall) queueing behind it and
      // drains by itself. A speed-up beyond the band is the estimate's to follow: a burst in the
      // window must not take the step down with it.
      const estimate = this.#estimate();
      if (estimate >= Math.floor(MARGIN * this.#grid!)) return;
      const ticks = Math.max(MIN_GRID_TICKS, estimate, Math.floor(SHRINK * this.#grid!));
      this.#nextGrid = { ticks, cause: "lateness" };
    }
  }

  #estimate(): number {
    if (this.#intervals.length === 0) return DEFAULT_GRID_TICKS;
    const mean = this.#intervals.reduce((a, b) => a + b, 0) / this.#intervals.length;
    return Math.max(MIN_GRID_TICKS, Math.floor(MARGIN * mean * TICKS_PER_MS));
  }

  #start(): void {
    this.#grid = this.#estimate();
    this.#origin = Math.round(this.#held[0].arrival * TICKS_PER_MS);
  }

  /**
   * Times every held frame. A grid change applies at a keyframe that leads them: never inside a
   * burst, which is laid back on one grid.
   */
  #release(): F[] {
    const frames = this.#held;
    this.#held = [];
    if (this.#nextGrid && frames[0].keyframe) {
      this.#grid = this.#nextGrid.ticks;
      this.#nextGrid = null;
      this.#outsideSince = null;
      this.#armed = false;
      this.#origin = Math.round(frames[0].arrival * TICKS_PER_MS);
    }
    this.#place(frames);
    return frames;
  }

  /**
   * Each frame goes to the step nearest its arrival, but no later than one step before the frame
   * after it (so a burst is laid back into the silence before it), and no earlier than one step
   * after the frame before.
   */
  #place(frames: F[]): void {
    if (frames.length === 0) return;
    const g = this.#grid!;
    const step = (f: F) => Math.round((f.arrival * TICKS_PER_MS - this.#origin) / g);
    const steps = frames.map(step);
    for (let i = steps.length - 2; i >= 0; i--) steps[i] = Math.min(steps[i], steps[i + 1] - 1);
    let floor = this.#lastTick === null ? -Infinity : Math.ceil((this.#lastTick + g - this.#origin) / g);
    frames.forEach((f, i) => {
      const s = Math.max(steps[i], floor);
      floor = s + 1;
      const tick = this.#origin + s * g;
      f.ts = tick / TICKS_PER_MS;
      f.gridTicks = g;
      const shift = f.ts - f.arrival;
      const burst = this.#placedArrival !== null && (f.arrival - this.#placedArrival) * TICKS_PER_MS < g / 2;
      this.#placedArrival = f.arrival;
      this.#lateness(shift * TICKS_PER_MS, burst);
      if (Math.abs(shift) * TICKS_PER_MS > g) {
        this.retiming.moved++;
        if (Math.abs(shift) > Math.abs(this.retiming.maxShiftMs)) this.retiming.maxShiftMs = shift;
      }
      this.#lastTick = tick;
    });
  }
}
