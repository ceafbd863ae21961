import { type Clock, systemClock } from "../src/runtime/clock.ts";
import { join } from "node:path";
import { isDiskFull } from "../src/store/errors.ts";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import type { Frame } from "../src/ingest/h264/frame_parser.ts";
import type { Conditions } from "../src/serve/health.ts";
import { logger } from "../src/runtime/log.ts";
import type { IndexerMsg, SegmenterMsg, WriterMsg } from "../src/record/messages.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { Fragmenter, type FragmentOut } from "../src/store/mp4/fragmenter.ts";
import { initSegment } from "../src/store/mp4/init_segment.ts";
import { toTicks } from "../src/store/mp4/timing.ts";
import type { OpenChunks } from "../src/store/open_chunks.ts";
import {
  chunkPath,
  chunksDir,
  fsyncDir,
  type Layout,
  nextChunkIndex,
  sessionDir,
  sessionIdFor,
  writeAll,
} from "../src/store/layout.ts";

export interface WriterOptions {
  stream: string;
  videoUrl: string;
  layout: Layout;
  fragmentMs: number;
  fsyncFragments: boolean;
  indexer: ActorRef<IndexerMsg>;
  metrics: Metrics;
  openChunks: OpenChunks;
  self: ActorRef<WriterMsg>;
  /** Told to wait for a keyframe when a full disk ended the chunk (the next one retries). */
  segmenter: ActorRef<SegmenterMsg>;
  /** A session left open by a crash, which the recording may continue. */
  resume?: { sessionId: string; dir: string; lastIdx: number } | null;
  /** Holds "disk_full:<stream>" while chunks cannot be written; this writer is its owner. */
  conditions: Conditions;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

interface OpenChunk {
  file: Deno.FsFile;
  path: string;
  sessionId: string;
  /** Its first shown frame: where the index says it starts. */
  startMs: number;
  /** Media time 0: the first sample, decode-only when the chunk starts mid-GOP. */
  zeroMs: number;
  fragmenter: Fragmenter;
  /** Shown frames written. */
  frames: number;
  bytes: number;
  endMs: number;
}

/**
 * Writes one stream's chunks: fragmented MP4 files, each fragment appended (and fdatasync'd) as
 * soon as it is complete. It alone names sessions and chunk files on disk, and never opens an
 * existing file for writing, so no restart can overwrite a chunk.
 */
export class Writer implements Behavior<WriterMsg> {
  #clock: Clock;
  #o: WriterOptions;
  #log;
  #labels;
  /** Observed once per frame: its labels are looked up once. */
  #latency;
  #session: { id: string; dir: string; lastIdx: number } | null;
  #chunk: OpenChunk | null = null;
  /** The timer that sends the next "tick", and the wall-clock ms it is for. */
  #due: { at: number; timer: ReturnType<typeof setTimeout> } | null = null;
  #noChunkDrops = 0;
  /** The device filled up: chunks are retried at each keyframe until space returns. */
  #diskFull = false;
  #condition;

  constructor(o: WriterOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("writer", o.stream);
    this.#labels = { stream: o.stream };
    this.#latency = o.metrics.writeLatency.labels(this.#labels);
    this.#condition = `disk_full:${o.stream}`;
    this.#session = o.resume
      ? { id: o.resume.sessionId, dir: o.resume.dir, lastIdx: o.resume.lastIdx }
      : null;
  }

  async receive(msg: WriterMsg): Promise<void> {
    try {
      await this.#handle(msg);
    } finally {
      this.#arm();
    }
  }

  async #handle(msg: WriterMsg): Promise<void> {
    switch (msg.type) {
      case "session-start":
        if (this.#session) this.#endSession(msg.ts);
        await this.#startSession(msg.ts);
        return;
      case "session-end":
        await this.#closeChunk("session-end", true);
        if (this.#session) this.#endSession(msg.ts);
        return;
      case "chunk-open":
        await this.#closeChunk("restart", true);
        try {
          if (!this.#session) await this.#startSession(msg.frame.ts);
          if (!(await this.#openChunk(msg.frame, msg.carry))) {
            this.#abandonOpening("no space for the decode-only lead");
          }
        } catch (e) {
          if (!isDiskFull(e)) throw e;
          this.#abandonOpening(e);
        }
        return;
      case "frame":
        return this.#frame(msg.frame);
      case "chunk-close":
        return this.#closeChunk(msg.reason, msg.partial, msg.endTs);
      case "tick": {
        const out = this.#chunk?.fragmenter.due(msg.now);
        if (out && !(await this.#write(out))) await this.#closeOnDiskFull();
      }
    }
  }

  /**
   * A timer for the moment the fragment in progress is due, so its first frame waits no longer
   * than FRAGMENT_DURATION_MS for its write (plus the timer's and the write's delays): it is set
   * about once a fragment, not on every frame.
   */
  #arm(): void {
    const at = this.#chunk?.fragmenter.dueAt() ?? null;
    if (at === this.#due?.at) return;
    clearTimeout(this.#due?.timer);
    this.#due = at === null ? null : {
      at,
      timer: setTimeout(() => {
        this.#due = null;
        this.#o.self.send({ type: "tick", now: this.#clock.now() });
      }, Math.max(0, at - this.#clock.now())),
    };
  }

  /** After a failure or at exit without a close: the file is left as is, for recovery to repair. */
  close(): void {
    clearTimeout(this.#due?.timer);
    this.#due = null;
    if (!this.#chunk) return;
    this.#o.openChunks.delete(this.#chunk.path);
    this.#chunk.file.close();
    this.#chunk = null;
  }

  async #startSession(ts: number): Promise<void> {
    const { layout, stream } = this.#o;
    const base = sessionIdFor(ts);
    let id = base;
    for (let n = 2; await exists(join(layout.root, sessionDir(layout, stream, id))); n++) id = `${base}_${n}`;
    const dir = sessionDir(layout, stream, id);
    await Deno.mkdir(join(layout.root, chunksDir(dir)), { recursive: true });
    this.#session = { id, dir, lastIdx: 0 };
    this.#log.info("session started", { sessionId: id });
    this.#o.indexer.send({
      type: "session-started",
      stream,
      sessionId: id,
      dir,
      startMs: ts,
      videoUrl: this.#o.videoUrl,
    });
  }

  #endSession(ts: number): void {
    const s = this.#session!;
    this.#session = null;
    this.#log.info("session ended", { sessionId: s.id });
    this.#o.indexer.send({ type: "session-ended", stream: this.#o.stream, sessionId: s.id, endMs: ts });
  }

  /**
   * Opens a chunk at `frame`; `carry`, the GOP before it, goes first as decode-only samples.
   * False when the lead did not fit on the disk: the caller abandons the opening.
   */
  async #openChunk(frame: Frame, carry: readonly Frame[]): Promise<boolean> {
    const { layout, stream } = this.#o;
    const session = this.#session!;
    const params = frame.params!;
    const zeroMs = carry[0]?.ts ?? frame.ts;
    // A camera's or RTSP chunk has no grid (gridTicks 0): its intervals are its own.
    const init = initSegment(params, toTicks(frame.ts - zeroMs), frame.gridTicks || undefined);
    // Past the files on disk and every number the session used: the janitor may have deleted them
    // all, and a deleted chunk's row keeps its path.
    let index = Math.max(
      await nextChunkIndex(join(layout.root, chunksDir(session.dir))),
      session.lastIdx + 1,
    );
    let file: Deno.FsFile;
    let path: string;
    for (;;) {
      path = chunkPath(session.dir, index);
      try {
        file = await Deno.open(join(layout.root, path), { write: true, createNew: true });
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        index++;
      }
    }
    session.lastIdx = index;
    this.#o.openChunks.add(path);
    this.#chunk = {
      file,
      path,
      sessionId: session.id,
      startMs: frame.ts,
      zeroMs,
      frames: 0,
      bytes: 0,
      endMs: frame.ts,
      fragmenter: new Fragmenter({ startMs: zeroMs, fragmentMs: this.#o.fragmentMs }),
    };
    await writeAll(file, init);
    await fsyncDir(join(layout.root, chunksDir(session.dir)));
    this.#chunk.bytes = init.length;
    if (carry.length > 0) {
      if (!(await this.#write(this.#chunk.fragmenter.lead(carry, frame.ts), true))) return false;
      this.#o.metrics.decodeOnlyFrames.inc(this.#labels, carry.length);
    }
    if (this.#diskFull) {
      this.#diskFull = false;
      this.#o.conditions.clear(this.#condition);
      this.#log.warn("disk space returned: recording resumed", { path });
    }
    const { codec, width, height } = params.info;
    this.#log.info("chunk opened", { path, codec, width, height });
    this.#o.indexer.send({
      type: "chunk-opened",
      chunk: { stream, sessionId: session.id, index, path, startMs: frame.ts, codec, width, height },
    });
    return true;
  }

  async #frame(frame: Frame): Promise<void> {
    if (!this.#chunk) {
      if (this.#noChunkDrops++ === 0) {
        this.#log.warn("frame without an open chunk dropped (writer restarted?)");
      }
      this.#o.metrics.framesDropped.inc({
        ...this.#labels,
        reason: this.#diskFull ? "disk_full" : "no_open_chunk",
      });
      return;
    }
    this.#noChunkDrops = 0;
    const out = this.#chunk.fragmenter.add(frame);
    if (out && !(await this.#write(out))) await this.#closeOnDiskFull();
  }

  /**
   * Appends a fragment. On a full device the partial write is cut off again, so the file ends at
   * its last whole fragment, the fragment's frames are counted as dropped, and false is returned.
   * A `decodeOnly` fragment (a carried GOP) adds no shown frames.
   */
  async #write(out: FragmentOut, decodeOnly = false): Promise<boolean> {
    const c = this.#chunk!;
    const { metrics } = this.#o;
    try {
      await writeAll(c.file, out.bytes);
      if (this.#o.fsyncFragments) await c.file.syncData();
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      await c.file.truncate(c.bytes);
      // A decode-only lead loses no frame: the chunk is not opened, and its opening says so.
      if (decodeOnly) return false;
      this.#fullDisk();
      metrics.framesDropped.inc({ ...this.#labels, reason: "disk_full" }, out.frames);
      this.#log.error("disk full: fragment not written", { path: c.path, framesLost: out.frames, error: e });
      return false;
    }
    c.bytes += out.bytes.length;
    metrics.currentChunkSize.set(this.#labels, c.bytes);
    if (decodeOnly) return true;
    const now = this.#clock.now();
    const endMs = c.zeroMs + out.endMs;
    const spanMs = endMs - c.endMs;
    c.frames += out.frames;
    c.endMs = endMs;
    metrics.framesWritten.inc(this.#labels, out.frames);
    if (spanMs > 0) metrics.actualFps.set(this.#labels, Math.round(out.frames * 1000 / spanMs * 100) / 100);
    for (const arrived of out.arrivals) this.#latency.observe((now - arrived) / 1000);
    this.#o.indexer.send({
      type: "chunk-progress",
      stream: this.#o.stream,
      sessionId: c.sessionId,
      path: c.path,
      endMs: c.endMs,
      frames: c.frames,
      bytes: c.bytes,
    });
    return true;
  }

  /** A full disk ended the chunk: close what was written, and retry at the next keyframe. */
  async #closeOnDiskFull(): Promise<void> {
    const pending = this.#chunk?.fragmenter.pendingFrames ?? 0;
    if (pending > 0) this.#o.metrics.framesDropped.inc({ ...this.#labels, reason: "disk_full" }, pending);
    await this.#closeChunk("disk-full", true, undefined, false);
    this.#o.segmenter.send({ type: "writer-reset", reason: "disk_full" });
  }

  /** A full disk stopped a chunk from opening: remove what was created; the next keyframe retries. */
  #abandonOpening(error: unknown): void {
    const c = this.#chunk;
    if (c) {
      c.file.close();
      this.#o.openChunks.delete(c.path);
      Deno.removeSync(join(this.#o.layout.root, c.path));
      this.#chunk = null;
    }
    if (!this.#diskFull) {
      this.#log.error("disk full: cannot open a chunk; retrying at each keyframe", { error });
    }
    this.#fullDisk();
    this.#o.segmenter.send({ type: "writer-reset", reason: "disk_full" });
  }

  #fullDisk(): void {
    this.#diskFull = true;
    this.#o.conditions.set(this.#condition, `disk full: stream ${this.#o.stream} cannot write its chunks`);
  }

  async #closeChunk(reason: string, partial: boolean, endTs?: number, flush = true): Promise<void> {
    const c = this.#chunk;
    if (!c) return;
    const out = flush ? c.fragmenter.finish(endTs) : null;
    if (flush && out && !(await this.#write(out))) reason = "disk-full";
    await c.file.sync();
    c.file.close();
    this.#chunk = null;
    this.#o.openChunks.delete(c.path);
    this.#o.metrics.currentChunkSize.set(this.#labels, 0);
    if (c.frames === 0) {
      // Nothing but the init segment (a full disk took its first fragment): no chunk to keep.
      await Deno.remove(join(this.#o.layout.root, c.path)).catch(() => {});
      this.#log.warn("chunk discarded: no frame was written", { path: c.path, reason });
      this.#o.indexer.send({ type: "chunk-discarded", stream: this.#o.stream, path: c.path });
      return;
    }
    this.#log.info("chunk closed", { path: c.path, reason, partial, frames: c.frames, bytes: c.bytes });
    this.#o.indexer.send({
      type: "chunk-closed",
      stream: this.#o.stream,
      sessionId: c.sessionId,
      path: c.path,
      endMs: c.endMs,
      frames: c.frames,
      bytes: c.bytes,
      partial,
      reason,
    });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
