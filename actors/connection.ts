import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { type ChainBreak, DecodeChain } from "../src/ingest/decode_chain.ts";
import { FrameClock } from "../src/ingest/frame_clock.ts";
import { setStreamState, type StreamStatus } from "../src/serve/health.ts";
import { type Frame, FrameParser, type ParserCounts } from "../src/ingest/h264/frame_parser.ts";
import { logger } from "../src/runtime/log.ts";
import { reconnecting } from "../src/runtime/reconnect.ts";
import type { IndexerMsg, SegmenterMsg } from "../src/record/messages.ts";
import type { Metrics } from "../src/runtime/metrics.ts";

export interface ConnectionOptions {
  /** The stream this connection feeds, and its relay's URL. */
  stream: { name: string; url: string };
  segmenter: ActorRef<SegmenterMsg>;
  /** Connection state changes become stream_state events. */
  indexer: ActorRef<IndexerMsg>;
  metrics: Metrics;
  /** Read by /healthz; this actor is its only writer. */
  status: StreamStatus;
  /**
   * Each stage of a connection must finish within this: TCP connect and WebSocket handshake
   * together, then every silence (the first message included). Past it the socket is dropped.
   */
  timeoutMs: number;
  reconnectMaxMs: number;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

/** How often frames held by the clock are checked for release. */
const RELEASE_CHECK_MS = 250;
/** Retimed frames are logged as a sum at most this often (every one is counted at once). */
const RETIMED_LOG_MS = 10_000;
/** A dropped socket's close handshake is awaited this long, then abandoned: a hung peer cannot wedge reconnects. */
const CLOSE_WAIT_MS = 1000;

type EndReason = "handshake_timeout" | "refused" | "silent" | "lost" | "closed" | "shutdown";

/** One WebSocket connection to the relay and what is known of it, from connect to close. */
interface Link {
  ws: WebSocket;
  parser: FrameParser;
  /** The parser's refusal counts when last reported. */
  seen: ParserCounts | null;
  connected: boolean;
  gotData: boolean;
  finished: boolean;
  /** Monotonic ms: when the connect began, and when the last message came. */
  started: number;
  lastMessage: number;
  /** The wall clock and the monotonic clock read together at connect: arrivals are timed from them. */
  wall0: number;
  mono0: number;
  timers: ReturnType<typeof setInterval>[];
  unlisten?: () => void;
  /** Resolves #connectOnce: true if data came. */
  done: (gotData: boolean) => void;
}

/**
 * The WebSocket client of the relay's consumer endpoint. It timestamps each message on arrival
 * (a monotonic clock anchored to the wall clock at connect), turns messages into frames, places
 * them on the stream's frame grid, passes on those a decoder can decode, and reconnects after any
 * drop with capped exponential backoff and jitter. Every stage is bounded by the timeout: a
 * handshake not answered in time is abandoned, and a relay that sends nothing at all (it is pinged
 * every third of the timeout) is dropped, without waiting on its close. The clock and the decode
 * chain outlive connections: frames that resume a coded sequence without a loss are kept.
 */
export class Connection implements Behavior<never> {
  #o: ConnectionOptions;
  #log;
  #labels;
  #connections = 0;
  #clock: Clock;
  #frameClock = new FrameClock<Frame>();
  #chain = new DecodeChain();
  /** Why frames are being skipped, and how many so far; null while they pass. */
  #skipping: { reason: ChainBreak; frames: number } | null = null;
  #dropping = 0;
  #gridTicks: number | null = null;
  /** Retimed frames not yet logged, the largest shift among them, and when the last line went. */
  #retimed = { frames: 0, maxShiftMs: 0, loggedAt: -Infinity };

  constructor(o: ConnectionOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("connection", o.stream.name);
    this.#labels = { stream: o.stream.name };
  }

  receive(): void {}

  #state(state: "connected" | "disconnected", reason: string): void {
    this.#o.indexer.send({ type: "stream-state", stream: this.#o.stream.name, state, reason });
  }

  #setStatus(state: StreamStatus["state"], reason: string): void {
    setStreamState(this.#o.status, state, reason, this.#clock.now());
  }

  run(signal: AbortSignal): Promise<void> {
    return reconnecting(signal, this.#o.reconnectMaxMs, this.#log, () => this.#connectOnce(signal));
  }

  /** Frames the clock has timed: on to the segmenter if a decoder can decode them, else counted. */
  #forward(frames: Frame[]): void {
    if (frames.length === 0) return;
    const { metrics, segmenter } = this.#o;
    for (const frame of frames) {
      if (frame.corrupt || frame.incomplete) {
        const reason = frame.corrupt ? "corrupt" : "incomplete";
        metrics.framesDropped.inc({ ...this.#labels, reason });
        this.#log.warn(
          frame.corrupt
            ? "corrupt frame dropped; waiting for the next keyframe"
            : "incomplete frame dropped: the connection ended in it, or opened after its first slice",
          { frameTs: frame.ts },
        );
        // A dropped picture that others refer to shows as a frame_num gap; a corrupt one may not.
        if (frame.corrupt) this.#chain.break();
        continue;
      }
      const refused = this.#chain.admit(frame);
      if (refused) {
        metrics.framesSkipped.inc({ ...this.#labels, reason: refused });
        if (this.#skipping?.reason !== refused) {
          this.#log.warn("frames skipped until the next keyframe", { reason: refused, frameTs: frame.ts });
          this.#skipping = { reason: refused, frames: 0 };
        }
        this.#skipping.frames++;
      } else if (!segmenter.send({ type: "frame", frame })) {
        if (this.#dropping++ === 0) this.#log.warn("segmenter queue full: dropping frames until it drains");
        metrics.framesDropped.inc({ ...this.#labels, reason: "queue_full" });
        this.#chain.break();
      } else {
        if (this.#skipping) {
          this.#log.info("frames pass again", {
            skipped: this.#skipping.frames,
            reason: this.#skipping.reason,
          });
          this.#skipping = null;
        }
        if (this.#dropping > 0) {
          this.#log.warn("segmenter queue drained", { dropped: this.#dropping });
          this.#dropping = 0;
        }
      }
    }
    this.#reportClock();
  }

  /** Retimed frames (counted at once, logged as a sum every 10 s, or now if `flush`) and grid changes. */
  #reportClock(flush = false): void {
    const { moved, maxShiftMs } = this.#frameClock.retiming;
    const r = this.#retimed;
    if (moved > 0) {
      this.#o.metrics.framesRetimed.inc(this.#labels, moved);
      this.#frameClock.retiming = { moved: 0, maxShiftMs: 0 };
      r.frames += moved;
      if (Math.abs(maxShiftMs) > Math.abs(r.maxShiftMs)) r.maxShiftMs = maxShiftMs;
    }
    const now = r.frames > 0 ? this.#clock.monotonic() : 0;
    if (r.frames > 0 && (flush || now - r.loggedAt >= RETIMED_LOG_MS)) {
      this.#log.warn("frames retimed onto the frame grid", {
        frames: r.frames,
        maxShiftMs: Math.round(r.maxShiftMs),
        sinceMs: Number.isFinite(r.loggedAt) ? Math.round(now - r.loggedAt) : undefined,
      });
      this.#retimed = { frames: 0, maxShiftMs: 0, loggedAt: now };
    }
    const grid = this.#frameClock.gridTicks;
    if (grid !== null && grid !== this.#gridTicks) {
      this.#gridTicks = grid;
      this.#o.metrics.frameGrid.set(this.#labels, grid / 90_000);
      this.#log.info("frame grid", {
        stepMs: Math.round(grid / 9) / 10,
        fps: Math.round(900_000 / grid) / 10,
      });
    }
  }

  /** One connection, until it closes, fails, goes silent or `signal` aborts. True if data came. */
  #connectOnce(signal: AbortSignal): Promise<boolean> {
    const { stream, timeoutMs } = this.#o;
    return new Promise<boolean>((resolve) => {
      this.#setStatus("connecting", `connecting to ${stream.url}`);
      const now = this.#clock.monotonic();
      const link: Link = {
        ws: new WebSocket(stream.url),
        parser: new FrameParser(),
        seen: null,
        connected: false,
        gotData: false,
        finished: false,
        started: now,
        lastMessage: now,
        wall0: this.#clock.now(),
        mono0: now,
        timers: [],
        done: resolve,
      };
      link.seen = link.parser.counts;
      link.ws.binaryType = "arraybuffer";
      const onAbort = () => this.#finish(link, "shutdown", "shutdown");
      signal.addEventListener("abort", onAbort, { once: true });
      link.timers.push(
        setInterval(() => this.#watch(link), Math.max(50, Math.floor(timeoutMs / 3))),
        // The clock holds a frame until no earlier one can still come (the picture being assembled
        // bounds that) and a burst has ended.
        setInterval(() => {
          if (!link.connected) return;
          const now = this.#wallNow(link);
          // A picture held to see whether its last NAL unit was whole: no message came, so it was.
          this.#deliver(link.parser.settle(now));
          this.#forward(this.#frameClock.release(link.parser.pendingSince ?? now));
          this.#reportRefused(link);
        }, RELEASE_CHECK_MS),
      );
      link.unlisten = () => signal.removeEventListener("abort", onAbort);
      link.ws.onopen = () => this.#opened(link);
      link.ws.onmessage = (e: MessageEvent) => this.#message(link, e);
      link.ws.onerror = (e) => {
        this.#log.warn("connection error", { error: (e as ErrorEvent).message ?? "error" });
      };
      link.ws.onclose = (e) => {
        if (!link.connected) {
          this.#finish(link, "refused", `connection failed before the handshake completed (code ${e.code})`);
        } else if (e.wasClean) {
          this.#finish(
            link,
            "closed",
            `closed by the relay (code ${e.code}${e.reason ? `: ${e.reason}` : ""})`,
          );
        } else this.#finish(link, "lost", "connection lost without a close frame (1006)");
      };
    });
  }

  #wallNow(link: Link): number {
    return link.wall0 + (this.#clock.monotonic() - link.mono0);
  }

  /** Every third of the timeout: a handshake or a silence past it ends the link; else a ping. */
  #watch(link: Link): void {
    const { timeoutMs } = this.#o;
    const now = this.#clock.monotonic();
    if (link.ws.readyState === WebSocket.CONNECTING && now - link.started > timeoutMs) {
      // Closing a connecting WebSocket cancels its TCP connect or upgrade at once.
      this.#finish(
        link,
        "handshake_timeout",
        `no WebSocket handshake within ${timeoutMs} ms (TCP connect or upgrade)`,
      );
      return;
    }
    if (link.ws.readyState !== WebSocket.OPEN) return;
    if (now - link.lastMessage > timeoutMs) {
      this.#log.warn("relay silent: dropping the connection", { timeoutMs });
      this.#finish(link, "silent", `nothing received for ${timeoutMs} ms`);
      return;
    }
    link.ws.send("ping");
  }

  #opened(link: Link): void {
    const { stream, metrics } = this.#o;
    link.wall0 = this.#clock.now();
    link.mono0 = this.#clock.monotonic();
    link.lastMessage = link.mono0;
    link.connected = true;
    const which = `connection ${this.#connections + 1} to ${stream.url}`;
    this.#setStatus("connected", which);
    metrics.streamConnected.set(this.#labels, 1);
    this.#state("connected", which);
    if (this.#connections++ > 0) metrics.reconnects.inc(this.#labels);
    this.#log.info("connected", { url: stream.url, connection: this.#connections });
  }

  #message(link: Link, e: MessageEvent): void {
    const arrived = this.#clock.monotonic();
    link.lastMessage = arrived;
    if (typeof e.data === "string") {
      if (e.data === "pong") return; // the answer to our ping
      this.#o.metrics.textMessages.inc(this.#labels);
      this.#log.debug("text message", { text: e.data.slice(0, 200) });
      return;
    }
    link.gotData = true;
    const at = link.wall0 + (arrived - link.mono0);
    this.#o.status.lastDataMs = at;
    this.#deliver(link.parser.message(new Uint8Array(e.data as ArrayBuffer), at));
  }

  /** Parsed frames onto the frame clock. */
  #deliver(frames: Frame[]): void {
    for (const frame of frames) this.#forward(this.#frameClock.push(frame));
  }

  /** What the parser refused since the last call, counted and logged by kind (every 250 ms, not per message). */
  #reportRefused(link: Link): void {
    const now = link.parser.counts;
    for (const kind of Object.keys(now) as (keyof ParserCounts)[]) {
      const d = now[kind] - link.seen![kind];
      if (d > 0) {
        this.#o.metrics.badInput.inc({ ...this.#labels, kind }, d);
        this.#log.warn("bad input skipped", { kind, count: d });
      }
    }
    link.seen = now;
  }

  /** Ends the link once: the frames it holds go on, the end is counted and said, the socket closed. */
  #finish(link: Link, kind: EndReason, reason: string): void {
    if (link.finished) return;
    link.finished = true;
    const { stream, metrics } = this.#o;
    for (const t of link.timers) clearInterval(t);
    link.unlisten?.();
    this.#deliver(link.parser.end());
    this.#reportRefused(link);
    this.#forward(this.#frameClock.flush());
    this.#reportClock(true);
    if (kind !== "shutdown") metrics.connectionEnds.inc({ ...this.#labels, reason: kind });
    this.#setStatus("disconnected", reason);
    if (link.connected) {
      this.#log.warn("disconnected", { url: stream.url, reason });
      metrics.streamConnected.set(this.#labels, 0);
      this.#state("disconnected", reason);
    } else if (kind !== "shutdown") {
      this.#log.warn("connection failed", { url: stream.url, reason });
    }
    const { ws } = link;
    if (ws.readyState === WebSocket.CLOSED) return link.done(link.gotData);
    const abandon = setTimeout(() => link.done(link.gotData), CLOSE_WAIT_MS);
    ws.addEventListener("close", () => {
      clearTimeout(abandon);
      link.done(link.gotData);
    });
    ws.close();
  }
}
