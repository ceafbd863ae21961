import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { Child } from "../src/runtime/child.ts";
import { logger } from "../src/runtime/log.ts";
import { reconnecting } from "../src/runtime/reconnect.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { rtspArgs } from "../src/ingest/ffmpeg/args.ts";
import { FlvReader } from "../src/ingest/ffmpeg/flv.ts";
import { SourceClock } from "../src/ingest/ffmpeg/source_clock.ts";
import { type ChainBreak, DecodeChain } from "../src/ingest/decode_chain.ts";
import { type Frame, FrameParser } from "../src/ingest/h264/frame_parser.ts";
import type { IndexerMsg, SegmenterMsg } from "../src/record/messages.ts";
import type { StreamStatus } from "../src/serve/health.ts";
import { SourceState } from "../src/serve/source_state.ts";

export interface RtspOptions {
  stream: { name: string; url: string; shownUrl: string };
  ffmpeg: string;
  segmenter: ActorRef<SegmenterMsg>;
  indexer: ActorRef<IndexerMsg>;
  metrics: Metrics;
  /** Read by /healthz; this actor is its only writer. */
  status: StreamStatus;
  /** No picture for this long (the first included): the session is ended and started again. */
  timeoutMs: number;
  reconnectMaxMs: number;
  clock?: Clock;
}

/** A picture whose RTP time strays this far from its arrival re-anchors the stream's clock (docs/time.md). */
const CLOCK_TOLERANCE_MS = 2000;
const WATCH_MS = 250;

/**
 * An RTSP camera, recorded as it sends its H.264: ffmpeg, a child process this actor owns, holds
 * the RTSP session (RTP interleaved over TCP) and copies the video into FLV, one tag a picture
 * with its RTP time. Pictures are timed by the source's clock from the first one's arrival
 * (src/ingest/ffmpeg/source_clock.ts), checked like the relay's (parameter sets, slice headers),
 * and passed on when a decoder can decode them: after a reconnect, from the next keyframe unless
 * the coded sequence resumes without a loss. A session that ends, fails or stays silent for the
 * timeout is started again after a capped exponential backoff with jitter; on stop, ffmpeg is
 * ended and reaped.
 */
export class Rtsp implements Behavior<never> {
  #o: RtspOptions;
  #clock: Clock;
  #log;
  #labels;
  #chain = new DecodeChain();
  #state: SourceState;
  /** ffmpeg sessions started: every one after the first is a restart. */
  #starts = 0;
  #skipping: { reason: ChainBreak; frames: number } | null = null;
  #queueFull = 0;

  constructor(o: RtspOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("rtsp", o.stream.name);
    this.#labels = { stream: o.stream.name };
    this.#state = new SourceState({ ...o, clock: this.#clock, log: this.#log });
  }

  receive(): void {}

  run(signal: AbortSignal): Promise<void> {
    return reconnecting(
      signal,
      this.#o.reconnectMaxMs,
      this.#log,
      async () => (await this.#session(signal)) > 0,
    );
  }

  /** One ffmpeg session, until it exits, goes silent or `signal` aborts. Resolves with its pictures. */
  async #session(signal: AbortSignal): Promise<number> {
    const { stream, ffmpeg, metrics, timeoutMs } = this.#o;
    this.#state.connecting();
    if (this.#starts++ > 0) metrics.encoderRestarts.inc(this.#labels);
    const child = new Child(ffmpeg, rtspArgs(stream.url), this.#log, { stdin: false });
    const flv = new FlvReader();
    const parser = new FrameParser();
    const clock = new SourceClock(CLOCK_TOLERANCE_MS);
    let pictures = 0, last = this.#clock.monotonic(), silent = false, stopping = false;
    let picture = { pts: NaN, ts: 0 };
    const onAbort = () => {
      stopping = true;
      child.stop();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const watch = setInterval(() => {
      if (this.#clock.monotonic() - last <= timeoutMs) return;
      silent = true;
      child.kill("SIGKILL");
    }, WATCH_MS);
    try {
      for await (const piece of child.stdout) {
        for (const tag of flv.push(piece)) {
          if (tag.type === "config") {
            parser.unit(tag.nals, 0);
            continue;
          }
          const arrival = this.#clock.now();
          last = this.#clock.monotonic();
          this.#o.status.lastDataMs = arrival;
          // Tags with one time are one picture (ffmpeg splits a picture whose slices have
          // parameter sets between them): timed once, completed by the next time.
          if (tag.ptsMs !== picture.pts) {
            if (pictures++ === 0) this.#state.up("RTSP");
            const placed = clock.place(tag.ptsMs, arrival);
            if (placed.reanchored) {
              metrics.framesRetimed.inc(this.#labels);
              this.#log.warn("RTP time strayed from arrival: the clock is anchored again", {
                ptsMs: tag.ptsMs,
              });
            }
            picture = { pts: tag.ptsMs, ts: placed.ts };
          }
          for (const frame of parser.unit(tag.nals, picture.ts, false)) this.#forward(frame);
        }
      }
    } catch (e) {
      this.#log.warn("ffmpeg output refused: ending it", {
        error: e instanceof Error ? e.message : String(e),
      });
      child.kill("SIGKILL");
    } finally {
      clearInterval(watch);
      signal.removeEventListener("abort", onAbort);
    }
    // ffmpeg writes what it has when its input is cut, slice by slice: a picture still in progress
    // (not completed by its slice layout or a later time) may lack slices, and is dropped as such.
    for (const frame of parser.end()) this.#forward(frame);
    const status = await child.status;
    this.#chain.break();
    const reason = stopping
      ? "shutdown"
      : silent
      ? `no picture for ${timeoutMs} ms`
      : `ffmpeg exited (code ${status.code}${child.lastError ? `: ${child.lastError}` : ""})`;
    if (!stopping) {
      metrics.connectionEnds.inc({
        ...this.#labels,
        reason: silent ? "silent" : pictures > 0 ? "lost" : "refused",
      });
      this.#log.warn(pictures > 0 ? "disconnected" : "connection failed", { url: stream.shownUrl, reason });
    }
    this.#state.down(reason, pictures > 0);
    return pictures;
  }

  /** A picture on to the segmenter if a decoder can decode it, else counted. */
  #forward(frame: Frame): void {
    const { metrics, segmenter } = this.#o;
    if (frame.corrupt || frame.incomplete) {
      metrics.framesDropped.inc({ ...this.#labels, reason: frame.corrupt ? "corrupt" : "incomplete" });
      this.#log.warn("picture dropped", {
        reason: frame.corrupt ? "corrupt" : "incomplete",
        frameTs: frame.ts,
      });
      this.#chain.break();
      return;
    }
    const refused = this.#chain.admit(frame);
    if (refused) {
      metrics.framesSkipped.inc({ ...this.#labels, reason: refused });
      if (this.#skipping?.reason !== refused) {
        this.#log.warn("frames skipped until the next keyframe", { reason: refused, frameTs: frame.ts });
        this.#skipping = { reason: refused, frames: 0 };
      }
      this.#skipping.frames++;
      return;
    }
    if (this.#skipping) {
      this.#log.info("frames pass again", { skipped: this.#skipping.frames, reason: this.#skipping.reason });
      this.#skipping = null;
    }
    if (!segmenter.send({ type: "frame", frame })) {
      if (this.#queueFull++ === 0) this.#log.warn("segmenter queue full: dropping frames until it drains");
      metrics.framesDropped.inc({ ...this.#labels, reason: "queue_full" });
      this.#chain.break();
    } else if (this.#queueFull > 0) {
      this.#log.warn("segmenter queue drained", { dropped: this.#queueFull });
      this.#queueFull = 0;
    }
  }
}
