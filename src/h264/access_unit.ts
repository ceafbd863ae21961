import { BitReader } from "./bits.ts";
import { isFirstSliceOfPicture, isSlice, NalType, nalType } from "./nal.ts";
import type { TimedNal } from "./annexb.ts";

/** One coded picture: its NAL units, and the arrival time of its first byte (parameter sets aside). */
export interface AccessUnit {
  ts: number;
  nals: Uint8Array[];
  /** Holds an IDR slice. */
  idr: boolean;
  /** A slice whose header could not be parsed: the picture cannot be decoded. */
  corrupt: boolean;
}

/**
 * Groups NAL units into access units (H.264 7.4.1.2.3, as the relay's consumers need it): a new
 * unit starts at an AUD; at SEI, SPS or PPS after a slice of the current unit; and at a slice
 * whose first_mb_in_slice is 0 when the current unit already has a slice.
 *
 * @example
 * const asm = new AccessUnitAssembler();
 * for (const nal of nals) { const au = asm.push(nal); if (au) frames.push(au); }
 * const last = asm.flush();
 */
export class AccessUnitAssembler {
  /** NAL units refused: forbidden bit set or a type that Annex-B streams never carry. */
  badNals = 0;
  #cur: AccessUnit | null = null;
  #hasSlice = false;
  #timed = false;

  push(nal: TimedNal): AccessUnit | null {
    const b = nal.data;
    const type = nalType(b);
    if ((b[0] & 0x80) !== 0 || type === 0 || type >= 24) {
      this.badNals++;
      return null;
    }
    let done: AccessUnit | null = null;
    const startsNew = type === NalType.aud ||
      (this.#hasSlice && (type === NalType.sei || type === NalType.sps || type === NalType.pps)) ||
      (this.#hasSlice && isSlice(type) && isFirstSliceOfPicture(b));
    if (startsNew) done = this.flush();
    if (!this.#cur) this.#cur = { ts: nal.ts, nals: [], idr: false, corrupt: false };
    // Parameter sets carry no picture time: the relay resends its cached ones on connect, long
    // before the next picture. The unit's time is the arrival of its first other NAL unit.
    if (!this.#timed && type !== NalType.sps && type !== NalType.pps) {
      this.#cur.ts = nal.ts;
      this.#timed = true;
    }
    this.#cur.nals.push(b);
    if (isSlice(type)) {
      this.#hasSlice = true;
      if (type === NalType.idr) this.#cur.idr = true;
      if (!sliceHeaderParses(b)) {
        this.badNals++;
        this.#cur.corrupt = true;
      }
    }
    return done;
  }

  /** Completes the unit in progress, if it holds a slice (a unit of only parameter sets waits). */
  flush(): AccessUnit | null {
    const au = this.#cur;
    if (!au || !this.#hasSlice) return null;
    this.#cur = null;
    this.#hasSlice = false;
    this.#timed = false;
    return au;
  }
}

/** first_mb_in_slice, slice_type and pic_parameter_set_id must be readable and in range. */
function sliceHeaderParses(nal: Uint8Array): boolean {
  try {
    const r = new BitReader(nal, 1);
    r.ue();
    return r.ue() <= 9 && r.ue() <= 255;
  } catch {
    return false;
  }
}
