/** H.264 NAL unit types that the recorder treats specially (ITU-T H.264 table 7-1). */
export const NalType = {
  slice: 1,
  idr: 5,
  sei: 6,
  sps: 7,
  pps: 8,
  aud: 9,
} as const;

/** The nal_unit_type of a NAL unit (header byte without start code). */
export function nalType(nal: Uint8Array): number {
  return nal[0] & 0x1f;
}

/** True for coded slices of a picture (non-IDR or IDR). */
export function isSlice(type: number): boolean {
  return type === NalType.slice || type === NalType.idr;
}
