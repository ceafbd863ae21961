import { type Clock, systemClock } from "../src/runtime/clock.ts";
import { type Actor, createActor, type SnapshotFrom } from "xstate";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { GopCache } from "../src/record/gop_cache.ts";
import type { Frame } from "../src/ingest/h264/frame_parser.ts";
import { logger } from "../src/runtime/log.ts";
import type { SegmenterMsg, WriterMsg } from "../src/record/messages.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import {
  type FrameEvent,
  routine,
  type SegmentCommand,
  type SegmentEvent,
  type SegmentInput,
  segmentMachine,
} from "../src/record/segment_machine.ts";
import { sleep } from "../src/runtime/sleep.ts";

export interface SegmenterOptions {
  stream: string;
  input: SegmentInput;
  self: ActorRef<SegmenterMsg>;
  writer: ActorRef<WriterMsg>;
  metrics: Metrics;
  /** Bound on the frames kept since the last keyframe (GOP_CACHE_MB). */
  gopCacheBytes: number;
  tickMs?: number;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

/**
 * Runs the segment machine for one stream: feeds it frames and clock ticks, and forwards what it
 * decides to the writer. It keeps the frames since the last keyframe, so that a chunk opened
 * mid-GOP (after an idle close, or an exact cut) gets them as its decode-only lead. A frame the
 * writer's queue refuses is counted and told to the machine (FRAME_LOST), which skips the frames
 * after it until the next keyframe, so the chunk never holds an undecodable run. A frame the
 * machine would only write (`routine`) goes to the writer without a transition; the machine
 * hears of such frames in one WROTE before its next event.
 */
export class Segmenter implements Behavior<SegmenterMsg> {
  #clock: Clock;
  #o: SegmenterOptions;
  #machine: Actor<typeof segmentMachine>;
  #snapshot: SnapshotFrom<typeof segmentMachine>;
  /** Routine frames written without the machine since its last event (see `routine`). */
  #wrote = { frames: 0, lastFrameMs: 0 };
  // Thrown from receive(): an error inside the machine's listener would not reach the supervisor.
  #failure: Error | null = null;
  #tickQueued = false;
  #gop: GopCache<Frame>;
  /** Why the writer lost its chunk, until the next one opens: the frames skipped meanwhile are lost for it. */
  #lost: "writer_restart" | "disk_full" | null = null;
  #log;
  #labels;

  constructor(o: SegmenterOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("segmenter", o.stream);
    this.#labels = { stream: o.stream };
    this.#gop = new GopCache(o.gopCacheBytes);
    this.#machine = createActor(segmentMachine, { input: o.input });
    this.#machine.on("*", (cmd) => this.#command(cmd as SegmentCommand));
    this.#machine.start();
    this.#snapshot = this.#machine.getSnapshot();
  }

  receive(msg: SegmenterMsg): void {
    this.#handle(msg);
    const failure = this.#failure;
    this.#failure = null;
    if (failure) throw failure;
  }

  #handle(msg: SegmenterMsg): void {
    if (msg.type === "frame") {
      const frame = msg.frame;
      // The cache still holds only the frames before this one while the machine decides.
      const event: FrameEvent = {
        type: "FRAME",
        frame,
        carry: this.#gop.carries(frame),
        keyIntervalMs: this.#gop.keyIntervalAt(frame),
      };
      if (routine(this.#snapshot, event, this.#wrote.frames > 0 ? this.#wrote.lastFrameMs : undefined)) {
        this.#wrote.frames++;
        this.#wrote.lastFrameMs = frame.ts;
        this.#command({ type: "write", frame });
      } else this.#send(event);
      const overflows = this.#gop.overflows;
      // A GOP is largest just before the next keyframe: its size then is the memory it took.
      if (frame.keyframe) this.#o.metrics.gopCacheBytes.set(this.#labels, this.#gop.bytes);
      this.#gop.add(frame);
      if (this.#gop.overflows > overflows) {
        this.#o.metrics.gopCacheOverflows.inc(this.#labels);
        this.#log.warn("GOP larger than GOP_CACHE_MB: a chunk cannot start in it before the next keyframe", {
          maxBytes: this.#gop.maxBytes,
        });
      }
    } else if (msg.type === "tick") {
      this.#tickQueued = false;
      this.#send({ type: "TICK", now: msg.now });
    } else {
      this.#log.warn(
        msg.reason === "disk_full"
          ? "disk full: no chunk is open; frames are dropped until one opens at a keyframe"
          : "writer restarted: the open chunk was closed by recovery; waiting for a keyframe",
      );
      this.#lost = msg.reason;
      this.#gop.clear();
      this.#send({ type: "RESET" });
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.#o.tickMs ?? 200, signal);
      if (!this.#tickQueued) this.#tickQueued = this.#o.self.send({ type: "tick", now: this.#clock.now() });
    }
  }

  stop(): void {
    this.#send({ type: "STOP" });
  }

  /** An event to the machine, after the routine frames written since its last one. */
  #send(event: SegmentEvent): void {
    if (this.#wrote.frames > 0) {
      const { frames, lastFrameMs } = this.#wrote;
      this.#wrote.frames = 0;
      this.#machine.send({ type: "WROTE", frames, lastFrameMs });
    }
    this.#machine.send(event);
    this.#snapshot = this.#machine.getSnapshot();
  }

  close(): void {
    this.#machine.stop();
  }

  #command(cmd: SegmentCommand): void {
    const { writer, metrics } = this.#o;
    switch (cmd.type) {
      case "skip":
        if (cmd.afterDrop) metrics.framesSkipped.inc({ ...this.#labels, reason: "after_drop" });
        else if (this.#lost) metrics.framesDropped.inc({ ...this.#labels, reason: this.#lost });
        else {
          metrics.framesSkipped.inc({
            ...this.#labels,
            reason: this.#gop.overflowed || this.#gop.maxBytes === 0 ? "gop_not_cached" : "before_keyframe",
          });
        }
        return;
      case "write":
        if (!writer.send({ type: "frame", frame: cmd.frame })) {
          metrics.framesDropped.inc({ ...this.#labels, reason: "queue_full" });
          this.#log.warn("writer queue full: frame dropped, waiting for the next keyframe", {
            frameTs: cmd.frame.ts,
          });
          // Handled after the frame that emitted this write: the next ones are skipped.
          this.#send({ type: "FRAME_LOST" });
        }
        return;
      case "chunk-open": {
        this.#lost = null;
        const carry = cmd.carried ? [...this.#gop.frames] : [];
        if (carry.length > 0) {
          this.#log.info("chunk starts mid-GOP: the GOP so far is carried, decode-only", {
            frames: carry.length,
            frameTs: cmd.frame.ts,
          });
        }
        this.#control({ type: "chunk-open", frame: cmd.frame, carry });
        return;
      }
      default:
        this.#control(cmd);
    }
  }

  /** Control messages must not be lost: a full queue here is a failure the supervisor handles. */
  #control(cmd: Exclude<WriterMsg, { type: "frame" | "tick" }>): void {
    if (!this.#o.writer.send(cmd)) {
      this.#failure ??= new Error(`writer queue full: cannot deliver ${cmd.type}`);
    }
  }
}
