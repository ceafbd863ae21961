import { codecString } from "../../ingest/h264/sps.ts";
import { epochMsFromNtp, TIMESCALE } from "./timing.ts";

/** A sample of a chunk file: where its bytes are and when it plays. */
export interface SampleRef {
  /** File offset of the sample's bytes. */
  offset: number;
  size: number;
  /** Decode (= presentation) time and duration, in ticks from the chunk's start. */
  time: number;
  duration: number;
  key: boolean;
  /** Presented: at or after the edit list's start. False for a carried GOP's decode-only lead. */
  shown: boolean;
}

/** What a chunk file holds up to its last complete fragment. */
export interface ChunkScan {
  /** Bytes up to the end of the last complete fragment (or of moov): everything after is torn. */
  validBytes: number;
  fragments: number;
  /** Shown frames (decode-only samples excluded). */
  frames: number;
  /** Wall-clock ms of media time 0, from the first prft box; null if no fragment has one. */
  startMs: number | null;
  /** Media time (ticks) where presentation starts: the edit list's, 0 without one. */
  editTicks: number;
  /** Media end of the last complete fragment, in ms from the start. */
  endMs: number;
  /** Width and height from the track header; 0 if moov is missing. */
  width: number;
  height: number;
  /** RFC 6381 codec string from the avcC box, e.g. "avc1.42c01e"; "avc1" if unreadable. */
  codec: string;
  /** The first sample of the first fragment is a sync sample. */
  startsWithKeyframe: boolean;
  /** Every sample of the complete fragments, in order. */
  samples: SampleRef[];
  /** End of ftyp+moov (the init segment), and the stsd box's offset and size within it (-1 if none). */
  initEnd: number;
  stsd: { offset: number; size: number } | null;
  /** The frame grid's step the moov's empty stts names (docs/storage.md), ticks; null if none. */
  stepTicks: number | null;
}

/**
 * Scans a fragmented MP4 written by the recorder and finds where its last complete fragment ends.
 * A fragment counts only when its mdat is whole and its trun sizes add up to that mdat.
 *
 * `fileSize` larger than `bytes`: the file's boxes with every mdat's payload left out (its header
 * kept), as a clip reads them; offsets and sizes in the result are still the file's.
 *
 * @example
 * const scan = scanChunk(await Deno.readFile(path));
 * if (scan.validBytes < size) await Deno.truncate(path, scan.validBytes);
 */
export function scanChunk(bytes: Uint8Array, fileSize = bytes.length): ChunkScan {
  const elided = fileSize > bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const result: ChunkScan = {
    validBytes: 0,
    fragments: 0,
    frames: 0,
    startMs: null,
    editTicks: 0,
    endMs: 0,
    width: 0,
    height: 0,
    codec: "avc1",
    startsWithKeyframe: false,
    samples: [],
    initEnd: 0,
    stsd: null,
    stepTicks: null,
  };
  let at = 0;
  /** The file's offset of `bytes[at]`: ahead of `at` by the mdat payloads left out. */
  let fileAt = 0;
  let haveMoov = false;
  let prftMs: number | null = null;
  let moof: ReturnType<typeof parseMoof> = null;
  while (at + 8 <= bytes.length) {
    let size = view.getUint32(at);
    const type = fourcc(bytes, at + 4);
    let header = 8;
    if (size === 1) {
      if (at + 16 > bytes.length) break;
      size = Number(view.getBigUint64(at + 8));
      header = 16;
    }
    if (size < header || fileAt + size > fileSize) break; // torn box
    const inBytes = elided && type === "mdat" ? header : size;
    if (at + inBytes > bytes.length) break;
    const body = at + header;
    if (type === "moov") {
      haveMoov = true;
      result.validBytes = result.initEnd = fileAt + size;
      const tkhd = findBox(bytes, body, at + size, ["trak", "tkhd"]);
      if (tkhd >= 0) {
        result.width = view.getUint32(tkhd + 8 + 76) >>> 16;
        result.height = view.getUint32(tkhd + 8 + 80) >>> 16;
      }
      const stsd = findBox(bytes, body, at + size, ["trak", "mdia", "minf", "stbl", "stsd"]);
      if (stsd >= 0) result.stsd = { offset: stsd, size: view.getUint32(stsd) };
      const stts = findBox(bytes, body, at + size, ["trak", "mdia", "minf", "stbl", "stts"]);
      // One entry of no samples: the step (a file with sample tables is not a chunk).
      if (
        stts >= 0 && stts + 24 <= at + size && view.getUint32(stts + 12) === 1 &&
        view.getUint32(stts + 16) === 0
      ) {
        result.stepTicks = view.getUint32(stts + 20);
      }
      const elst = findBox(bytes, body, at + size, ["trak", "edts", "elst"]);
      if (elst >= 0) result.editTicks = firstEditMediaTime(view, elst);
      // stsd: full box header, entry count, then avc1 (8-byte header, 78 bytes of visual entry), then avcC.
      const avcC = stsd + 16 + 8 + 78;
      if (stsd >= 0 && avcC + 12 <= at + size && fourcc(bytes, avcC + 4) === "avcC") {
        result.codec = codecString(bytes[avcC + 9], bytes[avcC + 10], bytes[avcC + 11]);
      }
    } else if (type === "prft" && haveMoov) {
      const ntp = view.getBigUint64(body + 8);
      const media = bytes[body] === 1 ? Number(view.getBigUint64(body + 16)) : view.getUint32(body + 16);
      prftMs = epochMsFromNtp(ntp) - (media / TIMESCALE) * 1000;
    } else if (type === "moof" && haveMoov) {
      moof = parseMoof(bytes, view, at, at + size, fileAt - at);
    } else if (type === "mdat" && moof) {
      if (moof.bytes !== size - header) break; // sizes disagree: treat as torn
      if (result.fragments === 0) {
        result.startsWithKeyframe = moof.samples[0]?.key ?? false;
        result.startMs = prftMs;
      }
      result.fragments++;
      for (const sample of moof.samples) {
        sample.shown = sample.time >= result.editTicks;
        if (sample.shown) result.frames++;
      }
      result.samples.push(...moof.samples);
      result.endMs = Math.max(result.endMs, (moof.endTicks / TIMESCALE) * 1000);
      result.validBytes = fileAt + size;
      moof = null;
    }
    at += inBytes;
    fileAt += size;
  }
  return result;
}

/**
 * The samples a moof describes; `moofStart` is the moof box's offset (data offsets count from it),
 * and `shift` what to add to an offset in `bytes` to make it the file's.
 */
function parseMoof(bytes: Uint8Array, view: DataView, moofStart: number, moofEnd: number, shift: number) {
  const traf = findBox(bytes, moofStart + 8, moofEnd, ["traf"]);
  if (traf < 0) return null;
  const trafEnd = traf + view.getUint32(traf);
  const tfdt = findBox(bytes, traf + 8, trafEnd, ["tfdt"]);
  const trun = findBox(bytes, traf + 8, trafEnd, ["trun"]);
  if (tfdt < 0 || trun < 0) return null;
  const base = bytes[tfdt + 8] === 1 ? Number(view.getBigUint64(tfdt + 12)) : view.getUint32(tfdt + 12);
  const flags = view.getUint32(trun + 8) & 0xffffff;
  const count = view.getUint32(trun + 12);
  let p = trun + 16;
  let offset = moofStart + shift + (flags & 0x1 ? view.getInt32((p += 4) - 4) : 0);
  if (flags & 0x4) p += 4;
  const samples: SampleRef[] = [];
  let time = base, bytesTotal = 0;
  for (let i = 0; i < count; i++) {
    let duration = 0, size = 0, key = true;
    if (flags & 0x100) (duration = view.getUint32(p), p += 4);
    if (flags & 0x200) (size = view.getUint32(p), p += 4);
    if (flags & 0x400) (key = (view.getUint32(p) & 0x10000) === 0, p += 4);
    if (flags & 0x800) p += 4;
    samples.push({ offset, size, time, duration, key, shown: true });
    offset += size;
    time += duration;
    bytesTotal += size;
  }
  return { samples, bytes: bytesTotal, endTicks: time };
}

/** media_time of the first edit that is not empty (-1), in ticks; 0 when there is none. */
function firstEditMediaTime(view: DataView, elst: number): number {
  const version = view.getUint8(elst + 8);
  const count = view.getUint32(elst + 12);
  const entry = version === 1 ? 20 : 12;
  for (let i = 0, at = elst + 16; i < count && at + entry <= view.byteLength; i++, at += entry) {
    const mediaTime = version === 1 ? Number(view.getBigInt64(at + 8)) : view.getInt32(at + 4);
    if (mediaTime >= 0) return mediaTime;
  }
  return 0;
}

/** Offset of the box at `path` (each a child of the previous) within [from, to), or -1. */
function findBox(bytes: Uint8Array, from: number, to: number, path: string[]): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = from;
  while (at + 8 <= to) {
    const size = view.getUint32(at);
    if (size < 8 || at + size > to) return -1;
    if (fourcc(bytes, at + 4) === path[0]) {
      return path.length === 1 ? at : findBox(bytes, at + 8, at + size, path.slice(1));
    }
    at += size;
  }
  return -1;
}

function fourcc(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}
