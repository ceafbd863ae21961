import { BitReader } from "./bits.ts";

/** What the recorder needs from a sequence parameter set. */
export interface SpsInfo {
  profile: number;
  constraints: number;
  level: number;
  spsId: number;
  width: number;
  height: number;
  /** RFC 6381 codec string, e.g. "avc1.42c01e". */
  codec: string;
  /** Fields a slice header's parse depends on (7.3.3). */
  log2MaxFrameNum: number;
  pocType: number;
  log2MaxPocLsb: number;
  deltaPicOrderAlwaysZero: boolean;
  frameMbsOnly: boolean;
  separateColourPlane: boolean;
  /** ChromaArrayType: 0 for monochrome or separate planes, else chroma_format_idc. */
  chromaArrayType: number;
  /** gaps_in_frame_num_value_allowed_flag: frame_num may jump without a picture being lost. */
  gapsAllowed: boolean;
  /** Macroblocks in a frame: first_mb_in_slice is below it. */
  frameMbs: number;
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);
/** profile_idc values of Annex A and its extensions (baseline, main, extended, and the high family). */
const PROFILES = new Set([66, 77, 88, ...HIGH_PROFILES]);
/** level_idc values of table A-1 (9 is level 1b). */
const LEVELS = new Set([9, 10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62]);

/**
 * Parses the fields of an SPS NAL unit (header byte included) up to the picture size.
 * Throws RangeError on a truncated or malformed SPS, or one no encoder writes (an unknown profile
 * or level, a picture outside 16-8192 pixels a side): its pictures would be recorded under an
 * avcC no decoder accepts.
 *
 * @example
 * const info = parseSps(spsNal);
 * info.width; // 854
 */
export function parseSps(nal: Uint8Array): SpsInfo {
  if (nal.length < 4) throw new RangeError("SPS shorter than 4 bytes");
  const profile = nal[1], constraints = nal[2], level = nal[3];
  if (!PROFILES.has(profile)) throw new RangeError(`unknown profile_idc ${profile}`);
  if (!LEVELS.has(level)) throw new RangeError(`unknown level_idc ${level}`);
  const r = new BitReader(nal, 4);
  const spsId = r.ue();
  if (spsId > 31) throw new RangeError(`SPS id ${spsId} out of range`);
  let chromaFormat = 1;
  let separateColourPlanes = 0;
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = r.ue();
    if (chromaFormat > 3) throw new RangeError(`chroma_format_idc ${chromaFormat} out of range`);
    if (chromaFormat === 3) separateColourPlanes = r.bit();
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.bit(); // qpprime_y_zero_transform_bypass_flag
    if (r.bit()) { // seq_scaling_matrix_present_flag
      for (let i = 0; i < (chromaFormat !== 3 ? 8 : 12); i++) {
        if (r.bit()) skipScalingList(r, i < 6 ? 16 : 64);
      }
    }
  }
  const log2MaxFrameNum = r.ue() + 4;
  if (log2MaxFrameNum > 16) throw new RangeError(`log2_max_frame_num ${log2MaxFrameNum} out of range`);
  const pocType = r.ue();
  let log2MaxPocLsb = 0, deltaPicOrderAlwaysZero = false;
  if (pocType === 0) {
    log2MaxPocLsb = r.ue() + 4;
    if (log2MaxPocLsb > 16) throw new RangeError(`log2_max_pic_order_cnt_lsb ${log2MaxPocLsb} out of range`);
  } else if (pocType === 1) {
    deltaPicOrderAlwaysZero = r.bit() === 1;
    r.se();
    r.se();
    const n = r.ue();
    if (n > 255) throw new RangeError("too many ref frames in POC cycle");
    for (let i = 0; i < n; i++) r.se();
  } else if (pocType !== 2) throw new RangeError(`pic_order_cnt_type ${pocType} out of range`);
  r.ue(); // max_num_ref_frames
  const gapsAllowed = r.bit() === 1;
  const widthMbs = r.ue() + 1;
  const heightMapUnits = r.ue() + 1;
  const frameMbsOnly = r.bit();
  if (!frameMbsOnly) r.bit(); // mb_adaptive_frame_field_flag
  r.bit(); // direct_8x8_inference_flag
  let cropLeft = 0, cropRight = 0, cropTop = 0, cropBottom = 0;
  if (r.bit()) {
    cropLeft = r.ue();
    cropRight = r.ue();
    cropTop = r.ue();
    cropBottom = r.ue();
  }
  const chromaArrayType = separateColourPlanes ? 0 : chromaFormat;
  const cropUnitX = chromaArrayType === 0 ? 1 : (chromaFormat === 3 ? 1 : 2);
  const cropUnitY = (chromaArrayType === 0 ? 1 : (chromaFormat === 1 ? 2 : 1)) * (2 - frameMbsOnly);
  const width = widthMbs * 16 - cropUnitX * (cropLeft + cropRight);
  const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropUnitY * (cropTop + cropBottom);
  if (width < 16 || height < 16 || width > 8192 || height > 8192) {
    throw new RangeError(`implausible picture size ${width}x${height}`);
  }
  return {
    profile,
    constraints,
    level,
    spsId,
    width,
    height,
    codec: codecString(profile, constraints, level),
    log2MaxFrameNum,
    pocType,
    log2MaxPocLsb,
    deltaPicOrderAlwaysZero,
    frameMbsOnly: frameMbsOnly === 1,
    separateColourPlane: separateColourPlanes === 1,
    chromaArrayType,
    gapsAllowed,
    frameMbs: widthMbs * heightMapUnits * (2 - frameMbsOnly),
  };
}

/**
 * The RFC 6381 codec string of an H.264 stream: its SPS's (or avcC's) profile_idc, constraint
 * flags and level_idc as hex.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { codecString } from "./sps.ts";
 * assert.equal(codecString(0x42, 0xc0, 0x1e), "avc1.42c01e");
 * ```
 */
export function codecString(profile: number, constraints: number, level: number): string {
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  return `avc1.${hex(profile)}${hex(constraints)}${hex(level)}`;
}

/** Reads past a scaling_list() (7.3.2.1.1.1); PPSs carry them too. */
export function skipScalingList(r: BitReader, size: number): void {
  let last = 8, next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}
