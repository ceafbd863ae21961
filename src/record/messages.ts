/**
 * Every message that crosses between actors. Actors own their state and talk only through these.
 * Per stream: connection -> segmenter -> writer -> indexer (shared by all streams).
 */
import type { Frame } from "../ingest/h264/frame_parser.ts";
import type { CameraFrame } from "../ingest/jpeg/multipart.ts";
import type { SegmentCommand } from "./segment_machine.ts";

export type { Frame };

/** To a stream's segmenter. */
export type SegmenterMsg =
  | { type: "frame"; frame: Frame }
  | { type: "tick"; now: number }
  /**
   * The writer's open chunk is gone (it restarted, or a full disk ended or refused the chunk):
   * wait for the next keyframe; the frames until then are lost for this reason.
   */
  | { type: "writer-reset"; reason: "writer_restart" | "disk_full" };

/** To a camera stream's encoder, from its camera. */
export type EncoderMsg = { type: "jpeg"; frame: CameraFrame };

/** To a stream's writer: the segment machine's decisions in order, the frames, and its own clock tick. */
export type WriterMsg =
  | Exclude<SegmentCommand, { type: "write" | "skip" | "chunk-open" }>
  /** `carry`: the GOP before `frame`, written first as decode-only samples (empty at a keyframe). */
  | { type: "chunk-open"; frame: Frame; carry: readonly Frame[] }
  | { type: "frame"; frame: Frame }
  | { type: "tick"; now: number };

/** A chunk file as the writer opened it. */
export interface ChunkOpened {
  stream: string;
  sessionId: string;
  index: number;
  /** Relative to STORAGE_PATH. */
  path: string;
  startMs: number;
  codec: string;
  width: number;
  height: number;
}

/** To the indexer. */
export type IndexerMsg =
  | {
    type: "session-started";
    stream: string;
    sessionId: string;
    dir: string;
    startMs: number;
    videoUrl: string;
  }
  | { type: "session-ended"; stream: string; sessionId: string; endMs: number }
  | { type: "stream-state"; stream: string; state: "connected" | "disconnected"; reason: string }
  /** A chunk that never got a frame (its first fragment hit a full disk): its file is gone. */
  | { type: "chunk-discarded"; stream: string; path: string }
  | { type: "chunk-opened"; chunk: ChunkOpened }
  /** A fragment was written: the chunk so far. */
  | ({ type: "chunk-progress" } & ChunkSoFar)
  | ({ type: "chunk-closed"; partial: boolean; reason: string } & ChunkSoFar)
  /**
   * After a stream's writer restarted: repair its chunks (recovery) in the indexer's turn, after
   * what the old writer sent, so that nothing else writes the index while the indexer runs.
   */
  | {
    type: "recover";
    stream: string;
    resolve: (open: OpenSession | null) => void;
    reject: (e: unknown) => void;
  }
  /** What the janitor's walk found the index does not say: applied, each finding checked again, in the indexer's turn. */
  | { type: "audit"; findings: AuditFindings };

/** What a full walk of the files found that the index does not say (src/store/recovery.ts `audit`). */
export interface AuditFindings {
  /** Closed chunks (`complete`, `recovered`) whose file was not there. */
  missing: string[];
  /** Chunk files with no row. */
  orphans: string[];
  /** Bytes of the chunk files and the index files under the root. */
  onDiskBytes: number;
}

/** A session recovery found open, that a new recording may continue. */
export interface OpenSession {
  sessionId: string;
  dir: string;
  lastFrameMs: number;
  /** The highest chunk number the index has for it, deleted chunks included: numbers are never reused. */
  lastIdx: number;
}

/** What a chunk holds, as the writer reports it after each fragment and at its close. */
export interface ChunkSoFar {
  stream: string;
  sessionId: string;
  path: string;
  endMs: number;
  frames: number;
  bytes: number;
}

/** Bytes a message holds in a mailbox: frames count, control messages do not. */
export function messageBytes(msg: { type: string; frame?: Frame | CameraFrame }): number {
  return !msg.frame ? 0 : "data" in msg.frame ? msg.frame.data.length : msg.frame.jpeg.length;
}
