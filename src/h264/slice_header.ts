import { BitReader } from "./bits.ts";
import { NalType } from "./nal.ts";
import type { PpsInfo } from "./pps.ts";
import type { SpsInfo } from "./sps.ts";

/** The fields of a slice header that tell which picture the slice belongs to (7.4.1.2.4). */
export interface SliceHeader {
  firstMb: number;
  ppsId: number;
  /** nal_ref_idc is not 0: later pictures may refer to this one. */
  reference: boolean;
  idr: boolean;
  /** Null when the slice's PPS or SPS is unknown: only first_mb_in_slice and the PPS id were read. */
  picture: {
    frameNum: number;
    field: boolean;
    bottom: boolean;
    idrPicId: number;
    pocLsb: number;
    deltaPocBottom: number;
    deltaPoc0: number;
    deltaPoc1: number;
  } | null;
}

/**
 * Reads a slice header (7.3.3) up to the fields that identify its picture, with the parameter
 * sets known so far. Throws RangeError when the header is truncated or out of range.
 *
 * @example
 * const h = parseSliceHeader(nal, (id) => pps.get(id), (id) => sps.get(id));
 * if (h.firstMb === 0 || startsNewPicture(previous, h)) finishPicture();
 */
export function parseSliceHeader(
  nal: Uint8Array,
  ppsOf: (id: number) => PpsInfo | undefined,
  spsOf: (id: number) => SpsInfo | undefined,
): SliceHeader {
  const r = new BitReader(nal, 1);
  const firstMb = r.ue();
  if (r.ue() > 9) throw new RangeError("slice_type out of range");
  const ppsId = r.ue();
  if (ppsId > 255) throw new RangeError(`PPS id ${ppsId} out of range`);
  const idr = (nal[0] & 0x1f) === NalType.idr;
  const header: SliceHeader = { firstMb, ppsId, reference: (nal[0] & 0x60) !== 0, idr, picture: null };
  const pps = ppsOf(ppsId);
  const sps = pps && spsOf(pps.spsId);
  if (!sps) return header;
  if (firstMb >= sps.frameMbs) throw new RangeError(`first_mb_in_slice ${firstMb} past the picture`);
  if (sps.separateColourPlane) r.bits(2); // colour_plane_id
  const frameNum = r.bits(sps.log2MaxFrameNum);
  let field = false, bottom = false;
  if (!sps.frameMbsOnly) {
    field = r.bit() === 1;
    if (field) bottom = r.bit() === 1;
  }
  const idrPicId = idr ? r.ue() : 0;
  let pocLsb = 0, deltaPocBottom = 0, deltaPoc0 = 0, deltaPoc1 = 0;
  if (sps.pocType === 0) {
    pocLsb = r.bits(sps.log2MaxPocLsb);
    if (pps.bottomFieldPicOrder && !field) deltaPocBottom = r.se();
  } else if (sps.pocType === 1 && !sps.deltaPicOrderAlwaysZero) {
    deltaPoc0 = r.se();
    if (pps.bottomFieldPicOrder && !field) deltaPoc1 = r.se();
  }
  header.picture = { frameNum, field, bottom, idrPicId, pocLsb, deltaPocBottom, deltaPoc0, deltaPoc1 };
  return header;
}

/**
 * H.264 7.4.1.2.4: the slice `b` belongs to another primary coded picture than slice `a`
 * (frame_num, PPS, field, nal_ref_idc zero-ness, POC fields, IDR-ness or idr_pic_id differ).
 * first_mb_in_slice is not one of the tests: the caller checks it.
 */
export function startsNewPicture(a: SliceHeader, b: SliceHeader): boolean {
  if (a.ppsId !== b.ppsId || a.reference !== b.reference || a.idr !== b.idr) return true;
  const p = a.picture, q = b.picture;
  if (!p || !q) return false;
  return p.frameNum !== q.frameNum || p.field !== q.field || p.bottom !== q.bottom ||
    (a.idr && p.idrPicId !== q.idrPicId) || p.pocLsb !== q.pocLsb ||
    p.deltaPocBottom !== q.deltaPocBottom || p.deltaPoc0 !== q.deltaPoc0 || p.deltaPoc1 !== q.deltaPoc1;
}
