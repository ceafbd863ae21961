import { join } from "node:path";
import { chunkInfo, seconds } from "../publish/envelope.ts";
import { type ChunkIndex, type ChunkRow, playable, type SessionRow } from "./index/chunk_index.ts";
import { writeFileAtomic } from "./layout.ts";

export interface MetadataSettings {
  chunkMs: number;
  idleMs: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const fps = (frames: number, ms: number) => ms > 0 ? Math.round((frames * 1000 / ms) * 100) / 100 : 0;

/**
 * The content of a session's metadata.json, from its index rows, in the seed's schema: times as
 * epoch seconds with milliseconds (ISO 8601 copies under `*_iso`), `codec` "H.264". Chunks that
 * are gone from disk stay listed with their status, so the file tells what was recorded and what
 * is left.
 *
 * @example
 * await writeFileAtomic(path, JSON.stringify(buildMetadata(session, chunks, settings, Date.now()), null, 2));
 */
export function buildMetadata(
  session: SessionRow,
  chunks: ChunkRow[],
  settings: MetadataSettings,
  now: number,
) {
  const kept = chunks.filter(playable);
  const totalFrames = kept.reduce((n, c) => n + c.frames, 0);
  const mediaMs = kept.reduce((n, c) => n + (c.end_ms - c.start_ms), 0);
  const partial = chunks.filter((c) => c.partial === 1).map((c) => c.idx);
  const lastEnd = kept.length > 0 ? Math.max(...kept.map((c) => c.end_ms)) : null;
  const meta: Record<string, unknown> = {
    session_id: session.session_id,
    stream: session.stream,
    start_time: seconds(session.start_ms),
    start_time_iso: iso(session.start_ms),
    video_url: session.video_url,
    chunk_duration_seconds: seconds(settings.chunkMs),
    idle_timeout_seconds: seconds(settings.idleMs),
    codec: "H.264",
    codec_string: chunks[0]?.codec ?? null,
    chunks: chunks.map((c) => ({
      ...chunkInfo(c),
      status: c.status,
      width: c.width,
      height: c.height,
    })),
    partial_chunks: partial,
    partial_chunks_count: partial.length,
    total_frames: totalFrames,
    estimated_fps: fps(totalFrames, mediaMs),
    current_chunk_frames: chunks.find((c) => c.status === "recording")?.frames ?? 0,
    last_frame_time: lastEnd === null ? null : seconds(lastEnd),
    last_updated: seconds(now),
    last_updated_iso: iso(now),
  };
  if (session.status === "ended" && session.end_ms !== null) {
    meta.end_time = seconds(session.end_ms);
    meta.end_time_iso = iso(session.end_ms);
    meta.duration = seconds(session.end_ms - session.start_ms);
    meta.total_chunks = kept.length;
    meta.total_size_bytes = kept.reduce((n, c) => n + c.bytes, 0);
  }
  return meta;
}

/**
 * Rewrites a session's metadata.json from the index, atomically. A session whose folder is gone
 * (deleted by hand, or a new disk under a shared index's RECORDER_ID) has no file to keep: its
 * chunks are `missing` in the index, and nothing is written.
 *
 * @example
 * await writeSessionMetadata(index, "recordings", "default", "20261121_140210", settings, Date.now());
 */
export async function writeSessionMetadata(
  index: ChunkIndex,
  root: string,
  stream: string,
  sessionId: string,
  settings: MetadataSettings,
  now: number,
): Promise<void> {
  const session = await index.getSession(stream, sessionId);
  if (!session) return;
  const chunks = await index.chunks({ stream, sessionId });
  const meta = buildMetadata(session, chunks, settings, now);
  try {
    await writeFileAtomic(join(root, session.dir, "metadata.json"), JSON.stringify(meta, null, 2) + "\n");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
