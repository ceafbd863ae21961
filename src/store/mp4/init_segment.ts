import type { ParamSets } from "../../ingest/h264/frame_parser.ts";
import { ascii, box, fullBox, u16, u32, u64, u8, zeros } from "./boxes.ts";
import { concat } from "../../runtime/bytes.ts";
import { TIMESCALE } from "./timing.ts";

/** The track id of the single video track in every file we write. */
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
/** Movie (mvhd, tkhd, elst) durations are in milliseconds; media times in TIMESCALE ticks. */
const MOVIE_TIMESCALE = 1000;

/** The sample tables of a non-fragmented file (ISO/IEC 14496-12 8.6-8.7). */
export interface SampleTables {
  durations: number[];
  sizes: number[];
  /** 1-based numbers of the sync samples. */
  sync: number[];
  /** Per file chunk: its offset and how many samples it holds. */
  chunks: { offset: number; samples: number }[];
}

export interface MovieOptions {
  width: number;
  height: number;
  /** The sample entry (an avc1 box), taken from a chunk's stsd or built from parameter sets. */
  sampleEntry: Uint8Array;
  /** Absent: a fragmented file (empty tables, mvex). */
  tables?: SampleTables;
  /** Show only [mediaTime, mediaTime + durationMs): frames before are decoded, not shown. */
  edit?: { mediaTime: number; durationMs: number };
  /**
   * A fragmented file's frame step, ticks: stts gets one entry of no samples with that duration,
   * where ffmpeg reads a fragmented file's frame rate. Without it ffmpeg guesses the rate from the
   * first 16 intervals, and a file with fewer gets the SPS's nominal rate: pictures on a finer grid
   * then round to one output time (docs/time.md).
   */
  stepTicks?: number;
}

/** ftyp for everything we write. */
export function ftyp(): Uint8Array {
  return box("ftyp", ascii("isom"), u32(0x200), ascii("isom"), ascii("iso6"), ascii("avc1"), ascii("mp41"));
}

/**
 * moov with one H.264 track: fragmented (samples follow in moof+mdat) or with full sample tables.
 *
 * @example
 * const init = concat([ftyp(), movie({ width, height, sampleEntry: avc1(params) })]);
 */
export function movie(o: MovieOptions): Uint8Array {
  const t = o.tables;
  const mediaTicks = t ? t.durations.reduce((a, b) => a + b, 0) : 0;
  const movieMs = o.edit
    ? Math.round(o.edit.durationMs)
    : Math.round(mediaTicks / (TIMESCALE / MOVIE_TIMESCALE));
  const mvhd = fullBox(
    "mvhd",
    0,
    0,
    u32(0),
    u32(0),
    u32(MOVIE_TIMESCALE),
    u32(movieMs),
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
    u32(movieMs),
    zeros(8),
    u16(0),
    u16(0),
    u16(0),
    u16(0),
    MATRIX,
    u32(o.width << 16),
    u32(o.height << 16),
  );
  const edts = o.edit
    ? [
      box(
        "edts",
        fullBox("elst", 0, 0, u32(1), u32(movieMs), u32(Math.round(o.edit.mediaTime)), u16(1), u16(0)),
      ),
    ]
    : [];
  const mdhd = fullBox("mdhd", 0, 0, u32(0), u32(0), u32(TIMESCALE), u32(mediaTicks), u16(0x55c4), u16(0));
  const hdlr = fullBox("hdlr", 0, 0, u32(0), ascii("vide"), zeros(12), ascii("VideoHandler\0"));
  const stbl = box(
    "stbl",
    fullBox("stsd", 0, 0, u32(1), o.sampleEntry),
    ...(t ? sampleTables(t) : emptyTables(o.stepTicks)),
  );
  const minf = box(
    "minf",
    fullBox("vmhd", 0, 1, zeros(8)),
    box("dinf", fullBox("dref", 0, 0, u32(1), fullBox("url ", 0, 1))),
    stbl,
  );
  const trak = box("trak", tkhd, ...edts, box("mdia", mdhd, hdlr, minf));
  const mvex = t ? [] : [box("mvex", fullBox("trex", 0, 0, u32(TRACK_ID), u32(1), u32(0), u32(0), u32(0)))];
  return box("moov", mvhd, trak, ...mvex);
}

function emptyTables(stepTicks?: number): Uint8Array[] {
  return [
    stepTicks ? fullBox("stts", 0, 0, u32(1), u32(0), u32(stepTicks)) : fullBox("stts", 0, 0, u32(0)),
    fullBox("stsc", 0, 0, u32(0)),
    fullBox("stsz", 0, 0, u32(0), u32(0)),
    fullBox("stco", 0, 0, u32(0)),
  ];
}

function sampleTables(t: SampleTables): Uint8Array[] {
  const stts: Uint8Array[] = [];
  for (let i = 0; i < t.durations.length;) {
    let n = 1;
    while (i + n < t.durations.length && t.durations[i + n] === t.durations[i]) n++;
    stts.push(u32(n), u32(t.durations[i]));
    i += n;
  }
  const stsc: Uint8Array[] = [];
  t.chunks.forEach((c, i) => {
    if (i === 0 || c.samples !== t.chunks[i - 1].samples) stsc.push(u32(i + 1), u32(c.samples), u32(1));
  });
  const large = t.chunks.some((c) => c.offset > 0xffffffff);
  return [
    fullBox("stts", 0, 0, u32(stts.length / 2), ...stts),
    fullBox("stss", 0, 0, u32(t.sync.length), ...t.sync.map(u32)),
    fullBox("stsc", 0, 0, u32(stsc.length / 3), ...stsc),
    fullBox("stsz", 0, 0, u32(0), u32(t.sizes.length), ...t.sizes.map(u32)),
    large
      ? fullBox("co64", 0, 0, u32(t.chunks.length), ...t.chunks.map((c) => u64(c.offset)))
      : fullBox("stco", 0, 0, u32(t.chunks.length), ...t.chunks.map((c) => u32(c.offset))),
  ];
}

/**
 * ftyp + moov of a chunk: fragmented MP4 with one H.264 track; the samples follow in moof+mdat pairs.
 * `shownFrom` (media ticks) makes the samples before it decode-only: an edit list starts
 * presentation there (segment_duration 0: to the end of the fragmented track). `stepTicks`: the
 * chunk's frame grid step, if it has one (MovieOptions).
 *
 * @example
 * await file.write(initSegment(frame.params));
 */
export function initSegment(params: ParamSets, shownFrom?: number, stepTicks?: number): Uint8Array {
  const { width, height } = params.info;
  const edit = shownFrom ? { mediaTime: shownFrom, durationMs: 0 } : undefined;
  return concat([ftyp(), movie({ width, height, sampleEntry: avc1(params), edit, stepTicks })]);
}

/** The avc1 sample entry with its AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1). */
function avc1(params: ParamSets): Uint8Array {
  const { profile, constraints, level, width, height } = params.info;
  const parts = [u8(1), u8(profile), u8(constraints), u8(level), u8(0xff), u8(0xe0 | params.sps.length)];
  for (const sps of params.sps) parts.push(u16(sps.length), sps);
  parts.push(u8(params.pps.length));
  for (const pps of params.pps) parts.push(u16(pps.length), pps);
  return box(
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
    box("avcC", ...parts),
  );
}
