import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { Behavior } from "../src/runtime/actor.ts";
import { isDiskFull } from "../src/store/errors.ts";
import { type ChunkIndex, playable } from "../src/store/index/chunk_index.ts";
import { logger } from "../src/runtime/log.ts";
import type { Conditions } from "../src/serve/health.ts";
import type { AuditFindings, IndexerMsg, OpenSession } from "../src/record/messages.ts";
import { type MetadataSettings, writeSessionMetadata } from "../src/store/metadata.ts";
import { chunkInfo, seconds, storageEvent } from "../src/publish/envelope.ts";
import type { IndexChanges } from "../src/store/index/index_changes.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { sleep } from "../src/runtime/sleep.ts";

const DISK_FULL_RETRY_MS = 500;
/** While the index cannot be written, a reminder is logged this often. */
const DISK_FULL_LOG_MS = 60_000;
/** metadata.json is rewritten at least this often while a chunk records (and at every close). */
const METADATA_EVERY_MS = 10_000;
const DISK_FULL = "index_disk_full";

export interface IndexerOptions {
  index: ChunkIndex;
  root: string;
  settings: MetadataSettings;
  metrics: Metrics;
  changes: IndexChanges;
  /** Holds "index_disk_full" while the index cannot be written; this actor is its owner. */
  conditions: Conditions;
  /** Recovery of one stream's chunks, run for a `recover` message: the session it left open. */
  recover(stream: string): Promise<OpenSession | null>;
  /** Applies an audit's findings (src/store/recovery.ts `applyAudit`). */
  applyAudit(findings: AuditFindings): Promise<unknown>;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

/**
 * Keeps the index in step with the files: a row when a chunk opens, its progress per fragment, and
 * its completion in one transaction when it closes; metadata.json after every close and session end.
 */
export class Indexer implements Behavior<IndexerMsg> {
  #clock: Clock;
  #o: IndexerOptions;
  #log = logger("indexer");
  #stopping = false;
  /** When each session's metadata.json was last written (ended sessions are forgotten). */
  #metadataAt = new Map<string, number>();

  constructor(o: IndexerOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
  }

  stop(): void {
    this.#stopping = true;
  }

  async receive(msg: IndexerMsg): Promise<void> {
    // A full disk fails SQLite too. Every message can be applied again (a failed transaction left
    // nothing behind), so wait for space however long it takes, rather than fail: the mailbox
    // holds what comes meanwhile, and a restart would meet the same full disk.
    for (let waited = 0;; waited += DISK_FULL_RETRY_MS) {
      try {
        await this.#apply(msg);
        break;
      } catch (e) {
        // At shutdown, give up: recovery repairs the index at the next start.
        if (!isDiskFull(e) || this.#stopping) throw e;
        if (waited % DISK_FULL_LOG_MS === 0) {
          this.#log.error("disk full: the index cannot be written; retrying", {
            message: msg.type,
            waitedMs: waited,
            error: e,
          });
          this.#o.conditions.set(DISK_FULL, "disk full: the index cannot be written");
        }
        await sleep(DISK_FULL_RETRY_MS);
      }
    }
    if (this.#o.conditions.clear(DISK_FULL)) this.#log.warn("index writable again", { message: msg.type });
    if (msg.type !== "session-started" && msg.type !== "chunk-opened" && msg.type !== "audit") {
      this.#o.changes.changed(msg.stream, msg.type);
    }
  }

  /** metadata.json is a copy of the index for people and tools: failing to write it (a full disk) is logged, not fatal. */
  async #metadata(stream: string, sessionId: string): Promise<void> {
    this.#metadataAt.set(`${stream}\0${sessionId}`, this.#clock.now());
    try {
      await writeSessionMetadata(
        this.#o.index,
        this.#o.root,
        stream,
        sessionId,
        this.#o.settings,
        this.#clock.now(),
      );
    } catch (e) {
      this.#log.error("metadata.json not written", { stream, sessionId, error: e });
    }
  }

  #apply(msg: IndexerMsg): Promise<void> {
    switch (msg.type) {
      case "recover":
        return this.#recover(msg);
      case "audit":
        return this.#o.applyAudit(msg.findings).then(() => {});
      case "session-started":
        return this.#sessionStarted(msg);
      case "chunk-discarded":
        return this.#chunkDiscarded(msg);
      case "stream-state":
        return this.#streamState(msg);
      case "chunk-opened":
        return this.#chunkOpened(msg);
      case "chunk-progress":
        return this.#chunkProgress(msg);
      case "chunk-closed":
        return this.#chunkClosed(msg);
      case "session-ended":
        return this.#sessionEnded(msg);
    }
  }

  async #recover(msg: Extract<IndexerMsg, { type: "recover" }>): Promise<void> {
    try {
      msg.resolve(await this.#o.recover(msg.stream));
    } catch (e) {
      // A full disk is waited out (receive() applies the message again), then the reply comes.
      if (!isDiskFull(e) || this.#stopping) msg.reject(e);
      throw e;
    }
  }

  async #sessionStarted(msg: Extract<IndexerMsg, { type: "session-started" }>): Promise<void> {
    const { index } = this.#o;
    await index.insertSession(
      {
        stream: msg.stream,
        session_id: msg.sessionId,
        dir: msg.dir,
        start_ms: Math.round(msg.startMs),
        video_url: msg.videoUrl,
      },
      storageEvent("session_started", msg.stream, {
        session_id: msg.sessionId,
        start_time: seconds(msg.startMs),
        start_time_iso: new Date(msg.startMs).toISOString(),
        video_url: msg.videoUrl,
      }),
    );
  }

  async #chunkDiscarded(msg: Extract<IndexerMsg, { type: "chunk-discarded" }>): Promise<void> {
    const { index } = this.#o;
    await index.deleteChunk(msg.path);
  }

  async #streamState(msg: Extract<IndexerMsg, { type: "stream-state" }>): Promise<void> {
    const { index } = this.#o;
    await index.appendEvent(
      storageEvent("stream_state", msg.stream, { state: msg.state, reason: msg.reason }),
    );
  }

  async #chunkOpened(msg: Extract<IndexerMsg, { type: "chunk-opened" }>): Promise<void> {
    const { index } = this.#o;
    const c = msg.chunk;
    await index.insertChunk({
      stream: c.stream,
      session_id: c.sessionId,
      idx: c.index,
      path: c.path,
      start_ms: c.startMs,
      end_ms: c.startMs,
      frames: 0,
      bytes: 0,
      partial: 0,
      codec: c.codec,
      width: c.width,
      height: c.height,
      status: "recording",
    });
  }

  async #chunkProgress(msg: Extract<IndexerMsg, { type: "chunk-progress" }>): Promise<void> {
    const { index } = this.#o;
    await index.progress(msg.path, { end_ms: msg.endMs, frames: msg.frames, bytes: msg.bytes });
    const written = this.#metadataAt.get(`${msg.stream}\0${msg.sessionId}`) ?? 0;
    if (this.#clock.now() - written >= METADATA_EVERY_MS) await this.#metadata(msg.stream, msg.sessionId);
  }

  async #chunkClosed(msg: Extract<IndexerMsg, { type: "chunk-closed" }>): Promise<void> {
    const { index, metrics } = this.#o;
    const facts = {
      end_ms: Math.round(msg.endMs),
      frames: msg.frames,
      bytes: msg.bytes,
      partial: msg.partial ? 1 : 0,
    };
    const opened = await index.chunk(msg.path);
    if (!opened) throw new Error(`chunk-closed for ${msg.path}, which the index does not hold`);
    const row = { ...opened, ...facts };
    const events = [
      storageEvent("chunk_saved", msg.stream, { session_id: msg.sessionId, chunk_info: chunkInfo(row) }),
    ];
    if (msg.reason === "idle") {
      events.push(
        storageEvent("stream_state", msg.stream, {
          state: "idle",
          reason: "no frames: the chunk was closed",
        }),
      );
    }
    await index.finish(msg.path, facts, "complete", msg.reason, events);
    const labels = { stream: msg.stream };
    metrics.chunksSaved.inc(labels);
    if (msg.partial) metrics.partialChunksSaved.inc({ ...labels, reason: msg.reason });
    metrics.chunkDuration.observe(labels, (row.end_ms - row.start_ms) / 1000);
    await this.#metadata(msg.stream, msg.sessionId);
  }

  async #sessionEnded(msg: Extract<IndexerMsg, { type: "session-ended" }>): Promise<void> {
    const { index } = this.#o;
    const chunks = await index.chunks({ stream: msg.stream, sessionId: msg.sessionId });
    const end = Math.max(msg.endMs, ...chunks.map((c) => c.end_ms));
    const session = await index.getSession(msg.stream, msg.sessionId);
    const kept = chunks.filter(playable);
    await index.endSession(
      msg.stream,
      msg.sessionId,
      end,
      storageEvent("session_complete", msg.stream, {
        session_id: msg.sessionId,
        duration: seconds(end - (session?.start_ms ?? end)),
        total_frames: kept.reduce((n, c) => n + c.frames, 0),
        total_chunks: kept.length,
        partial_chunks: kept.filter((c) => c.partial === 1).length,
        total_size_mb: Math.round(kept.reduce((n, c) => n + c.bytes, 0) / 1024 / 1024 * 100) / 100,
      }),
    );
    await this.#metadata(msg.stream, msg.sessionId);
    this.#metadataAt.delete(`${msg.stream}\0${msg.sessionId}`);
    this.#log.info("session ended", {
      stream: msg.stream,
      sessionId: msg.sessionId,
      chunks: chunks.length,
    });
  }
}
