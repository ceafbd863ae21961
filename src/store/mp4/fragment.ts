import { box, fullBox, u32, u64 } from "./boxes.ts";
import { concat } from "../../runtime/bytes.ts";
import { TRACK_ID } from "./init_segment.ts";
import { ntpFromEpochMs } from "./timing.ts";

/** A sample of a fragment, with its duration in media ticks. */
export interface Sample {
  data: Uint8Array;
  duration: number;
  keyframe: boolean;
}

const SYNC = 0x02000000; // sample_depends_on = 2: an IDR needs no other picture
const NON_SYNC = 0x01010000; // depends on others, sample_is_non_sync_sample

/** What a fragment's header says of a sample: its size, duration and whether it is a keyframe. */
export type SampleInfo = Pick<Sample, "duration" | "keyframe"> & { size: number };

/**
 * prft + moof + mdat for a run of samples. `decodeTime` is the first sample's time in ticks from
 * the chunk's start; `wallMs` is the same instant on the wall clock, carried in the prft box so that
 * a file tells its own wall-clock times without the index.
 *
 * @example
 * await file.write(fragment(1, samples, 0, Date.now()));
 */
export function fragment(
  sequence: number,
  samples: Sample[],
  decodeTime: number,
  wallMs: number,
): Uint8Array {
  const head = fragmentHeader(
    sequence,
    samples.map((s) => ({ size: s.data.length, duration: s.duration, keyframe: s.keyframe })),
    decodeTime,
    wallMs,
  );
  const out = new Uint8Array(head.length + head.payload);
  out.set(head);
  let at = head.length;
  for (const s of samples) {
    out.set(s.data, at);
    at += s.data.length;
  }
  return out;
}

/**
 * prft + moof + the mdat box's header, for samples whose bytes follow it as they are (a clip passes
 * a chunk's sample data through from the file this way). `payload` is the bytes they take.
 */
export function fragmentHeader(
  sequence: number,
  samples: SampleInfo[],
  decodeTime: number,
  wallMs: number,
): Uint8Array & { payload: number } {
  const prft = fullBox("prft", 1, 0, u32(TRACK_ID), u64(ntpFromEpochMs(wallMs)), u64(decodeTime));
  const entries = new Uint8Array(samples.length * 12);
  const view = new DataView(entries.buffer);
  let payload = 0;
  samples.forEach((s, i) => {
    view.setUint32(i * 12, s.duration);
    view.setUint32(i * 12 + 4, s.size);
    view.setUint32(i * 12 + 8, s.keyframe ? SYNC : NON_SYNC);
    payload += s.size;
  });
  const trunFlags = 0x000001 | 0x000100 | 0x000200 | 0x000400; // offset, duration, size, flags
  const moofSize = 8 + 16 + 8 + 16 + 20 + (20 + entries.length);
  const moof = box(
    "moof",
    fullBox("mfhd", 0, 0, u32(sequence)),
    box(
      "traf",
      fullBox("tfhd", 0, 0x020000, u32(TRACK_ID)), // default-base-is-moof
      fullBox("tfdt", 1, 0, u64(decodeTime)),
      fullBox("trun", 0, trunFlags, u32(samples.length), u32(moofSize + 8), entries),
    ),
  );
  if (moof.length !== moofSize) throw new Error(`moof size ${moof.length}, expected ${moofSize}`);
  const head = concat([prft, moof, u32(8 + payload), MDAT]);
  return Object.assign(head, { payload });
}

const MDAT = new TextEncoder().encode("mdat");
