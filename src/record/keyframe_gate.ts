/**
 * After a frame is lost, the frames that follow reference a picture the decoder never saw: they are
 * held back until the next keyframe. Pure; the caller counts what it refuses.
 *
 * @example
 * const gate = new KeyframeGate();
 * if (!gate.admit(frame)) skipped++; else if (!queue.send(frame)) { dropped++; gate.break(); }
 */
export class KeyframeGate {
  #broken: boolean;

  constructor(startBroken = true) {
    this.#broken = startBroken;
  }

  /** True when the frame may pass: a keyframe, or any frame while the chain is intact. */
  admit(frame: { keyframe: boolean }): boolean {
    if (frame.keyframe) this.#broken = false;
    return !this.#broken;
  }

  /** A frame was lost: wait for the next keyframe. */
  break(): void {
    this.#broken = true;
  }
}
