import { BitReader } from "./bits.ts";
import { skipScalingList } from "./sps.ts";

/** What a slice header's parse needs from a picture parameter set (7.3.2.2). */
export interface PpsInfo {
  ppsId: number;
  spsId: number;
  /** bottom_field_pic_order_in_frame_present_flag: slice headers carry a bottom-field POC delta. */
  bottomFieldPicOrder: boolean;
  /** The rest of what a slice header's parse depends on (7.3.3). */
  cabac: boolean;
  refIdxL0Default: number;
  refIdxL1Default: number;
  weightedPred: boolean;
  weightedBipredIdc: number;
  deblockingControl: boolean;
  redundantPicCnt: boolean;
  /** pic_init_qp_minus26 + 26: a slice's QP is this plus its slice_qp_delta. */
  picInitQp: number;
}

/**
 * Parses a PPS NAL unit (header byte included) up to what slice headers depend on. Throws
 * RangeError when it is truncated or its ids are out of range.
 *
 * @example
 * parsePps(Uint8Array.of(0x68, 0xce, 0x3c, 0x80)); // { ppsId: 0, spsId: 0, cabac: false, deblockingControl: true, ... }
 */
export function parsePps(nal: Uint8Array): PpsInfo {
  const r = new BitReader(nal, 1);
  const ppsId = r.ue();
  if (ppsId > 255) throw new RangeError(`PPS id ${ppsId} out of range`);
  const spsId = r.ue();
  if (spsId > 31) throw new RangeError(`PPS refers to SPS id ${spsId}, out of range`);
  const head = { ppsId, spsId, cabac: r.bit() === 1, bottomFieldPicOrder: r.bit() === 1 };
  // Slice groups (FMO): no drone or camera encoder uses them, and their slice headers end in a
  // field this parser cannot check, so a PPS with them is refused like a malformed one.
  if (r.ue() > 0) throw new RangeError("slice groups (FMO) are not supported");
  const refIdxL0Default = r.ue(), refIdxL1Default = r.ue();
  if (refIdxL0Default > 31 || refIdxL1Default > 31) {
    throw new RangeError("num_ref_idx_default_active out of range");
  }
  const weightedPred = r.bit() === 1;
  const weightedBipredIdc = r.bits(2);
  const picInitQp = 26 + r.se();
  if (picInitQp < -26 || picInitQp > 51) throw new RangeError(`pic_init_qp ${picInitQp} out of range`);
  r.se(); // pic_init_qs_minus26
  r.se(); // chroma_qp_index_offset
  const deblockingControl = r.bit() === 1;
  r.bit(); // constrained_intra_pred_flag
  const redundantPicCnt = r.bit() === 1;
  // A PPS ends here or after the high profiles' extension; anything else is not a PPS.
  if (!r.atTrailingBits()) {
    const transform8x8 = r.bit();
    if (r.bit()) { // pic_scaling_matrix_present_flag (4:4:4 would have 6 8x8 lists; it is refused here)
      for (let i = 0; i < 6 + 2 * transform8x8; i++) if (r.bit()) skipScalingList(r, i < 6 ? 16 : 64);
    }
    r.se(); // second_chroma_qp_index_offset
    if (!r.atTrailingBits()) throw new RangeError("PPS does not end where its fields do");
  }
  return {
    ...head,
    refIdxL0Default,
    refIdxL1Default,
    weightedPred,
    weightedBipredIdc,
    deblockingControl,
    redundantPicCnt,
    picInitQp,
  };
}
