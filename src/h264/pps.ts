import { BitReader } from "./bits.ts";

/** What a slice header's parse needs from a picture parameter set (7.3.2.2). */
export interface PpsInfo {
  ppsId: number;
  spsId: number;
  /** bottom_field_pic_order_in_frame_present_flag: slice headers carry a bottom-field POC delta. */
  bottomFieldPicOrder: boolean;
}

/**
 * Parses the head of a PPS NAL unit (header byte included). Throws RangeError when it is
 * truncated or its ids are out of range.
 *
 * @example
 * parsePps(Uint8Array.of(0x68, 0xce, 0x3c, 0x80)); // { ppsId: 0, spsId: 0, bottomFieldPicOrder: false }
 */
export function parsePps(nal: Uint8Array): PpsInfo {
  const r = new BitReader(nal, 1);
  const ppsId = r.ue();
  if (ppsId > 255) throw new RangeError(`PPS id ${ppsId} out of range`);
  const spsId = r.ue();
  if (spsId > 31) throw new RangeError(`PPS refers to SPS id ${spsId}, out of range`);
  r.bit(); // entropy_coding_mode_flag
  return { ppsId, spsId, bottomFieldPicOrder: r.bit() === 1 };
}
