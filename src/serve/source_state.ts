import type { ActorRef } from "../runtime/actor.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../runtime/log.ts";
import type { Metrics } from "../runtime/metrics.ts";
import type { IndexerMsg } from "../record/messages.ts";
import { setStreamState, type StreamStatus } from "./health.ts";

/**
 * A camera or RTSP source's sessions as the rest of the recorder sees them: its status in
 * /healthz, `storage_stream_connected`, `storage_reconnects_total`, `stream_state` events and the
 * log. Owner: the stream's source actor.
 *
 * @example
 * state.connecting();
 * state.up("MJPEG stream"); // at its first picture
 * state.down("nothing received for 15000 ms", true);
 */
export class SourceState {
  #sessions = 0;
  readonly #labels;

  constructor(
    readonly o: {
      stream: { name: string; shownUrl: string };
      status: StreamStatus;
      metrics: Metrics;
      indexer: ActorRef<IndexerMsg>;
      clock: Clock;
      log: Logger;
    },
  ) {
    this.#labels = { stream: o.stream.name };
  }

  connecting(): void {
    setStreamState(
      this.o.status,
      "connecting",
      `connecting to ${this.o.stream.shownUrl}`,
      this.o.clock.now(),
    );
  }

  /** A session gave its first picture: `kind` says what it is ("MJPEG stream", "RTSP"). */
  up(kind: string): void {
    const { metrics, indexer, status, stream, clock, log } = this.o;
    const which = `${kind} from ${stream.shownUrl} (session ${this.#sessions + 1})`;
    setStreamState(status, "connected", which, clock.now());
    metrics.streamConnected.set(this.#labels, 1);
    if (this.#sessions++ > 0) metrics.reconnects.inc(this.#labels);
    indexer.send({ type: "stream-state", stream: stream.name, state: "connected", reason: which });
    log.info("connected", { session: this.#sessions, url: stream.shownUrl });
  }

  /** The session ended for `reason`; `wasUp`: it had given a picture (and was announced). */
  down(reason: string, wasUp: boolean): void {
    const { metrics, indexer, status, stream, clock } = this.o;
    setStreamState(status, "disconnected", reason, clock.now());
    if (!wasUp) return;
    metrics.streamConnected.set(this.#labels, 0);
    indexer.send({ type: "stream-state", stream: stream.name, state: "disconnected", reason });
  }
}
