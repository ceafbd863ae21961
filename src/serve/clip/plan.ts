/** A chunk row as clip planning needs it. */
export interface ClipChunk {
  path: string;
  start_ms: number;
  end_ms: number;
  frames: number;
  codec: string;
  width: number;
  height: number;
  bytes: number;
  /** Where the archive holds a copy (docs/fleet.md); null or absent: none. */
  archive_key?: string | null;
}

export interface ClipPlan {
  chunks: ClipChunk[];
  /** Stretches of [from, to) with no video (a gap longer than the tolerance between chunks, or at an end). */
  gaps: { from: number; to: number }[];
  /** Where a change of codec or picture size ended the clip early. */
  stopped: { at: number; reason: string } | null;
}

/**
 * Chooses the chunks of a clip of [from, to): those overlapping it, in time order, up to a change of
 * codec or picture size (a clip has one sample entry). Pure.
 *
 * @example
 * const plan = planClip(await index.chunks({ stream }), from, to, 1000);
 * if (plan.chunks.length === 0) notFound();
 */
export function planClip(rows: ClipChunk[], from: number, to: number, gapMs: number): ClipPlan {
  const overlapping = rows
    .filter((c) => c.frames > 0 && c.start_ms < to && c.end_ms > from)
    .sort((a, b) => a.start_ms - b.start_ms);
  const chunks: ClipChunk[] = [];
  let stopped: ClipPlan["stopped"] = null;
  for (const c of overlapping) {
    const first = chunks[0];
    if (first && (c.codec !== first.codec || c.width !== first.width || c.height !== first.height)) {
      stopped = {
        at: c.start_ms,
        reason:
          `the stream changes from ${first.codec} ${first.width}x${first.height} to ${c.codec} ${c.width}x${c.height}`,
      };
      break;
    }
    chunks.push(c);
  }
  const gaps: ClipPlan["gaps"] = [];
  const end = stopped ? stopped.at : to;
  let covered = from;
  for (const c of chunks) {
    if (c.start_ms - covered > gapMs) gaps.push({ from: covered, to: c.start_ms });
    covered = Math.max(covered, c.end_ms);
  }
  if (chunks.length > 0 && end - covered > gapMs) gaps.push({ from: covered, to: end });
  return { chunks, gaps, stopped };
}
