import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { concat } from "../src/runtime/bytes.ts";
import { logger } from "../src/runtime/log.ts";
import { reconnecting } from "../src/runtime/reconnect.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { jpegSize } from "../src/ingest/jpeg/jpeg.ts";
import {
  type CameraFrame,
  multipartBoundary,
  MultipartSplitter,
  type PartFault,
} from "../src/ingest/jpeg/multipart.ts";
import type { EncoderMsg, IndexerMsg } from "../src/record/messages.ts";
import type { StreamStatus } from "../src/serve/health.ts";
import { SourceState } from "../src/serve/source_state.ts";

export interface CameraOptions {
  /** The stream this camera feeds, and its http(s) URL (user:password@ becomes Basic auth). */
  stream: { name: string; url: string; shownUrl: string };
  encoder: ActorRef<EncoderMsg>;
  /** Connection state changes become stream_state events. */
  indexer: ActorRef<IndexerMsg>;
  metrics: Metrics;
  /** Read by /healthz; this actor is its only writer. */
  status: StreamStatus;
  /** Snapshots are requested this many times a second. */
  fps: number;
  /** A request unanswered, or a body silent, this long: the camera hangs. */
  timeoutMs: number;
  reconnectMaxMs: number;
  clock?: Clock;
}

/** Why a camera gave no frame (the `reason` of storage_camera_errors_total; docs/cameras.md). */
export const CAMERA_FAULTS = [
  "http_status",
  "not_jpeg",
  "truncated_jpeg",
  "oversized_part",
  "timeout",
  "unreachable",
  "lost",
] as const;
export type CameraFault = typeof CAMERA_FAULTS[number];

/** One request: its abort, whether the silence timer fired it, and how to end both. */
interface Request {
  ctl: AbortController;
  timer?: ReturnType<typeof setTimeout>;
  timedOut: boolean;
  unlink: () => void;
}

/**
 * An HTTP camera. The answer to the first request decides what the camera is (docs/cameras.md): a
 * `multipart/*` Content-Type with a boundary is an MJPEG stream, read part by part as it comes;
 * anything else is a snapshot, and the URL is then requested again `fps` times a second (on a
 * fixed schedule: a slow answer skips the requests it overran, it does not shift the rest). Each
 * JPEG is checked and timed by the arrival of its first byte, and goes to the stream's encoder.
 *
 * Faults are counted by reason and logged once per episode (the first fault of a reason, then
 * one line when frames pass again). A part that is not a JPEG, or is cut short, is skipped and the
 * stream read on; an HTTP error, a camera that cannot be reached, that stops answering or sending
 * for the timeout, or that ends its stream, ends the session, and the next one starts after a
 * capped exponential backoff with jitter (the relay connection's).
 */
export class Camera implements Behavior<never> {
  #o: CameraOptions;
  #clock: Clock;
  #log;
  #labels;
  #url: string;
  #headers: HeadersInit;
  #state: SourceState;
  /** The fault being logged once, and how many times it happened since. */
  #episode: { reason: CameraFault; count: number } | null = null;
  #queueFull = 0;

  constructor(o: CameraOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = logger("camera", o.stream.name);
    this.#labels = { stream: o.stream.name };
    this.#state = new SourceState({ ...o, clock: this.#clock, log: this.#log });
    const url = new URL(o.stream.url);
    this.#headers = url.username
      ? {
        authorization: `Basic ${
          btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`)
        }`,
      }
      : {};
    url.username = url.password = "";
    this.#url = url.href;
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

  /** One session: a first request and what follows from its answer. Resolves with the frames it gave. */
  async #session(signal: AbortSignal): Promise<number> {
    this.#state.connecting();
    const first = await this.#request(signal);
    if (!first) return 0;
    const boundary = multipartBoundary(first.res.headers.get("content-type"));
    // Announced at its first frame, once that is timed: the announcement costs an index write.
    let frames = 0, reason = "shutdown";
    const counted = () => {
      if (frames++ === 0) this.#state.up(boundary ? "MJPEG stream" : "snapshots");
    };
    try {
      const end = boundary
        ? await this.#mjpeg(first, boundary, counted)
        : await this.#snapshots(first, signal, counted);
      if (end) reason = end;
    } finally {
      this.#state.down(reason, frames > 0);
    }
    return frames;
  }

  /** Reads a multipart stream until it ends or fails; the reason it ended, or null at shutdown. */
  async #mjpeg(
    req: { res: Response; r: Request },
    boundary: string,
    counted: () => void,
  ): Promise<string | null> {
    const splitter = new MultipartSplitter(boundary);
    const take = (parts: (CameraFrame | PartFault)[]) => {
      for (const part of parts) {
        if ("fault" in part) this.#fault(part.fault, `${part.bytes} bytes`);
        else {
          this.#frame(part);
          counted();
        }
      }
    };
    const end = await this.#read(req, (piece, ts) => take(splitter.push(piece, ts)));
    // A part with no Content-Length ends at the next delimiter: the last one before a silence or
    // an end is whole if its JPEG is.
    take(splitter.end());
    return this.#ended(end);
  }

  /** Polls snapshots at `fps` until a request fails; the reason, or null at shutdown. */
  async #snapshots(
    first: { res: Response; r: Request },
    signal: AbortSignal,
    counted: () => void,
  ): Promise<string | null> {
    const interval = 1000 / this.#o.fps;
    let due = this.#clock.monotonic();
    let req: { res: Response; r: Request } | null = first;
    while (req) {
      const chunks: Uint8Array[] = [];
      let ts = 0;
      const end = await this.#read(req, (piece, at) => {
        if (chunks.length === 0) ts = at;
        chunks.push(piece);
      });
      if (end !== "end") return this.#ended(end);
      const body = chunks.length === 1 ? chunks[0] : concat(chunks);
      const size = jpegSize(body);
      if (typeof size === "string") this.#fault(size, `${body.length} bytes`);
      else {
        this.#frame({ jpeg: body, ts, size });
        counted();
      }
      const now = this.#clock.monotonic();
      due += interval;
      if (due < now) due += Math.ceil((now - due) / interval) * interval; // overran: skip those requests
      await sleep(due - now, signal);
      if (signal.aborted) return null;
      req = await this.#request(signal);
    }
    return "request failed";
  }

  /** A GET bounded by the timeout; null (and the fault counted) unless it answered 2xx. */
  async #request(signal: AbortSignal): Promise<{ res: Response; r: Request } | null> {
    const r: Request = { ctl: new AbortController(), timedOut: false, unlink: () => {} };
    // The actor's stop aborts the request and the reading of its body (#read unlinks it).
    const onAbort = () => r.ctl.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    r.unlink = () => {
      clearTimeout(r.timer);
      signal.removeEventListener("abort", onAbort);
    };
    this.#arm(r);
    try {
      const res = await fetch(this.#url, { signal: r.ctl.signal, headers: this.#headers });
      if (res.ok) return { res, r };
      this.#fault("http_status", `HTTP ${res.status} ${res.statusText}`.trim());
      await res.body?.cancel();
    } catch (e) {
      if (!signal.aborted) this.#fault(r.timedOut ? "timeout" : "unreachable", message(e));
    }
    r.unlink();
    return null;
  }

  /** The silence timer: the request is aborted if nothing comes for the timeout. */
  #arm(r: Request): void {
    clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      r.timedOut = true;
      r.ctl.abort();
    }, this.#o.timeoutMs);
  }

  /** Reads a body to its end, each piece timed on arrival (wall-clock ms). */
  async #read(
    { res, r }: { res: Response; r: Request },
    onPiece: (piece: Uint8Array, ts: number) => void,
  ): Promise<"end" | "timeout" | "lost" | "shutdown"> {
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        // A piece read as the session was aborted is not delivered: the encoder may be stopping.
        if (r.ctl.signal.aborted) return r.timedOut ? "timeout" : "shutdown";
        if (done) return "end";
        this.#arm(r);
        onPiece(value, this.#clock.now());
      }
    } catch {
      return r.timedOut ? "timeout" : r.ctl.signal.aborted ? "shutdown" : "lost";
    } finally {
      r.unlink();
      reader.releaseLock();
      await res.body!.cancel().catch(() => {});
    }
  }

  /** How a body's end ends the session: counted and said, or null at shutdown. */
  #ended(end: "end" | "timeout" | "lost" | "shutdown"): string | null {
    if (end === "shutdown") return null;
    if (end === "timeout") {
      this.#fault("timeout", `nothing received for ${this.#o.timeoutMs} ms`);
      return `nothing received for ${this.#o.timeoutMs} ms`;
    }
    this.#fault("lost", end === "end" ? "the camera ended its stream" : "the connection broke");
    return end === "end" ? "the camera ended its stream" : "the connection broke";
  }

  #frame(frame: CameraFrame): void {
    const { metrics, encoder, status } = this.#o;
    status.lastDataMs = frame.ts;
    metrics.cameraFrames.inc(this.#labels);
    if (this.#episode) {
      this.#log.info("camera frames pass again", {
        after: this.#episode.reason,
        faults: this.#episode.count,
      });
      this.#episode = null;
    }
    if (!encoder.send({ type: "jpeg", frame })) {
      if (this.#queueFull++ === 0) this.#log.warn("encoder queue full: dropping JPEGs until it drains");
      metrics.framesDropped.inc({ ...this.#labels, reason: "queue_full" });
    } else if (this.#queueFull > 0) {
      this.#log.warn("encoder queue drained", { dropped: this.#queueFull });
      this.#queueFull = 0;
    }
  }

  /** Counts a fault; logs it when it starts an episode (the first, or another reason than the last). */
  #fault(reason: CameraFault, detail: string): void {
    this.#o.metrics.cameraErrors.inc({ ...this.#labels, reason });
    this.#o.status.reason = `${reason}: ${detail}`;
    if (this.#episode?.reason === reason) {
      this.#episode.count++;
      return;
    }
    this.#log.warn("camera fault", { reason, detail, url: this.#o.stream.shownUrl });
    this.#episode = { reason, count: 1 };
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
