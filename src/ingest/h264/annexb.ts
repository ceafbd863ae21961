/** A NAL unit (header byte first, no start code) and the arrival time of its first byte. */
export interface TimedNal {
  data: Uint8Array;
  ts: number;
}

/** NAL units larger than this are discarded: no sane encoder emits them, and buffering is bounded. */
export const MAX_NAL_BYTES = 8 * 1024 * 1024;

/** Pieces in a row that began with a start code before piece ends are trusted as NAL unit ends. */
const ALIGNED_STREAK = 8;

/**
 * Splits an Annex-B byte stream that arrives in arbitrary pieces into NAL units. A NAL unit is
 * complete when the next start code arrives, so results do not depend on how the bytes were
 * split into messages. A piece that begins with a start code completes the pending NAL unit
 * without copying it, which is the relay's one-NAL-per-message case.
 *
 * The relay sends whole NAL units, so waiting for the next start code would hold the last one
 * before a pause until the stream resumes. Once several pieces in a row have begun with a start
 * code, the end of a piece completes its NAL unit too. A piece that then continues a NAL unit
 * proves the stream is split elsewhere: it is counted (`splitNals`), its bytes up to the next start
 * code are discarded, `damaged` is set for the caller, and the splitter goes back to waiting for
 * start codes.
 *
 * @example
 * const s = new AnnexBSplitter();
 * s.push(new Uint8Array([0, 0, 0, 1, 0x67, 0x42]), 10); // [] (pending until the next start code)
 * s.push(new Uint8Array([0, 0, 1, 0x68, 0xce]), 11); // [{ data: [0x67, 0x42], ts: 10 }]
 * s.flush(); // [{ data: [0x68, 0xce], ts: 11 }]
 */
export class AnnexBSplitter {
  /** Bytes thrown away: before the first start code, or in NAL units over MAX_NAL_BYTES. */
  discardedBytes = 0;
  /** NAL units thrown away for exceeding MAX_NAL_BYTES. */
  oversizedNals = 0;
  /** NAL units found continued in the next piece after a piece end had completed them. */
  splitNals = 0;
  /** Set when a NAL unit already passed on turned out to be cut short; the caller clears it. */
  damaged = false;

  #pending: Uint8Array | null = null; // bytes of the NAL unit in progress (after its start code)
  #pendingTs = 0;
  #inNal = false; // false until the first start code
  #skipping = false; // inside an oversized NAL unit
  #aligned = 0; // pieces in a row that began with a start code; -1: never trust piece ends again

  /** Arrival of the NAL unit in progress, if one has begun. */
  get pendingSince(): number | null {
    return this.#pending && this.#inNal && !this.#skipping ? this.#pendingTs : null;
  }

  push(bytes: Uint8Array, ts: number): TimedNal[] {
    const out: TimedNal[] = [];
    const startsWithCode = startCodeLength(bytes, 0) > 0;
    if (this.#aligned >= 0) {
      if (startsWithCode) this.#aligned++;
      else if (this.#aligned >= ALIGNED_STREAK && bytes.length > 0) {
        this.splitNals++;
        this.damaged = true;
        this.#aligned = -1;
        this.#inNal = false; // the continuation is discarded up to the next start code
      } else this.#aligned = 0;
    }
    if (startsWithCode && this.#pending) {
      if (this.#inNal && !this.#skipping) this.#complete(this.#pending, out);
      else this.discardedBytes += trimZeros(this.#pending, 0, this.#pending.length);
      this.#pending = null;
    }
    let buf = bytes;
    let pendingLen = 0;
    if (this.#pending) {
      pendingLen = this.#pending.length;
      buf = new Uint8Array(pendingLen + bytes.length);
      buf.set(this.#pending);
      buf.set(bytes, pendingLen);
      this.#pending = null;
    }
    let nalStart = 0;
    let scan = Math.max(0, pendingLen - 3);
    for (;;) {
      const one = startCodeEnd(buf, scan);
      if (one < 0) break;
      const codeStart = one - 2;
      if (this.#inNal && !this.#skipping) this.#complete(buf.subarray(nalStart, codeStart), out);
      else this.discardedBytes += trimZeros(buf, nalStart, codeStart) - nalStart;
      this.#inNal = true;
      this.#skipping = false;
      nalStart = one + 1;
      // The header byte lies in this piece unless the start code straddled into it from pending bytes.
      this.#pendingTs = ts;
      scan = nalStart;
    }
    const rest = buf.subarray(nalStart);
    if (!this.#inNal || this.#skipping) {
      // Bytes outside any NAL unit are dropped, but for a start code that the next piece may complete.
      const keep = Math.min(2, rest.length);
      this.discardedBytes += trimZeros(rest, 0, rest.length - keep);
      this.#pending = keep > 0 ? rest.slice(rest.length - keep) : null;
    } else if (rest.length > MAX_NAL_BYTES) {
      this.oversizedNals++;
      this.discardedBytes += rest.length;
      this.#skipping = true;
    } else {
      // A NAL unit whose start code ended the previous piece begins in this one.
      if (nalStart === 0 && pendingLen === 0) this.#pendingTs = ts;
      this.#pending = rest;
      if (this.#aligned >= ALIGNED_STREAK) {
        this.#complete(rest, out);
        this.#pending = null;
      }
    }
    return out;
  }

  /** Ends the stream: the pending NAL unit is complete. */
  flush(): TimedNal[] {
    const out: TimedNal[] = [];
    if (this.#pending && this.#inNal && !this.#skipping) this.#complete(this.#pending, out);
    this.#pending = null;
    this.#inNal = false;
    this.#skipping = false;
    return out;
  }

  #complete(nal: Uint8Array, out: TimedNal[]): void {
    const end = trimZeros(nal, 0, nal.length);
    if (end === 0) return;
    if (end > MAX_NAL_BYTES) {
      this.oversizedNals++;
      this.discardedBytes += end;
      return;
    }
    out.push({ data: nal.subarray(0, end), ts: this.#pendingTs });
  }
}

/**
 * Index of the 01 ending the first 00 00 01 that starts at or after `from`, or -1. Like ffmpeg's
 * scan it steps three bytes past any byte but 0: no start code can end within two bytes after it.
 */
function startCodeEnd(b: Uint8Array, from: number): number {
  for (let i = from + 2; i < b.length;) {
    const x = b[i];
    if (x > 1) i += 3;
    else if (x === 0) i++;
    else if (b[i - 1] === 0 && b[i - 2] === 0) return i;
    else i += 3;
  }
  return -1;
}

/** End of b[from, to) without trailing zero bytes (trailing_zero_8bits, a 4-byte start code's zero). */
function trimZeros(b: Uint8Array, from: number, to: number): number {
  while (to > from && b[to - 1] === 0) to--;
  return to;
}

/** Length of a start code (3 or 4) at `at`, or 0. */
export function startCodeLength(b: Uint8Array, at: number): number {
  if (b[at] !== 0 || b[at + 1] !== 0) return 0;
  if (b[at + 2] === 1) return 3;
  return b[at + 2] === 0 && b[at + 3] === 1 ? 4 : 0;
}

/** Splits a complete Annex-B buffer (all its NAL units end with it). */
export function splitAnnexB(bytes: Uint8Array, ts: number): TimedNal[] {
  const s = new AnnexBSplitter();
  return [...s.push(bytes, ts), ...s.flush()];
}
