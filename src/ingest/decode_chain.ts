/** Why frames are not passed on until the next keyframe. */
export type ChainBreak =
  /** No keyframe has been seen yet. */
  | "before_keyframe"
  /** frame_num skipped: a picture later ones refer to never arrived (a reconnect mid-GOP, a lost picture). */
  | "gap"
  /** A frame before it was dropped (corrupt, incomplete, a queue full). */
  | "after_drop";

/** What the chain needs of a frame. */
export interface ChainFrame {
  keyframe: boolean;
  frameNum: number | null;
  reference: boolean;
  gapBefore: boolean;
  params: { info: { log2MaxFrameNum: number; gapsAllowed: boolean; frameMbsOnly: boolean } } | null;
}

/**
 * Tells which frames a decoder can decode: a keyframe, and every frame after it whose frame_num
 * shows that no picture it may refer to was lost (H.264 7.4.3: a picture's frame_num is the
 * previous reference picture's plus one). It follows the stream across reconnects, so frames that
 * resume a coded sequence without a loss are kept. Pure; the caller counts what it refuses.
 *
 * Not modelled, so taken as a gap: memory_management_control_operation 5 (frame_num restarts).
 * With gaps_in_frame_num_value_allowed_flag, a forward jump is legal and is let through.
 *
 * @example
 * const chain = new DecodeChain();
 * const refused = chain.admit(frame);
 * if (refused) skipped.inc({ reason: refused }); else deliver(frame);
 */
export class DecodeChain {
  #prevRef: number | null = null;
  #broken: ChainBreak | null = "before_keyframe";

  /** Null when `frame` may be passed on; otherwise why not. */
  admit(frame: ChainFrame): ChainBreak | null {
    if (frame.keyframe) {
      this.#broken = null;
      this.#prevRef = frame.frameNum;
      return null;
    }
    if (frame.gapBefore && !this.#broken) this.#broken = "gap";
    if (this.#broken) return this.#broken;
    const info = frame.params?.info;
    if (!info || frame.frameNum === null || this.#prevRef === null) return this.#break("gap");
    const max = 2 ** info.log2MaxFrameNum;
    const expected = (this.#prevRef + 1) % max;
    const ok = frame.frameNum === expected || info.gapsAllowed ||
      // The second field of a pair repeats its first field's frame_num.
      (!info.frameMbsOnly && frame.frameNum === this.#prevRef);
    if (!ok) return this.#break("gap");
    if (frame.reference) this.#prevRef = frame.frameNum;
    return null;
  }

  /** A frame was lost after being admitted: wait for the next keyframe. */
  break(why: ChainBreak = "after_drop"): void {
    this.#broken = why;
  }

  #break(why: ChainBreak): ChainBreak {
    this.#broken = why;
    return why;
  }
}
