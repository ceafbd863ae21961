/** A chunk as range matching needs it (times in UTC epoch ms). */
export interface ChunkSpan {
  start_ms: number;
  end_ms: number;
  frames: number;
  bytes: number;
}

/** A stretch of recorded video with no gap longer than the merge tolerance. */
export interface Range {
  from: number;
  to: number;
  frames: number;
  bytes: number;
  chunks: number;
}

/**
 * Merges chunks into sorted, non-overlapping ranges; chunks whose gap is at most `maxGapMs` join.
 * Pure: the caller passes the index's rows (an open chunk counts up to its last written fragment).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mergeRanges } from "./ranges.ts";
 * const ranges = mergeRanges([
 *   { start_ms: 0, end_ms: 60_000, frames: 1800, bytes: 1 },
 *   { start_ms: 60_500, end_ms: 90_000, frames: 900, bytes: 1 },
 * ], 1000);
 * assert.deepEqual(ranges, [{ from: 0, to: 90_000, frames: 2700, bytes: 2, chunks: 2 }]);
 * ```
 */
export function mergeRanges(chunks: ChunkSpan[], maxGapMs: number): Range[] {
  const sorted = chunks.filter((c) => c.frames > 0 && c.end_ms > c.start_ms).sort((a, b) =>
    a.start_ms - b.start_ms
  );
  const out: Range[] = [];
  for (const c of sorted) {
    const last = out[out.length - 1];
    if (last && c.start_ms - last.to <= maxGapMs) {
      last.to = Math.max(last.to, c.end_ms);
      last.frames += c.frames;
      last.bytes += c.bytes;
      last.chunks++;
    } else {
      out.push({ from: c.start_ms, to: c.end_ms, frames: c.frames, bytes: c.bytes, chunks: 1 });
    }
  }
  return out;
}

/** The ranges nearest to [from, to): the last one before it and the first one after it. */
export function nearestRanges(ranges: Range[], from: number, to: number): Range[] {
  const before = ranges.filter((r) => r.to <= from).at(-1);
  const after = ranges.find((r) => r.from >= to);
  return [before, after].filter((r): r is Range => r !== undefined);
}
