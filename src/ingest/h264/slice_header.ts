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
  const sliceType = r.ue();
  if (sliceType > 9) throw new RangeError("slice_type out of range");
  const ppsId = r.ue();
  if (ppsId > 255) throw new RangeError(`PPS id ${ppsId} out of range`);
  const idr = (nal[0] & 0x1f) === NalType.idr;
  // 7.4.1, 7.4.3: an IDR picture is a reference picture of I (or SI) slices.
  if (idr && ((nal[0] & 0x60) === 0 || (sliceType % 5 !== 2 && sliceType % 5 !== 4))) {
    throw new RangeError("IDR slice that is not an intra reference slice");
  }
  const header: SliceHeader = { firstMb, ppsId, reference: (nal[0] & 0x60) !== 0, idr, picture: null };
  const pps = ppsOf(ppsId);
  const sps = pps && spsOf(pps.spsId);
  if (!sps) return header;
  if (firstMb >= sps.frameMbs) throw new RangeError(`first_mb_in_slice ${firstMb} past the picture`);
  if (sps.separateColourPlane) r.bits(2); // colour_plane_id
  const frameNum = r.bits(sps.log2MaxFrameNum);
  if (idr && frameNum !== 0) throw new RangeError(`IDR slice with frame_num ${frameNum}`);
  // Baseline (66) has no B, SP or SI slices (A.2.1).
  if (sps.profile === 66 && sliceType % 5 !== 0 && sliceType % 5 !== 2) {
    throw new RangeError(`slice_type ${sliceType} in a baseline stream`);
  }
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
  readToSliceData(r, sliceType % 5, nal, sps, pps);
  return header;
}

const P = 0, B = 1, I = 2, SP = 3, SI = 4;

/**
 * Reads the rest of the header (7.3.3 from redundant_pic_cnt to the deblocking fields) and checks
 * that slice data follows: a NAL unit cut inside its header, or one of random bits, fails here.
 * A cut inside the macroblock data cannot be told without decoding it.
 */
function readToSliceData(r: BitReader, type: number, nal: Uint8Array, sps: SpsInfo, pps: PpsInfo): void {
  if (pps.redundantPicCnt) r.ue();
  if (type === B) r.bit(); // direct_spatial_mv_pred_flag
  let l0 = pps.refIdxL0Default, l1 = pps.refIdxL1Default;
  if ((type === P || type === SP || type === B) && r.bit()) {
    l0 = r.ue();
    if (type === B) l1 = r.ue();
    if (l0 > 31 || l1 > 31) throw new RangeError("num_ref_idx_active out of range");
  }
  const modifications = () => {
    if (!r.bit()) return;
    for (let n = 0;; n++) {
      const idc = r.ue();
      if (idc === 3) return;
      if (idc > 5 || n > 32) throw new RangeError("ref_pic_list_modification out of range");
      r.ue();
    }
  };
  if (type !== I && type !== SI) modifications();
  if (type === B) modifications();
  if ((pps.weightedPred && (type === P || type === SP)) || (pps.weightedBipredIdc === 1 && type === B)) {
    r.ue(); // luma_log2_weight_denom
    if (sps.chromaArrayType !== 0) r.ue();
    for (const count of type === B ? [l0, l1] : [l0]) {
      for (let i = 0; i <= count; i++) {
        if (r.bit()) (r.se(), r.se());
        if (sps.chromaArrayType !== 0 && r.bit()) (r.se(), r.se(), r.se(), r.se());
      }
    }
  }
  if ((nal[0] & 0x60) !== 0) { // dec_ref_pic_marking
    if ((nal[0] & 0x1f) === NalType.idr) r.bits(2);
    else if (r.bit()) {
      for (let n = 0;; n++) {
        const op = r.ue();
        if (op === 0) break;
        if (op > 6 || n > 64) throw new RangeError("memory_management_control_operation out of range");
        if (op === 1 || op === 3) r.ue();
        if (op === 2) r.ue();
        if (op === 3 || op === 6) r.ue();
        if (op === 4) r.ue();
      }
    }
  }
  if (pps.cabac && type !== I && type !== SI && r.ue() > 2) {
    throw new RangeError("cabac_init_idc out of range");
  }
  // Ranges of 7.4.3: random bits seldom satisfy them all.
  const qp = pps.picInitQp + r.se();
  if (qp < -48 || qp > 51) throw new RangeError(`slice QP ${qp} out of range`);
  if (type === SP || type === SI) {
    if (type === SP) r.bit();
    r.se();
  }
  if (pps.deblockingControl) {
    const idc = r.ue();
    if (idc > 2) throw new RangeError("disable_deblocking_filter_idc out of range");
    if (idc !== 1 && [r.se(), r.se()].some((o) => o < -6 || o > 6)) {
      throw new RangeError("slice_alpha_c0 or beta offset out of range");
    }
  }
  // Slice data follows: CABAC's begins on a byte boundary padded with 1 bits; either has a bit
  // at least before the stop bit.
  if (pps.cabac && !r.alignedOnes()) throw new RangeError("cabac_alignment_one_bit is 0");
  r.bit();
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
