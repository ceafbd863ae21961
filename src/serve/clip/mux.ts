import { u32, u64 } from "../../store/mp4/boxes.ts";
import { concat } from "../../runtime/bytes.ts";
import { fragmentHeader } from "../../store/mp4/fragment.ts";
import { type SampleRef, scanChunk } from "../../store/mp4/fragment_reader.ts";
import { ftyp, movie, type SampleTables } from "../../store/mp4/init_segment.ts";
import { toMs, toTicks } from "../../store/mp4/timing.ts";
import { writeAll } from "../../store/layout.ts";
import type { ClipChunk, ClipPlan } from "./plan.ts";
import type { ChunkBytes, OpenChunk } from "./chunk_bytes.ts";

/** A planned chunk as read back: its samples in the clip, with their wall-clock start times. */
interface ReadChunk {
  path: string;
  samples: SampleRef[];
  /** Wall-clock ms of each sample. */
  wall: number[];
  /** Wall-clock ms of the first sample presented (after a decode-only lead). */
  shownFrom: number;
  width: number;
  height: number;
  sampleEntry: Uint8Array;
  stepTicks: number | null;
}

/** Where the clip's playback starts and ends, and how many frames it shows. */
export interface ClipSummary {
  startMs: number;
  endMs: number;
  frames: number;
  bytes: number;
}

const FRAGMENT_MS = 1000;

/**
 * Reads a chunk and keeps the samples of [from, to): in the clip's first chunk from the keyframe
 * at or before `from` (decoded, not shown; it may lie in the chunk's decode-only lead), and every
 * sample that starts before `to`. A later chunk's lead is left out: the clip holds those frames.
 */
async function readChunk(
  open: OpenChunk,
  chunk: ClipChunk,
  from: number,
  to: number,
  first: boolean,
): Promise<ReadChunk> {
  const path = chunk.path;
  const source = await open(chunk);
  let bytes: Uint8Array, size: number;
  try {
    ({ bytes, size } = await readBoxes(source));
  } finally {
    source.close();
  }
  const scan = scanChunk(bytes, size);
  if (scan.startMs === null || !scan.stsd) throw new Error(`${path} has no readable fragments`);
  const startMs = scan.startMs;
  const wallOf = (s: SampleRef) => startMs + toMs(s.time);
  let begin = 0;
  if (first) {
    for (let i = 0; i < scan.samples.length && wallOf(scan.samples[i]) <= from; i++) {
      if (scan.samples[i].key) begin = i;
    }
  } else {
    const skip = (s: SampleRef) => !s.shown || wallOf(s) + toMs(s.duration) <= from;
    while (begin < scan.samples.length && skip(scan.samples[begin])) begin++;
  }
  let end = begin;
  while (end < scan.samples.length && wallOf(scan.samples[end]) < to) end++;
  const samples = scan.samples.slice(begin, end);
  const sampleEntry = bytes.slice(scan.stsd.offset + 16, scan.stsd.offset + scan.stsd.size);
  return {
    path,
    samples,
    wall: samples.map(wallOf),
    shownFrom: startMs + toMs(scan.editTicks),
    width: scan.width,
    height: scan.height,
    sampleEntry,
    stepTicks: scan.stepTicks,
  };
}

/**
 * The edit that shows [from, to) of a clip whose first chunk is `first` and whose last sample ends
 * at `lastEnd`. It starts at the picture on screen at `from` (or the first after it, in a gap),
 * never partway into one (a player hides a picture its edit starts after), and never in the
 * chunk's decode-only lead.
 */
function edit(from: number, to: number, first: ReadChunk, lastEnd: number) {
  const { wall, samples } = first;
  const firstWall = wall[0];
  // The first picture still on screen at `from`: it started at or before it, or after a gap.
  const onScreen = wall.find((w, i) => w + toMs(samples[i].duration) > from) ?? from;
  const shownFrom = Math.max(onScreen, first.shownFrom);
  return {
    mediaTime: toTicks(shownFrom - firstWall),
    durationMs: Math.max(0, Math.min(to, lastEnd) - shownFrom),
  };
}

/**
 * The clip as fragmented MP4, produced chunk by chunk: the first bytes go out after the first
 * chunk's boxes are read; its sample data follows from the file in reads of up to 1 MB, each
 * pulled when the consumer wants it (backpressure). It starts at the keyframe at or before `from`
 * (`startMs`): players ignore edit lists in fragmented files. Timestamps keep the recorded
 * spacing (gaps stay gaps).
 *
 * @example
 * const clip = await fragmentedClip((c) => chunkFile(root, c.path), plan, from, to);
 * return new Response(ReadableStream.from(clip.pieces), { headers: { "x-clip-from": iso(clip.startMs) } });
 */
export async function fragmentedClip(
  open: OpenChunk,
  plan: ClipPlan,
  from: number,
  to: number,
): Promise<{ startMs: number; pieces: AsyncGenerator<Uint8Array> }> {
  const first = await readChunk(open, plan.chunks[0], from, to, true);
  if (first.samples.length === 0) throw new Error(`${plan.chunks[0].path} has no frames before ${to}`);
  const clipStart = first.wall[0];
  async function* pieces(): AsyncGenerator<Uint8Array> {
    yield concat([
      ftyp(),
      // The first chunk's step, as its file names it: ffmpeg's frame rate for a clip of few frames.
      movie({
        width: first.width,
        height: first.height,
        sampleEntry: first.sampleEntry,
        stepTicks: first.stepTicks ?? undefined,
      }),
    ]);
    let sequence = 0;
    for (let i = 0; i < plan.chunks.length; i++) {
      const chunk = i === 0 ? first : await readChunk(open, plan.chunks[i], from, to, false);
      // Runs of up to a second, each under a header made here, its samples' bytes passed through
      // from the file as they are (a run's samples are contiguous there: it never spans two fragments).
      const runs: Run[] = [];
      for (const [a, b] of sampleRuns(chunk.samples, (a, b) => chunk.wall[b] - chunk.wall[a] < FRAGMENT_MS)) {
        const run = chunk.samples.slice(a, b);
        runs.push({
          head: fragmentHeader(
            ++sequence,
            run.map((r) => ({ size: r.size, duration: r.duration, keyframe: r.key })),
            toTicks(chunk.wall[a] - clipStart),
            chunk.wall[a],
          ),
          from: run[0].offset,
          to: run.at(-1)!.offset + run.at(-1)!.size,
        });
      }
      yield* passThrough(open, plan.chunks[i], runs);
    }
  }
  return { startMs: clipStart, pieces: pieces() };
}

/**
 * Writes the clip as a faststart MP4 (moov before mdat) to `file`. Two passes over the chunks:
 * the first builds the sample tables from their boxes, the second copies the sample data in reads
 * of up to 1 MB.
 *
 * @example
 * const summary = await faststartClip((c) => chunkFile(root, c.path), plan, from, to, file);
 */
export async function faststartClip(
  open: OpenChunk,
  plan: ClipPlan,
  from: number,
  to: number,
  file: Deno.FsFile,
  onProgress: (fraction: number) => void = () => {},
): Promise<ClipSummary> {
  const parts: { chunk: ClipChunk; refs: SampleRef[] }[] = [];
  const tables: SampleTables = { durations: [], sizes: [], sync: [], chunks: [] };
  let entry: Uint8Array | null = null, width = 0, height = 0, first: ReadChunk | null = null;
  let lastWall = 0, lastEnd = 0;
  for (const [i, c] of plan.chunks.entries()) {
    const chunk = await readChunk(open, c, from, to, i === 0);
    if (chunk.samples.length === 0) continue;
    if (!entry) {
      entry = chunk.sampleEntry.slice();
      width = chunk.width;
      height = chunk.height;
      first = chunk;
    } else {
      // The previous sample lasts until this one: the recorded spacing, gaps included.
      tables.durations[tables.durations.length - 1] = Math.max(1, toTicks(chunk.wall[0] - lastWall));
    }
    for (const s of chunk.samples) {
      tables.durations.push(s.duration);
      tables.sizes.push(s.size);
      if (s.key) tables.sync.push(tables.sizes.length);
    }
    tables.chunks.push({ offset: 0, samples: chunk.samples.length });
    lastWall = chunk.wall.at(-1)!;
    lastEnd = lastWall + toMs(chunk.samples.at(-1)!.duration);
    parts.push({ chunk: c, refs: chunk.samples });
  }
  if (!entry || !first) throw new Error("no frames in the range");
  const payload = tables.sizes.reduce((a, b) => a + b, 0);
  const large = payload + 8 > 0xffffffff;
  const mdatHeader = large ? 16 : 8;
  const options = {
    width,
    height,
    sampleEntry: entry,
    tables,
    edit: edit(from, to, first, lastEnd),
  };
  // Offsets do not change the moov's size (stco or co64 is decided by the payload): measure, then fill.
  const head = ftyp().length + movie(options).length;
  let offset = head + mdatHeader;
  for (const [k, p] of parts.entries()) {
    tables.chunks[k].offset = offset;
    offset += p.refs.reduce((a, s) => a + s.size, 0);
  }
  await writeAll(file, concat([ftyp(), movie(options)]));
  const mdat = new TextEncoder().encode("mdat");
  await writeAll(file, large ? concat([u32(1), mdat, u64(payload + 16)]) : concat([u32(payload + 8), mdat]));
  for (const [k, p] of parts.entries()) {
    // Samples of one fragment are contiguous in the chunk file: copy them in runs.
    const runs = [...sampleRuns(p.refs)].map(([a, b]) => ({
      from: p.refs[a].offset,
      to: p.refs[b - 1].offset + p.refs[b - 1].size,
    }));
    for await (const piece of passThrough(open, p.chunk, runs)) await writeAll(file, piece);
    onProgress((k + 1) / parts.length);
  }
  const e = options.edit;
  const startMs = first.wall[0] + toMs(e.mediaTime);
  return {
    startMs,
    endMs: startMs + e.durationMs,
    frames: tables.sizes.length,
    bytes: head + mdatHeader + payload,
  };
}

/** Largest single read of sample data: big enough to run at disk speed, small enough to hold per client. */
const READ_BYTES = 1 << 20;

/** A byte range of a chunk file to pass through, after `head` if given. */
interface Run {
  head?: Uint8Array;
  from: number;
  to: number;
}

/**
 * [a, b) index ranges of `samples` whose bytes are contiguous in the file (one fragment's), cut
 * further where `together(a, i)` says sample i no longer goes with the run starting at a.
 */
function* sampleRuns(
  samples: SampleRef[],
  together: (a: number, i: number) => boolean = () => true,
): Generator<[number, number]> {
  for (let a = 0; a < samples.length;) {
    let b = a + 1;
    while (
      b < samples.length && samples[b].offset === samples[b - 1].offset + samples[b - 1].size &&
      together(a, b)
    ) b++;
    yield [a, b];
    a = b;
  }
}

/**
 * Each run's head, then its bytes of the chunk. The chunk is read forward in blocks of READ_BYTES
 * (the boxes between runs are read over, not sought past: a few hundred bytes), and each run goes
 * out as slices of those blocks, not copies.
 */
async function* passThrough(open: OpenChunk, chunk: ClipChunk, runs: Run[]): AsyncGenerator<Uint8Array> {
  if (runs.length === 0) return;
  const source = await open(chunk);
  try {
    const last = runs.at(-1)!.to;
    const block = new Window(source, last);
    for (const run of runs) {
      if (run.head) yield run.head;
      for (let at = run.from; at < run.to;) {
        if (!await block.cover(at, at + 1, READ_BYTES)) {
          throw new Error(`unexpected end of ${chunk.path} at ${at}, expected ${last}`);
        }
        const end = Math.min(run.to, block.start + block.bytes.length);
        yield block.bytes.subarray(at - block.start, end - block.start);
        at = end;
      }
    }
  } finally {
    source.close();
  }
}

/** A window over a chunk read forward: each read is a buffer of its own (slices of an earlier one stay valid). */
class Window {
  bytes: Uint8Array = new Uint8Array(0);
  /** The chunk's offset of `bytes[0]`. */
  start = 0;

  /** `end`: where reads stop (the chunk's size, or the last byte wanted). */
  constructor(readonly source: ChunkBytes, readonly end: number) {}

  /** Makes the window hold [from, to), with one read of at least `min` bytes (up to `end`) if it does not. False at the end of the chunk. */
  async cover(from: number, to: number, min: number): Promise<boolean> {
    if (from >= this.start && to <= this.start + this.bytes.length) return true;
    const want = Math.min(this.end, Math.max(to, from + min));
    this.bytes = await this.source.read(from, want);
    this.start = from;
    return this.bytes.length === want - from;
  }
}

/** Bytes read at each box of a chunk file: a fragment's prft, moof and mdat header fit in one. */
const BOX_WINDOW = 4096;

/**
 * A chunk's boxes, each mdat with its header only (for `scanChunk(bytes, size)`): a few hundred
 * bytes a fragment in memory, one read a fragment.
 */
async function readBoxes(source: ChunkBytes): Promise<{ bytes: Uint8Array; size: number }> {
  const size = source.size;
  const window = new Window(source, size);
  const parts: Uint8Array[] = [];
  for (let at = 0; at + 8 <= size;) {
    if (!await window.cover(at, Math.min(size, at + 16), BOX_WINDOW)) break;
    const head = window.bytes.subarray(at - window.start);
    const view = new DataView(head.buffer, head.byteOffset);
    const large = view.getUint32(0) === 1;
    const boxSize = large ? Number(view.getBigUint64(8)) : view.getUint32(0);
    if (boxSize < 8 || at + boxSize > size) break; // a torn tail: scanChunk stops here too
    const keep = String.fromCharCode(...head.subarray(4, 8)) === "mdat" ? (large ? 16 : 8) : boxSize;
    if (!await window.cover(at, at + keep, BOX_WINDOW)) break;
    parts.push(window.bytes.slice(at - window.start, at - window.start + keep));
    at += boxSize;
  }
  return { bytes: concat(parts), size };
}
