import { basename } from "node:path";

export type EventType =
  | "chunk_saved"
  | "session_started"
  | "session_complete"
  | "chunk_recovered"
  | "chunk_deleted"
  | "clip_saved"
  | "stream_state";

/** The envelope every subscriber receives (compatible with the existing storage events). */
export interface StorageEvent {
  id: string;
  type: EventType;
  /** Epoch seconds, with milliseconds as the fraction. */
  timestamp: number;
  /** The recorder that stored it: stamped by the index when the event enters the outbox. */
  recorder?: string;
  stream: string;
  data: Record<string, unknown>;
}

/**
 * A new event with a fresh id, stamped now.
 *
 * @example
 * await index.appendEvent(storageEvent("stream_state", "default", { state: "connected", reason: "open" }));
 */
export function storageEvent(
  type: EventType,
  stream: string,
  data: Record<string, unknown>,
  now = Date.now(),
): StorageEvent {
  return { id: crypto.randomUUID(), type, timestamp: now / 1000, stream, data };
}

const round = (n: number, places: number) => Math.round(n * 10 ** places) / 10 ** places;

/** Milliseconds as seconds with millisecond precision: the seed's form for times (`1705239296.123`) and durations. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** The columns of a chunk's index row that `chunk_info` reports (a `ChunkRow` has them). */
export interface ChunkFacts {
  idx: number;
  path: string;
  start_ms: number;
  end_ms: number;
  frames: number;
  bytes: number;
  partial: number;
}

/** A chunk as metadata.json and the events describe it (the seed's `chunk_info`). */
export function chunkInfo(c: ChunkFacts) {
  const ms = c.end_ms - c.start_ms;
  return {
    index: c.idx,
    filename: basename(c.path),
    start_time: seconds(c.start_ms),
    start_time_iso: new Date(c.start_ms).toISOString(),
    duration: seconds(ms),
    frame_count: c.frames,
    average_fps: ms > 0 ? round(c.frames * 1000 / ms, 2) : 0,
    size_bytes: c.bytes,
    partial: c.partial === 1,
  };
}
