import { join } from "node:path";
import { concat, u32, u64 } from "../../store/mp4/boxes.ts";
import { fragment, type Sample } from "../../store/mp4/fragment.ts";
import { type SampleRef, scanChunk } from "../../store/mp4/fragment_reader.ts";
import { ftyp, movie, type SampleTables } from "../../store/mp4/init_segment.ts";
import { toMs, toTicks } from "../../store/mp4/timing.ts";
import { writeAll } from "../../store/layout.ts";
import type { ClipPlan } from "./plan.ts";

/** A planned chunk as read back: its samples in the clip, with their wall-clock start times. */
interface ReadChunk {
  bytes: Uint8Array;
  samples: SampleRef[];
  /** Wall-clock ms of each sample. */
  wall: number[];
  /** Wall-clock ms of the first sample presented (after a decode-only lead). */
  shownFrom: number;
  width: number;
  height: number;
  sampleEntry: Uint8Array;
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
  root: string,
  path: string,
  from: number,
  to: number,
  first: boolean,
): Promise<ReadChunk> {
  const bytes = await Deno.readFile(join(root, path));
  const scan = scanChunk(bytes);
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
  const sampleEntry = bytes.subarray(scan.stsd.offset + 16, scan.stsd.offset + scan.stsd.size);
  return {
    bytes,
    samples,
    wall: samples.map(wallOf),
    shownFrom: startMs + toMs(scan.editTicks),
    width: scan.width,
    height: scan.height,
    sampleEntry,
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
 * chunk is read, long before the last one is. It starts at the keyframe at or before `from`
 * (`startMs`): players ignore edit lists in fragmented files. Timestamps keep the recorded
 * spacing (gaps stay gaps).
 *
 * @example
 * const clip = await fragmentedClip(root, plan, from, to);
 * return new Response(ReadableStream.from(clip.pieces), { headers: { "x-clip-from": iso(clip.startMs) } });
 */
export async function fragmentedClip(
  root: string,
  plan: ClipPlan,
  from: number,
  to: number,
): Promise<{ startMs: number; pieces: AsyncGenerator<Uint8Array> }> {
  const first = await readChunk(root, plan.chunks[0].path, from, to, true);
  if (first.samples.length === 0) throw new Error(`${plan.chunks[0].path} has no frames before ${to}`);
  const clipStart = first.wall[0];
  async function* pieces(): AsyncGenerator<Uint8Array> {
    yield concat([
      ftyp(),
      movie({ width: first.width, height: first.height, sampleEntry: first.sampleEntry }),
    ]);
    let sequence = 0;
    for (let i = 0; i < plan.chunks.length; i++) {
      const chunk = i === 0 ? first : await readChunk(root, plan.chunks[i].path, from, to, false);
      let run: Sample[] = [];
      let runStart = 0;
      for (let s = 0; s <= chunk.samples.length; s++) {
        const cut = s === chunk.samples.length ||
          (run.length > 0 && chunk.wall[s] - chunk.wall[runStart] >= FRAGMENT_MS);
        if (cut && run.length > 0) {
          yield fragment(++sequence, run, toTicks(chunk.wall[runStart] - clipStart), chunk.wall[runStart]);
          run = [];
        }
        if (s === chunk.samples.length) break;
        if (run.length === 0) runStart = s;
        const ref = chunk.samples[s];
        run.push({
          data: chunk.bytes.subarray(ref.offset, ref.offset + ref.size),
          duration: ref.duration,
          keyframe: ref.key,
        });
      }
    }
  }
  return { startMs: clipStart, pieces: pieces() };
}

/**
 * Writes the clip as a faststart MP4 (moov before mdat) to `file`. Two passes over the chunks:
 * the first builds the sample tables, the second copies the samples; one chunk is in memory at a time.
 *
 * @example
 * const summary = await faststartClip(root, plan, from, to, file);
 */
export async function faststartClip(
  root: string,
  plan: ClipPlan,
  from: number,
  to: number,
  file: Deno.FsFile,
  onProgress: (fraction: number) => void = () => {},
): Promise<ClipSummary> {
  const parts: { path: string; refs: SampleRef[] }[] = [];
  const tables: SampleTables = { durations: [], sizes: [], sync: [], chunks: [] };
  let entry: Uint8Array | null = null, width = 0, height = 0, first: ReadChunk | null = null;
  let lastWall = 0, lastEnd = 0;
  for (const [i, c] of plan.chunks.entries()) {
    const chunk = await readChunk(root, c.path, from, to, i === 0);
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
    parts.push({ path: c.path, refs: chunk.samples });
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
    const bytes = await Deno.readFile(join(root, p.path));
    // Samples of one fragment are contiguous in the chunk file: copy them in runs.
    for (let a = 0; a < p.refs.length;) {
      let b = a + 1;
      while (b < p.refs.length && p.refs[b].offset === p.refs[b - 1].offset + p.refs[b - 1].size) b++;
      await writeAll(file, bytes.subarray(p.refs[a].offset, p.refs[b - 1].offset + p.refs[b - 1].size));
      a = b;
    }
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
