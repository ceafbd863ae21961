/** What the cache needs of a frame. */
export interface GopFrame {
  ts: number;
  keyframe: boolean;
  data: Uint8Array;
  params: { key: string } | null;
}

/**
 * The frames since the last keyframe, kept so that a chunk can start at any frame of the GOP: the
 * chunk opens with them as decode-only samples. Its caller passes it every frame a decoder can
 * decode, in order, so the frames it holds always lead up to the next one. Bounded: a GOP larger
 * than `maxBytes` is dropped (and counted) until the next keyframe; `maxBytes` 0 turns it off. Pure.
 *
 * @example
 * const gop = new GopCache(32 * 2 ** 20);
 * const carry = gop.carries(frame) ? gop.frames : null; // before adding the frame
 * gop.add(frame);
 */
export class GopCache<F extends GopFrame> {
  #frames: F[] = [];
  #bytes = 0;
  #overflowed = false;
  #lastKeyTs: number | null = null;
  #keyIntervalMs: number | null = null;
  /** GOPs dropped for exceeding the bound. */
  overflows = 0;

  constructor(readonly maxBytes: number) {}

  /** The frames held, oldest (a keyframe) first. */
  get frames(): readonly F[] {
    return this.#frames;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The GOP was too large to keep, so a chunk cannot start in it before the next keyframe. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /**
   * The newest keyframe interval, ms, as of `frame` (not yet added): the one `frame` ends if it is a
   * keyframe, else the last between two keyframes added. Null until there is one.
   */
  keyIntervalAt(frame: GopFrame): number | null {
    return frame.keyframe && this.#lastKeyTs !== null ? frame.ts - this.#lastKeyTs : this.#keyIntervalMs;
  }

  /** A chunk could start at `frame` (not a keyframe) with the frames held as its decode-only lead. */
  carries(frame: GopFrame): boolean {
    return !frame.keyframe && this.#frames.length > 0 && this.#frames[0].params?.key === frame.params?.key;
  }

  add(frame: F): void {
    if (frame.keyframe) {
      this.#keyIntervalMs = this.keyIntervalAt(frame);
      this.#lastKeyTs = frame.ts;
      this.clear();
      this.#overflowed = false;
    } else if (this.#frames.length === 0) return; // nothing to lead up to it: wait for a keyframe
    if (this.maxBytes === 0) return; // the cache is off
    if (this.#bytes + frame.data.length > this.maxBytes) {
      this.overflows++;
      this.#overflowed = true;
      this.clear();
      return;
    }
    this.#frames.push(frame);
    this.#bytes += frame.data.length;
  }

  /** Forget the GOP (the frames that follow cannot rely on it): wait for the next keyframe. */
  clear(): void {
    this.#frames = [];
    this.#bytes = 0;
  }
}
