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
import type { AuditFindings, OpenSession } from "../record/messages.ts";
import { chunksDir, entriesOf, fsyncDir, type Layout, parseChunkPath, TMP_DIR } from "./layout.ts";

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

const emptyReport = (): RecoveryReport => ({
  recovered: 0,
  missing: 0,
  orphans: 0,
  removedEmpty: 0,
  deletionsFinished: 0,
  resumable: new Map(),
});

/**
 * Replays recovery from the index, at a cost that does not grow with history: only what a crash
 * can leave behind is looked at. Chunks still `recording` get their torn tail cut after the last
 * complete fragment and become `recovered` (partial) with end, frames and bytes read back from the
 * file (or `missing` if the file is gone); interrupted deletions are finished; chunk files the
 * index lacks are indexed, looked for only in the sessions it holds open and in folders it does
 * not know (all of them when the index is new: a rebuild). The touched sessions' metadata.json is
 * rewritten. Files are never rewritten, only truncated. What a crash cannot cause (a closed
 * chunk's file removed by hand, a file copied into an ended session) is the audit's (`audit`).
 *
 * @example
 * const report = await recover({ index, layout, defaultStream: "default", settings, metrics, openChunks, videoUrlOf });
 */
export async function recover(o: RecoveryOptions): Promise<RecoveryReport> {
  const log = logger("recovery", o.stream);
  const report = emptyReport();
  const touched = new Set<string>(); // "stream\0session"
  const root = o.layout.root;
  const stream = o.stream;
  const rows = [
    ...await o.index.chunks({ stream, status: "deleting" }),
    ...await o.index.chunks({ stream, status: "recording" }),
  ];
  for (const row of rows) {
    if (o.openChunks.has(row.path)) continue;
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
    } else if (await fileSize(join(root, row.path)) === null) await markMissing(o, row, report);
    else if (await repair(o, row.path, row.stream, row)) report.recovered++;
    else report.removedEmpty++;
    touched.add(`${row.stream}\0${row.session_id}`);
  }

  // In name order, so that a rebuilt session starts at its first chunk.
  for (const rel of (await unindexedCandidates(o)).sort()) await indexOrphan(o, rel, report, touched);

  // Only the newest open session of a stream can continue; older ones ended where their video did.
  const open = [];
  for (const session of await o.index.openSessions()) {
    if (o.stream && session.stream !== o.stream) continue;
    const chunks = await o.index.chunks({ stream: session.stream, sessionId: session.session_id });
    open.push({
      session,
      lastFrameMs: Math.max(session.start_ms, ...chunks.map((c) => c.end_ms)),
      lastIdx: Math.max(0, ...chunks.map((c) => c.idx)),
    });
  }
  open.sort((a, b) => b.lastFrameMs - a.lastFrameMs);
  for (const { session, lastFrameMs, lastIdx } of open) {
    if (!report.resumable.has(session.stream)) {
      report.resumable.set(session.stream, {
        sessionId: session.session_id,
        dir: session.dir,
        lastFrameMs,
        lastIdx,
      });
    } else {
      await o.index.endSession(session.stream, session.session_id, lastFrameMs);
      touched.add(`${session.stream}\0${session.session_id}`);
    }
  }

  await rewriteMetadata(o, touched);
  if (
    report.recovered || report.missing || report.orphans || report.removedEmpty || report.deletionsFinished
  ) {
    log.info("recovery done", { ...report, resumable: [...report.resumable.keys()] });
  }
  return report;
}

/**
 * Walks every file under the root and compares it with the index. Read-only: it runs beside the
 * recording (the janitor's periodic walk), and `applyAudit` re-checks each finding in the
 * indexer's turn before it writes anything.
 *
 * @example
 * const findings = await audit(index, layout.root);
 * if (findings.missing.length || findings.orphans.length) indexer.send({ type: "audit", findings });
 */
export async function audit(index: ChunkIndex, root: string): Promise<AuditFindings> {
  const files = new Map<string, number>();
  let onDiskBytes = await index.localBytes();
  for await (const rel of chunkFiles(root)) {
    const size = await fileSize(join(root, rel));
    if (size === null) continue;
    files.set(rel, size);
    onDiskBytes += size;
  }
  const missing: string[] = [];
  const indexed = new Set<string>();
  for (const row of await index.paths()) {
    indexed.add(row.path);
    if ((row.status === "complete" || row.status === "recovered") && !files.has(row.path)) {
      missing.push(row.path);
    }
  }
  const orphans = [...files.keys()].filter((rel) => !indexed.has(rel) && parseChunkPath(rel) !== null);
  return { missing, orphans, onDiskBytes };
}

/**
 * Applies what `audit` found, each finding checked again first (a chunk may have been deleted,
 * indexed or opened since the walk): rows whose file is still gone become `missing`, files still
 * without a row are indexed as `recovered`. Run in the indexer's turn.
 */
export async function applyAudit(o: RecoveryOptions, findings: AuditFindings): Promise<RecoveryReport> {
  const report = emptyReport();
  const touched = new Set<string>();
  for (const path of findings.missing) {
    const row = await o.index.chunk(path);
    if (!row || (row.status !== "complete" && row.status !== "recovered")) continue;
    if (await fileSize(join(o.layout.root, path)) !== null) continue;
    await markMissing(o, row, report);
    touched.add(`${row.stream}\0${row.session_id}`);
  }
  for (const rel of [...findings.orphans].sort()) {
    if (await fileSize(join(o.layout.root, rel)) !== null) await indexOrphan(o, rel, report, touched);
  }
  await rewriteMetadata(o, touched);
  if (report.missing || report.orphans || report.removedEmpty) {
    logger("recovery").info("audit applied", { missing: report.missing, orphans: report.orphans });
  }
  return report;
}

async function markMissing(o: RecoveryOptions, row: ChunkRow, report: RecoveryReport): Promise<void> {
  await o.index.setStatus(row.path, "missing");
  logger("recovery", row.stream).warn("chunk file missing", { path: row.path, was: row.status });
  report.missing++;
}

/** Indexes a chunk file that has no row, unless a live writer holds it or a row appeared. */
async function indexOrphan(
  o: RecoveryOptions,
  rel: string,
  report: RecoveryReport,
  touched: Set<string>,
): Promise<void> {
  if (o.openChunks.has(rel)) return;
  const parsed = parseChunkPath(rel);
  if (!parsed) return;
  const stream = o.layout.multiStream
    ? parsed.stream
    : (parsed.stream === undefined ? o.defaultStream : undefined);
  if (!stream || (o.stream && stream !== o.stream)) return;
  if (await o.index.chunk(rel)) return;
  if (await repair(o, rel, stream, null)) {
    report.orphans++;
    touched.add(`${stream}\0${parsed.sessionId}`);
  } else report.removedEmpty++;
}

async function rewriteMetadata(o: RecoveryOptions, touched: Set<string>): Promise<void> {
  for (const key of touched) {
    const [stream, sessionId] = key.split("\0");
    await writeSessionMetadata(o.index, o.layout.root, stream, sessionId, o.settings, Date.now());
  }
}

/**
 * Chunk files that may lack a row after a crash: those of the sessions the index holds open, and
 * of session folders it does not know. Folders of ended sessions are not listed, so the cost is
 * one directory read per top-level folder, not one per chunk.
 */
async function unindexedCandidates(o: RecoveryOptions): Promise<string[]> {
  const ended = new Set(
    (await o.index.sessions()).filter((s) => s.status !== "open").map((s) => s.dir),
  );
  const out: string[] = [];
  const sessionFiles = async (dir: string) => {
    for (const e of await entriesOf(join(o.layout.root, chunksDir(dir)))) {
      if (e.isFile && e.name.endsWith(".mp4")) out.push(join(chunksDir(dir), e.name));
    }
  };
  for (const top of await entriesOf(o.layout.root)) {
    if (!top.isDirectory || top.name === TMP_DIR || ended.has(top.name)) continue;
    // A session folder (single-stream layout), or a stream's folder of sessions.
    await sessionFiles(top.name);
    for (const e of await entriesOf(join(o.layout.root, top.name))) {
      const dir = join(top.name, e.name);
      if (e.isDirectory && e.name !== "video_segments" && !ended.has(dir)) await sessionFiles(dir);
    }
  }
  return out;
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
