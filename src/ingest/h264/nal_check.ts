import { NalType } from "./nal.ts";

/** Why a NAL unit was refused before any parsing. */
export type NalDefect =
  /** forbidden_zero_bit set, or a type a plain AVC stream does not carry (0, data partitions 2-4 of the never-used extended profile, 13-31). */
  | "badHeaders"
  /** A byte pattern emulation prevention rules out: 00 00 00, 00 00 02, or 00 00 03 before a byte above 03 (7.4.1). */
  | "badEscapes"
  /** An SEI whose messages do not fit its payload (what decoders report as "SEI truncated"). */
  | "badSei";

/** Bytes of a slice scanned for escapes: its header and then some. */
const SLICE_SCAN = 64;

/**
 * The defect of a NAL unit (header byte first, no start code, trailing zeros removed), or null.
 * One pass over its bytes (a slice's first 64), so it is cheap enough for every NAL unit of every
 * stream.
 *
 * @example
 * nalDefect(Uint8Array.of(0x65, 0x88, 0x00, 0x00, 0x02)); // "badEscapes"
 */
export function nalDefect(nal: Uint8Array): NalDefect | null {
  const type = nal[0] & 0x1f;
  if ((nal[0] & 0x80) !== 0 || type === 0 || (type >= 2 && type <= 4) || type > 12) return "badHeaders";
  // A slice is scanned through its header only: scanning megabytes of macroblock data costs more
  // than the whole parse, and damage there is invisible to any check short of decoding.
  const last =
    (type === NalType.slice || type === NalType.idr ? Math.min(nal.length, SLICE_SCAN) : nal.length) - 3;
  for (let i = nal.indexOf(0, 1); i >= 0 && i <= last; i = nal.indexOf(0, i + 1)) {
    if (nal[i + 1] !== 0) continue;
    const third = nal[i + 2];
    if (third < 3) return "badEscapes";
    if (third === 3) {
      // An escape is followed by 00-03, or ends the NAL unit (cabac_zero_word).
      if (i + 3 < nal.length && nal[i + 3] > 3) return "badEscapes";
      i += 2;
    }
  }
  if (type === NalType.sei && !seiFits(nal)) return "badSei";
  return null;
}

/** The SEI messages (7.3.2.3) tile the payload exactly, up to the rbsp_trailing_bits byte 0x80. */
function seiFits(nal: Uint8Array): boolean {
  const rbsp = unescape(nal);
  const end = rbsp.length - 1; // the trailing bits byte
  if (end < 1 || rbsp[end] !== 0x80) return false;
  let at = 1;
  // payloadType and payloadSize: runs of 0xff, each adding 255, then a last byte.
  const field = () => {
    let v = 0;
    while (at < end && rbsp[at] === 0xff) (v += 255, at++);
    return at < end ? v + rbsp[at++] : -1;
  };
  while (at < end) {
    if (field() < 0) return false;
    const size = field();
    if (size < 0) return false;
    at += size;
  }
  return at === end;
}

/** The RBSP of a NAL unit: emulation-prevention bytes removed. */
function unescape(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(nal.length);
  let n = 0, zeros = 0;
  for (const b of nal) {
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    zeros = b === 0 ? zeros + 1 : 0;
    out[n++] = b;
  }
  return out.subarray(0, n);
}
