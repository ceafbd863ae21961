import type { ParamSets } from "../h264/frame_parser.ts";
import { ascii, box, concat, fullBox, u16, u32, u8, zeros } from "./boxes.ts";
import { TIMESCALE } from "./timing.ts";

/** The track id of the single video track in every chunk. */
export const TRACK_ID = 1;

const MATRIX = concat([
  u32(0x10000),
  u32(0),
  u32(0),
  u32(0),
  u32(0x10000),
  u32(0),
  u32(0),
  u32(0),
  u32(0x40000000),
]);

/**
 * ftyp + moov of a fragmented MP4 with one H.264 track; the samples follow in moof+mdat pairs.
 *
 * @example
 * await file.write(initSegment(frame.params));
 */
export function initSegment(params: ParamSets): Uint8Array {
  const { width, height } = params.info;
  const ftyp = box(
    "ftyp",
    ascii("isom"),
    u32(0x200),
    ascii("isom"),
    ascii("iso6"),
    ascii("avc1"),
    ascii("mp41"),
  );
  const mvhd = fullBox(
    "mvhd",
    0,
    0,
    u32(0),
    u32(0),
    u32(1000),
    u32(0),
    u32(0x10000),
    u16(0x100),
    zeros(10),
    MATRIX,
    zeros(24),
    u32(TRACK_ID + 1),
  );
  const tkhd = fullBox(
    "tkhd",
    0,
    3,
    u32(0),
    u32(0),
    u32(TRACK_ID),
    u32(0),
    u32(0),
    zeros(8),
    u16(0),
    u16(0),
    u16(0),
    u16(0),
    MATRIX,
    u32(width << 16),
    u32(height << 16),
  );
  const mdhd = fullBox("mdhd", 0, 0, u32(0), u32(0), u32(TIMESCALE), u32(0), u16(0x55c4), u16(0));
  const hdlr = fullBox("hdlr", 0, 0, u32(0), ascii("vide"), zeros(12), ascii("VideoHandler\0"));
  const avc1 = box(
    "avc1",
    zeros(6),
    u16(1),
    zeros(16),
    u16(width),
    u16(height),
    u32(0x480000),
    u32(0x480000),
    u32(0),
    u16(1),
    zeros(32),
    u16(0x18),
    u16(0xffff),
    avcC(params),
  );
  const stbl = box(
    "stbl",
    fullBox("stsd", 0, 0, u32(1), avc1),
    fullBox("stts", 0, 0, u32(0)),
    fullBox("stsc", 0, 0, u32(0)),
    fullBox("stsz", 0, 0, u32(0), u32(0)),
    fullBox("stco", 0, 0, u32(0)),
  );
  const minf = box(
    "minf",
    fullBox("vmhd", 0, 1, zeros(8)),
    box("dinf", fullBox("dref", 0, 0, u32(1), fullBox("url ", 0, 1))),
    stbl,
  );
  const trak = box("trak", tkhd, box("mdia", mdhd, hdlr, minf));
  const mvex = box("mvex", fullBox("trex", 0, 0, u32(TRACK_ID), u32(1), u32(0), u32(0), u32(0)));
  return concat([ftyp, box("moov", mvhd, trak, mvex)]);
}

/** AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1). */
function avcC(params: ParamSets): Uint8Array {
  const { profile, constraints, level } = params.info;
  const parts = [u8(1), u8(profile), u8(constraints), u8(level), u8(0xff), u8(0xe0 | params.sps.length)];
  for (const sps of params.sps) parts.push(u16(sps.length), sps);
  parts.push(u8(params.pps.length));
  for (const pps of params.pps) parts.push(u16(pps.length), pps);
  return box("avcC", ...parts);
}
