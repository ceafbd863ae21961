import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { backoffMs } from "../src/runtime/backoff.ts";
import { Child } from "../src/runtime/child.ts";
import { logger } from "../src/runtime/log.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { encoderArgs, encoderInput, type EncodeSettings } from "../src/ingest/ffmpeg/args.ts";
import { EncoderLedger } from "../src/ingest/ffmpeg/encoder_ledger.ts";
import { FlvReader } from "../src/ingest/ffmpeg/flv.ts";
import { type Frame, FrameParser } from "../src/ingest/h264/frame_parser.ts";
import type { JpegSize } from "../src/ingest/jpeg/jpeg.ts";
import type { EncoderMsg, SegmenterMsg } from "../src/record/messages.ts";

export interface EncoderOptions {
  stream: string;
  /** The ffmpeg binary (FFMPEG_PATH as the launcher resolved it). */
  ffmpeg: string;
  settings: EncodeSettings;
  segmenter: ActorRef<SegmenterMsg>;
  metrics: Metrics;
  /** An encoder that holds a JPEG this long without giving its picture back has hung. */
  hangMs: number;
  restartMaxMs: number;
  clock?: Clock;
}

const RESTART_BASE_MS = 250;
const WATCH_MS = 250;
/**
 * The encoder runs this much below the recorder's CPU priority: a JPEG's time is taken when the
 * recorder reads it, so on a busy 2-core station the recorder must not wait for a core behind
 * x264's threads, while the encoder has the pipe to buffer in. Measured in tests/camera_test.ts
 * with a core kept busy: equal priority put half the runs' worst picture 5.8-6.2 ms late; lowered, 1 in 4 was at 5.0 ms.
 */
const ENCODER_NICE = 10;
type Drop = "encoder_down" | "encoder_lost" | "encoder_skipped" | "queue_full" | "corrupt";

/** One ffmpeg child and what it was given. */
interface Run {
  child: Child;
  /** The size of the first JPEG it was given; null before. */
  size: JpegSize | null;
  ledger: EncoderLedger;
  /** Ended on purpose (a size change, shutdown, a hang): not a failure of its own. */
  ending: boolean;
  encoded: number;
  /** Resolves when its output has been read to the end and its exit handled. */
  done: Promise<void>;
}

/**
 * Encodes a camera's JPEGs to H.264 with an ffmpeg child process it owns, and passes the pictures
 * to the segmenter, each timed by the arrival of its JPEG. ffmpeg numbers its inputs and FLV
 * carries each output's number as its time, so a JPEG the encoder drops is counted instead of
 * shifting later times (src/ingest/ffmpeg/encoder_ledger.ts). A JPEG of another size ends the
 * encoder (its pictures are flushed) and starts one at the new size, whose parameter sets start a
 * new chunk. An encoder that exits, or hangs (holds a JPEG over `hangMs`: it is killed), is started
 * again after a capped exponential backoff with jitter; the JPEGs it held and those that come
 * during the backoff are counted as dropped. On stop the encoder's input is closed so it gives back what
 * it holds, then it is reaped (src/runtime/child.ts): no process outlives the actor.
 */
export class Encoder implements Behavior<EncoderMsg> {
  #o: EncoderOptions;
  #clock: Clock;
  #log;
  #labels;
  #run: Run | null = null;
  #failures = 0;
  /** Monotonic ms before which no encoder is started again after a failure. */
  #retryAt = 0;
  /** JPEGs dropped in a row while the encoder was down, logged when it is back. */
  #downDrops = 0;
  /** Pictures refused in a row by the segmenter's full queue: logged at the first and when it drains. */
  #queueFull = 0;

  constructor(o: EncoderOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("encoder", o.stream);
    this.#labels = { stream: o.stream };
  }

  async receive(msg: EncoderMsg): Promise<void> {
    const { jpeg, ts, size } = msg.frame;
    let run = this.#run;
    if (run?.size && (run.size.width !== size.width || run.size.height !== size.height)) {
      this.#log.info("frame size changed: a new encoder, and a new chunk", {
        from: `${run.size.width}x${run.size.height}`,
        to: `${size.width}x${size.height}`,
      });
      await this.#end(run);
      run = this.#start();
    }
    if (!run) return this.#drop("encoder_down");
    run.size ??= size;
    run.ledger.sent(ts);
    try {
      await run.child.write(encoderInput(jpeg));
    } catch {
      // It exited: the JPEG is in its ledger, which its exit counts as lost (#pump).
    }
  }

  /**
   * Starts the encoder before the first JPEG (spawning a process stalls this event loop for a few
   * ms, which would delay that JPEG's arrival time), starts it again after a failure once its
   * backoff has passed, and kills one that holds a JPEG past `hangMs`.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const run = this.#run, oldest = run?.ledger.oldest;
      if (!run && this.#clock.monotonic() >= this.#retryAt) this.#start();
      else if (run && oldest != null && this.#clock.now() - oldest > this.#o.hangMs) {
        this.#log.warn("encoder hung: killing it", {
          pid: run.child.pid,
          heldMs: this.#clock.now() - oldest,
        });
        run.child.kill("SIGKILL");
        await run.done;
        continue;
      }
      await sleep(WATCH_MS, signal);
    }
  }

  async close(): Promise<void> {
    if (this.#run) await this.#end(this.#run);
  }

  #start(): Run {
    const { ffmpeg, settings, metrics } = this.#o;
    const child = new Child(ffmpeg, encoderArgs(settings), this.#log, { stdin: true, nice: ENCODER_NICE });
    const run: Run = {
      child,
      size: null,
      ledger: new EncoderLedger(settings.fps),
      ending: false,
      encoded: 0,
      done: Promise.resolve(),
    };
    run.done = this.#pump(run);
    this.#run = run;
    if (this.#failures > 0) metrics.encoderRestarts.inc(this.#labels);
    this.#log.info(this.#failures > 0 ? "encoder restarted" : "encoder started", {
      pid: child.pid,
      ...settings,
      ...(this.#downDrops > 0 ? { droppedWhileDown: this.#downDrops } : {}),
    });
    this.#downDrops = 0;
    return run;
  }

  /** Closes the encoder's input so it gives back what it holds, and reaps it. */
  async #end(run: Run): Promise<void> {
    run.ending = true;
    await run.child.stop();
    await run.done;
  }

  /** Reads the encoder's pictures until it exits, then handles the exit. */
  async #pump(run: Run): Promise<void> {
    const flv = new FlvReader();
    const parser = new FrameParser();
    try {
      for await (const piece of run.child.stdout) {
        for (const tag of flv.push(piece)) {
          if (tag.type === "config") {
            parser.unit(tag.nals, 0);
            continue;
          }
          const hit = run.ledger.encoded(tag.ptsMs);
          if (!hit) throw new Error(`a picture at ${tag.ptsMs} ms that no JPEG was sent for`);
          if (hit.skipped > 0) {
            this.#drop("encoder_skipped", hit.skipped);
            this.#log.warn("the encoder gave no picture for some JPEGs", { jpegs: hit.skipped });
          }
          run.encoded++;
          this.#o.metrics.framesEncoded.inc(this.#labels);
          this.#o.metrics.encodeLatency.observe(this.#labels, (this.#clock.now() - hit.ts) / 1000);
          for (const frame of parser.unit(tag.nals, hit.ts)) this.#forward(frame);
        }
      }
    } catch (e) {
      this.#log.warn("encoder output refused: ending it", {
        error: e instanceof Error ? e.message : String(e),
      });
      run.child.kill("SIGKILL");
    }
    const status = await run.child.status;
    if (this.#run === run) this.#run = null;
    const lost = run.ledger.waiting;
    if (lost > 0) this.#drop("encoder_lost", lost);
    if (run.ending) return;
    this.#failures = run.encoded > 0 ? 1 : this.#failures + 1;
    const delay = backoffMs(this.#failures, RESTART_BASE_MS, this.#o.restartMaxMs);
    this.#retryAt = this.#clock.monotonic() + delay;
    this.#log.warn("encoder exited", {
      code: status.code,
      signal: status.signal,
      lastError: run.child.lastError || undefined,
      lostJpegs: lost,
      restartInMs: delay,
    });
  }

  #forward(frame: Frame): void {
    if (frame.corrupt || frame.incomplete) {
      this.#drop("corrupt");
      this.#log.warn("the encoder gave a picture that does not parse: dropped");
    } else if (!this.#o.segmenter.send({ type: "frame", frame })) {
      if (this.#queueFull++ === 0) this.#log.warn("segmenter queue full: dropping pictures until it drains");
      this.#drop("queue_full");
    } else if (this.#queueFull > 0) {
      this.#log.warn("segmenter queue drained", { dropped: this.#queueFull });
      this.#queueFull = 0;
    }
  }

  #drop(reason: Drop, n = 1): void {
    this.#o.metrics.framesDropped.inc({ ...this.#labels, reason }, n);
    if (reason === "encoder_down") this.#downDrops += n;
  }
}
