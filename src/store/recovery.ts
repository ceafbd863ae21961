import { basename, dirname, join, relative } from "node:path";
import { deleteChunk } from "./chunk_deletion.ts";
import type { ChunkIndex, ChunkRow } from "./index/chunk_index.ts";
import { chunkInfo, storageEvent } from "../publish/envelope.ts";
import { logger } from "../runtime/log.ts";
import { type MetadataSettings, writeSessionMetadata } from "./metadata.ts";
import type { Metrics } from "../runtime/metrics.ts";
import { scanChunk } from "./mp4/fragment_reader.ts";
import { toMs } from "./mp4/timing.ts";
import type { OpenChunks } from "./open_chunks.ts";
import type { OpenSession } from "../record/messages.ts";
import { entriesOf, fsyncDir, type Layout, parseChunkPath } from "./layout.ts";

export interface RecoveryOptions {
  index: ChunkIndex;
  layout: Layout;
  /** The stream of files found directly under the root (single-stream layout). */
  defaultStream: string;
  settings: MetadataSettings;
  metrics: Metrics;
  /** Chunks a live writer still appends to: left alone. */
  openChunks: OpenChunks;
  /** Only this stream's chunks (after its writer restarted); all streams when absent. */
  stream?: string;
  videoUrlOf(stream: string): string;
}

export interface RecoveryReport {
  recovered: number;
  missing: number;
  orphans: number;
  removedEmpty: number;
  deletionsFinished: number;
  /** Per stream, the open session a new recording may continue. */
  resumable: Map<string, OpenSession>;
}

/**
 * Replays recovery from the index: chunks still `recording` get their torn tail cut after the last
 * complete fragment and become `recovered` (partial) with end, frames and bytes read back from the
 * file; chunk files the index lacks are indexed; rows whose file is gone become `missing`; the
 * touched sessions' metadata.json is rewritten. Files are never rewritten, only truncated.
 *
 * @example
 * const report = await recover({ index, layout, defaultStream: "default", settings, metrics, openChunks, videoUrlOf });
 */
export async function recover(o: RecoveryOptions): Promise<RecoveryReport> {
  const log = logger("recovery", o.stream);
  const report: RecoveryReport = {
    recovered: 0,
    missing: 0,
    orphans: 0,
    removedEmpty: 0,
    deletionsFinished: 0,
    resumable: new Map(),
  };
  const touched = new Set<string>(); // "stream\0session"
  const root = o.layout.root;
  const rows = await o.index.chunks(o.stream ? { stream: o.stream } : {});
  const known = new Set(rows.map((r) => r.path));

  for (const row of rows) {
    if (o.openChunks.has(row.path) || row.status === "missing" || row.status === "deleted") continue;
    if (row.status === "deleting") {
      // A deletion a crash interrupted (before or after the unlink): finish it.
      await deleteChunk(
        o.index,
        root,
        row.path,
        storageEvent("chunk_deleted", row.stream, {
          session_id: row.session_id,
          index: row.idx,
          filename: basename(row.path),
          reason: "interrupted",
        }),
      );
      log.warn("interrupted deletion finished", { path: row.path });
      report.deletionsFinished++;
      touched.add(`${row.stream}\0${row.session_id}`);
      continue;
    }
    const size = await fileSize(join(root, row.path));
    if (size === null) {
      await o.index.setStatus(row.path, "missing");
      log.warn("chunk file missing", { path: row.path, was: row.status });
      report.missing++;
      touched.add(`${row.stream}\0${row.session_id}`);
    } else if (row.status === "recording") {
      if (await repair(o, row.path, row.stream, row)) report.recovered++;
      else report.removedEmpty++;
      touched.add(`${row.stream}\0${row.session_id}`);
    }
  }

  // In name order, so that a rebuilt session starts at its first chunk.
  for (const rel of (await Array.fromAsync(chunkFiles(root))).sort()) {
    if (known.has(rel) || o.openChunks.has(rel)) continue;
    const parsed = parseChunkPath(rel);
    if (!parsed) continue;
    const stream = o.layout.multiStream
      ? parsed.stream
      : (parsed.stream === undefined ? o.defaultStream : undefined);
    if (!stream || (o.stream && stream !== o.stream)) continue;
    const existing = await o.index.chunk(rel);
    if (existing) continue;
    if (await repair(o, rel, stream, null)) {
      report.orphans++;
      touched.add(`${stream}\0${parsed.sessionId}`);
    } else report.removedEmpty++;
  }

  // Only the newest open session of a stream can continue; older ones ended where their video did.
  const open = [];
  for (const session of await o.index.openSessions()) {
    if (o.stream && session.stream !== o.stream) continue;
    const chunks = await o.index.chunks({ stream: session.stream, sessionId: session.session_id });
    open.push({ session, lastFrameMs: Math.max(session.start_ms, ...chunks.map((c) => c.end_ms)) });
  }
  open.sort((a, b) => b.lastFrameMs - a.lastFrameMs);
  for (const { session, lastFrameMs } of open) {
    if (!report.resumable.has(session.stream)) {
      report.resumable.set(session.stream, { sessionId: session.session_id, dir: session.dir, lastFrameMs });
    } else {
      await o.index.endSession(session.stream, session.session_id, lastFrameMs);
      touched.add(`${session.stream}\0${session.session_id}`);
    }
  }

  for (const key of touched) {
    const [stream, sessionId] = key.split("\0");
    await writeSessionMetadata(o.index, root, stream, sessionId, o.settings, Date.now());
  }
  if (
    report.recovered || report.missing || report.orphans || report.removedEmpty || report.deletionsFinished
  ) {
    log.info("recovery done", { ...report, resumable: [...report.resumable.keys()] });
  }
  return report;
}

/**
 * Cuts a chunk after its last complete fragment and records what it holds. A file with no complete
 * fragment holds no video: it is removed with its row. Returns false in that case.
 */
async function repair(
  o: RecoveryOptions,
  rel: string,
  stream: string,
  row: ChunkRow | null,
): Promise<boolean> {
  const log = logger("recovery", stream);
  const path = join(o.layout.root, rel);
  const bytes = await Deno.readFile(path);
  const scan = scanChunk(bytes);
  const parsed = parseChunkPath(rel)!;
  if (scan.frames === 0) {
    await Deno.remove(path);
    if (row) await o.index.deleteChunk(rel);
    log.warn("chunk held no complete fragment: removed", { path: rel, bytes: bytes.length });
    return false;
  }
  if (scan.validBytes < bytes.length) {
    await Deno.truncate(path, scan.validBytes);
    const file = await Deno.open(path, { write: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await fsyncDir(dirname(path));
  }
  // Media time 0 on the wall clock; the chunk starts at its first shown frame (after a decode-only lead).
  const zeroMs = scan.startMs;
  const startMs = zeroMs === null
    ? row?.start_ms ?? (await Deno.stat(path)).mtime?.getTime() ?? 0
    : zeroMs + toMs(scan.editTicks);
  const facts = {
    end_ms: Math.round((zeroMs ?? startMs) + scan.endMs),
    frames: scan.frames,
    bytes: scan.validBytes,
    partial: 1,
  };
  const recovered = {
    id: row?.id ?? 0,
    stream,
    session_id: parsed.sessionId,
    idx: parsed.index,
    path: rel,
    start_ms: Math.round(startMs),
    codec: row?.codec ?? scan.codec,
    width: scan.width,
    height: scan.height,
    status: "recovered" as const,
    close_reason: "recovered",
    ...facts,
  };
  const event = storageEvent("chunk_recovered", stream, {
    session_id: parsed.sessionId,
    chunk_info: chunkInfo(recovered),
    frames_recovered: scan.frames,
    bytes_truncated: bytes.length - scan.validBytes,
  });
  if (row) {
    await o.index.finish(rel, facts, "recovered", "recovered", event);
  } else {
    const dir = dirname(dirname(rel));
    await o.index.insertSession({
      stream,
      session_id: parsed.sessionId,
      dir,
      start_ms: Math.round(startMs),
      video_url: o.videoUrlOf(stream),
    });
    const { id: _id, close_reason: _reason, ...insert } = recovered;
    await o.index.insertChunk(insert, event);
  }
  o.metrics.chunksRecovered.inc({ stream });
  log.warn("chunk recovered", {
    path: rel,
    frames: scan.frames,
    bytesTruncated: bytes.length - scan.validBytes,
    indexed: row !== null,
  });
  return true;
}

async function fileSize(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Chunk files under the root, relative to it: `[stream/]session/video_segments/chunk_NNNN.mp4`. */
async function* chunkFiles(root: string, dir = root, depth = 0): AsyncGenerator<string> {
  for (const e of await entriesOf(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory && depth < 3) yield* chunkFiles(root, path, depth + 1);
    else if (e.isFile && e.name.endsWith(".mp4")) yield relative(root, path);
  }
}
