import type { ActorRef, Behavior } from "../src/actor.ts";
import type { StreamConfig } from "../src/config.ts";
import { type Frame, FrameParser, type ParserCounts } from "../src/h264/frame_parser.ts";
import { KeyframeGate } from "../src/keyframe_gate.ts";
import { logger } from "../src/log.ts";
import type { IndexerMsg, SegmenterMsg } from "../src/messages.ts";
import type { Metrics } from "../src/metrics.ts";
import { sleep } from "../src/sleep.ts";

export interface ConnectionOptions {
  stream: StreamConfig;
  segmenter: ActorRef<SegmenterMsg>;
  /** Connection state changes become stream_state events. */
  indexer: ActorRef<IndexerMsg>;
  metrics: Metrics;
  /** No message for this long: the relay is considered dead and the socket is dropped. */
  timeoutMs: number;
  reconnectMaxMs: number;
}

const RECONNECT_BASE_MS = 250;
/** Silence after which the frame in progress is complete (the relay sends a frame's NAL units together). */
const FRAME_END_SILENCE_MS = 250;

/**
 * The WebSocket client of the relay's consumer endpoint. It timestamps each message on arrival
 * (a monotonic clock anchored to the wall clock at connect), turns messages into frames, and
 * reconnects after any drop with capped exponential backoff and jitter. It sends a text "ping"
 * every third of the timeout; a relay that sends nothing at all for the timeout is dropped.
 */
export class Connection implements Behavior<never> {
  #o: ConnectionOptions;
  #log;
  #labels;
  #connections = 0;

  constructor(o: ConnectionOptions) {
    this.#o = o;
    this.#log = logger("connection", o.stream.name);
    this.#labels = { stream: o.stream.name };
  }

  receive(): void {}

  #state(state: "connected" | "disconnected", reason: string): void {
    this.#o.indexer.send({ type: "stream-state", stream: this.#o.stream.name, state, reason });
  }

  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const gotData = await this.#connectOnce(signal);
      if (signal.aborted) return;
      failures = gotData ? 1 : failures + 1;
      const cap = Math.min(this.#o.reconnectMaxMs, RECONNECT_BASE_MS * 2 ** (failures - 1));
      const delay = Math.round(cap / 2 + Math.random() * cap / 2);
      this.#log.info("reconnecting", { delayMs: delay, failures });
      await sleep(delay, signal);
    }
  }

  /** One connection, until it closes, fails, goes silent or `signal` aborts. True if data came. */
  #connectOnce(signal: AbortSignal): Promise<boolean> {
    const { stream, metrics, timeoutMs } = this.#o;
    return new Promise<boolean>((resolve) => {
      let gotData = false;
      let connected = false;
      let lastMessage = performance.now();
      let wall0 = Date.now(), mono0 = performance.now();
      const parser = new FrameParser();
      const gate = new KeyframeGate();
      let seen: ParserCounts = parser.counts;
      let dropping = 0;
      const ws = new WebSocket(stream.url);
      ws.binaryType = "arraybuffer";

      const deliver = (frames: Frame[]) => {
        for (const frame of frames) {
          if (frame.corrupt) {
            metrics.framesDropped.inc({ ...this.#labels, reason: "corrupt" });
            this.#log.warn("corrupt frame dropped; waiting for the next keyframe", { frameTs: frame.ts });
            gate.break();
          } else if (!gate.admit(frame)) {
            metrics.framesSkipped.inc({ ...this.#labels, reason: "before_keyframe" });
          } else if (!this.#o.segmenter.send({ type: "frame", frame })) {
            if (dropping++ === 0) this.#log.warn("segmenter queue full: dropping frames until it drains");
            metrics.framesDropped.inc({ ...this.#labels, reason: "queue_full" });
            gate.break();
          } else if (dropping > 0) {
            this.#log.warn("segmenter queue drained", { dropped: dropping });
            dropping = 0;
          }
        }
        const now = parser.counts;
        for (const kind of ["badNals", "badPackets", "discardedBytes", "oversizedNals"] as const) {
          const d = now[kind] - seen[kind];
          if (d > 0) {
            metrics.badInput.inc({ ...this.#labels, kind }, d);
            this.#log.warn("bad input skipped", { kind, count: d });
          }
        }
        seen = now;
      };

      let finished = false;
      const finish = (reason: string) => {
        if (finished) return;
        finished = true;
        clearInterval(watchdog);
        clearInterval(pauseCheck);
        signal.removeEventListener("abort", onAbort);
        deliver(parser.end());
        if (connected) {
          this.#log.warn("disconnected", { url: stream.url, reason });
          metrics.streamConnected.set(this.#labels, 0);
          this.#state("disconnected", reason);
        }
        if (ws.readyState === WebSocket.CLOSED) resolve(gotData);
        else {
          ws.addEventListener("close", () => resolve(gotData));
          ws.close();
        }
      };
      const onAbort = () => finish("shutdown");
      signal.addEventListener("abort", onAbort, { once: true });

      const watchdog = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (performance.now() - lastMessage > timeoutMs) {
          this.#log.warn("relay silent: dropping the connection", { timeoutMs });
          finish(`nothing received for ${timeoutMs} ms`);
          return;
        }
        ws.send("ping");
      }, Math.max(50, Math.floor(timeoutMs / 3)));
      // A frame is known complete only when the next one begins; a pause ends it too, so the last
      // frame before a pause is recorded in its chunk instead of waiting for the stream to resume.
      const pauseCheck = setInterval(() => {
        if (performance.now() - lastMessage >= FRAME_END_SILENCE_MS) deliver(parser.end());
      }, FRAME_END_SILENCE_MS / 2);

      ws.onopen = () => {
        wall0 = Date.now();
        mono0 = performance.now();
        lastMessage = mono0;
        connected = true;
        metrics.streamConnected.set(this.#labels, 1);
        this.#state("connected", `connection ${this.#connections + 1} to ${stream.url}`);
        if (this.#connections++ > 0) metrics.reconnects.inc(this.#labels);
        this.#log.info("connected", { url: stream.url, connection: this.#connections });
      };
      ws.onmessage = (e: MessageEvent) => {
        const arrived = performance.now();
        lastMessage = arrived;
        if (typeof e.data === "string") {
          metrics.textMessages.inc(this.#labels);
          this.#log.debug("text message", { text: e.data.slice(0, 200) });
          return;
        }
        gotData = true;
        deliver(parser.message(new Uint8Array(e.data as ArrayBuffer), wall0 + (arrived - mono0)));
      };
      ws.onerror = (e) => {
        this.#log.warn("connection error", { error: (e as ErrorEvent).message ?? "error" });
      };
      ws.onclose = (e) => finish(`closed by the relay (code ${e.code}${e.reason ? `: ${e.reason}` : ""})`);
    });
  }
}
