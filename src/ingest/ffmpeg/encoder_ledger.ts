/**
 * The JPEGs handed to an encoder and not yet seen encoded, so that each encoded picture gets the
 * arrival time of its own JPEG. The encoder is fed at a nominal `fps` with no timestamps, so it
 * numbers its inputs: picture n has the presentation time n / fps. The output's time (ms, as FLV
 * carries it) names the input it came from, so a JPEG the encoder dropped or a picture it made up
 * shows, instead of shifting every later time by one frame. Pure: the caller gives the times.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EncoderLedger } from "./encoder_ledger.ts";
 * const ledger = new EncoderLedger(20);
 * ledger.sent(1000); ledger.sent(1047); ledger.sent(1101);
 * assert.deepEqual(ledger.encoded(0), { ts: 1000, skipped: 0 });
 * assert.deepEqual(ledger.encoded(100), { ts: 1101, skipped: 1 }); // the JPEG of 1047 never came out
 * assert.equal(ledger.encoded(150), null); // no such input
 * ```
 */
export class EncoderLedger {
  #next = 0;
  /** Inputs not yet matched, oldest first: their numbers and arrival times. */
  #pending: { n: number; ts: number }[] = [];
  #head = 0;

  constructor(readonly fps: number) {}

  /** A JPEG that arrived at `ts` was written to the encoder. */
  sent(ts: number): void {
    this.#pending.push({ n: this.#next++, ts });
  }

  /**
   * The encoder gave a picture at `ptsMs`: the arrival time of its JPEG, and how many earlier
   * inputs it skipped (they are forgotten); null when no input waiting has that number.
   */
  encoded(ptsMs: number): { ts: number; skipped: number } | null {
    const n = Math.round(ptsMs * this.fps / 1000);
    let skipped = 0;
    while (this.#head < this.#pending.length && this.#pending[this.#head].n < n) {
      this.#head++;
      skipped++;
    }
    const hit = this.#pending[this.#head];
    if (!hit || hit.n !== n) {
      this.#compact();
      return null;
    }
    this.#head++;
    this.#compact();
    return { ts: hit.ts, skipped };
  }

  /** Inputs written but not yet encoded. */
  get waiting(): number {
    return this.#pending.length - this.#head;
  }

  /** Arrival time of the oldest input not yet encoded, if any. */
  get oldest(): number | null {
    return this.#pending[this.#head]?.ts ?? null;
  }

  #compact(): void {
    if (this.#head > 64 && this.#head * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head);
      this.#head = 0;
    }
  }
}
