import { WebSocketServer } from "ws";
import type { WebSocket as WsSocket } from "ws";
import { type AccessUnit, AccessUnitAssembler } from "../ingest/h264/access_unit.ts";
import { splitAnnexB } from "../ingest/h264/annexb.ts";
import { isSlice, NalType, nalType } from "../ingest/h264/nal.ts";
import { logger } from "../runtime/log.ts";
import { sleep } from "../runtime/sleep.ts";
import { concat } from "../runtime/bytes.ts";

const START_CODE = Uint8Array.of(0, 0, 0, 1);

/** An access unit of a source file, as NAL units with their start codes. */
export interface SourceFrame {
  nals: Uint8Array[];
  idr: boolean;
}

/** Splits an Annex-B file into access units (parameter sets stay in the unit they precede). */
export function sourceFrames(h264: Uint8Array): SourceFrame[] {
  const asm = new AccessUnitAssembler();
  const frames: SourceFrame[] = [];
  const add = (au: AccessUnit | null) => {
    if (au) frames.push({ nals: au.nals.map((n) => withStartCode(n)), idr: au.idr });
  };
  for (const nal of splitAnnexB(h264, 0)) asm.push(nal).forEach(add);
  add(asm.flush());
  return frames;
}

function withStartCode(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + nal.length);
  out.set(START_CODE);
  out.set(nal, 4);
  return out;
}

/**
 * Something that happens to the stream just before frame `frame` (counting across loops):
 * - `stall`: the link stops for `ms`; the frames it owes then go out at once (a burst);
 * - `pause`: the encoder stops for `ms`; nothing is owed, pacing resumes;
 * - `drop`: every consumer's connection is cut without a close frame, after `message` messages of
 *   the frame (0: before it); frames go on (to nobody).
 */
export interface Incident {
  frame: number;
  kind: "stall" | "pause" | "drop";
  ms?: number;
  message?: number;
}

export interface RelayOptions {
  frames: SourceFrame[];
  hostname?: string;
  port?: number;
  /** Milliseconds between frame i-1 and frame i on the producer's schedule (the pacing; jitter goes here). */
  intervalMs(i: number): number;
  /** Play the frames this many times (Infinity: until closed). */
  loops?: number;
  /** "nal": one NAL unit per message, as the relay does; "au": one access unit per message. */
  mode?: "nal" | "au";
  /**
   * The upstream drone stack's interleaving: it sends no SEI or AUD, an SPS, then SPS+PPS in one
   * message, and repeats that pair before every IDR slice.
   */
  upstream?: boolean;
  /** "frame": each slice of a picture goes out one frame interval after the last (the upstream simulator's pacing). */
  slicePacing?: "together" | "frame";
  incidents?: Incident[];
  /** Start pacing once this many consumers are connected, so they miss nothing (tests, benchmark). */
  startAfterClients?: number;
  /**
   * Called when frame i (counting across loops) has been sent, with the wall-clock time its first
   * byte went and how many consumers it went to.
   */
  onFrame?(i: number, sentAt: number, frame: SourceFrame, consumers: number): void;
}

export interface Relay {
  url: string;
  port: number;
  /** Resolves when every frame has been sent (never, with infinite loops). */
  finished: Promise<void>;
  /** Resolves when `startAfterClients` consumers (default 1) have connected. */
  waitForClient(): Promise<void>;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** The parameter sets the upstream relay last saw, which it repeats before IDR slices. */
export interface UpstreamState {
  sps?: Uint8Array;
  pair?: Uint8Array;
}

/**
 * The messages a frame goes out as, each a list of NAL units sent in one message; `state` carries
 * the upstream relay's parameter sets from frame to frame.
 *
 * @example
 * const state = {};
 * const messages = frames.flatMap((f) => frameMessages(f, { upstream: true }, state));
 */
export function frameMessages(
  frame: SourceFrame,
  o: Pick<RelayOptions, "mode" | "upstream">,
  paramSets: UpstreamState,
): Uint8Array[][] {
  if (o.mode === "au") return [frame.nals];
  if (!o.upstream) return frame.nals.map((n) => [n]);
  const out: Uint8Array[][] = [];
  for (const nal of frame.nals) {
    const type = nalType(nal.subarray(4));
    if (type === NalType.sps) {
      paramSets.sps = nal;
      out.push([nal]);
    } else if (type === NalType.pps && paramSets.sps) {
      paramSets.pair = concat([paramSets.sps, nal]);
      out.push([paramSets.pair]);
    } else if (type === NalType.idr) {
      if (paramSets.sps && paramSets.pair) out.push([paramSets.sps], [paramSets.pair]);
      out.push([nal]);
    } else if (type === NalType.slice) out.push([nal]);
  }
  return out;
}

/**
 * A stand-in for the relay server's consumer endpoint (`/ws/video/consume`): on connect it sends the
 * cached SPS+PPS in one message, then the live stream on the producer's schedule: a frame late
 * because of a stall goes out as soon as it can, so a stall ends in a burst. It answers "ping"
 * with "pong". Used by `deno task demo`, the tests and the benchmark.
 *
 * @example
 * const relay = await startRelay({ frames: sourceFrames(h264), intervalMs: () => 1000 / 30, loops: Infinity });
 * // VIDEO_STREAM_URL=relay.url
 */
export async function startRelay(o: RelayOptions): Promise<Relay> {
  const log = logger("relay");
  const sockets = new Set<WsSocket>();
  const firstSets = o.frames.flatMap((f) => f.nals).filter((n) => {
    const t = nalType(n.subarray(4));
    return t === NalType.sps || t === NalType.pps;
  });
  let cache = concat(firstSets.slice(0, 2));
  const abort = new AbortController();
  let clientsArrived: () => void;
  const enoughClients = new Promise<void>((r) => (clientsArrived = r));
  let connections = 0;
  const hostname = o.hostname ?? "127.0.0.1";
  const server = new WebSocketServer({ host: hostname, port: o.port ?? 0, path: "/ws/video/consume" });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const port = (server.address() as { port: number }).port;
  server.on("connection", (socket: WsSocket) => {
    sockets.add(socket);
    socket.send(cache);
    socket.on("message", (data: unknown, binary: boolean) => {
      if (!binary && String(data) === "ping") socket.send("pong");
    });
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => sockets.delete(socket));
    if (++connections >= (o.startAfterClients ?? 1)) clientsArrived();
  });
  /** Sends one message to every open consumer; returns how many it went to. */
  const broadcast = (nals: Uint8Array[]): number => {
    const data = nals.length === 1 ? nals[0] : concat(nals);
    let sent = 0;
    for (const s of sockets) if (s.readyState === s.OPEN) (s.send(data), sent++);
    return sent;
  };
  /** The relay caches the last SPS+PPS it relayed, for consumers that join later. */
  const updateCache = (frame: SourceFrame) => {
    const sps = frame.nals.filter((n) => nalType(n.subarray(4)) === NalType.sps);
    const pps = frame.nals.filter((n) => nalType(n.subarray(4)) === NalType.pps);
    if (sps.length && pps.length) cache = concat([sps[0], pps[0]]);
  };
  const now = () => performance.timeOrigin + performance.now();
  const finished = (async () => {
    const loops = o.loops ?? 1;
    if (o.startAfterClients) {
      await Promise.race([enoughClients, new Promise((r) => abort.signal.addEventListener("abort", r))]);
    }
    const paramSets: UpstreamState = {};
    let due = now();
    let i = 0;
    for (let loop = 0; loop < loops && !abort.signal.aborted; loop++) {
      for (const frame of o.frames) {
        const interval = o.intervalMs(i);
        due += interval;
        const incidents = (o.incidents ?? []).filter((x) => x.frame === i);
        for (const incident of incidents) {
          if (incident.kind === "pause") due += incident.ms ?? 0;
          else if (incident.kind === "stall") await sleep(incident.ms ?? 0, abort.signal);
        }
        const drop = (m: number) => {
          if (!incidents.some((x) => x.kind === "drop" && (x.message ?? 0) === m)) return;
          for (const s of sockets) s.terminate();
          log.info("connections dropped without a close frame", { frame: i, message: m });
        };
        let sentAt = 0;
        let consumers = Infinity; // the fewest consumers any message of the frame reached
        for (const [m, message] of frameMessages(frame, o, paramSets).entries()) {
          drop(m);
          const slice = message.some((n) => isSlice(nalType(n.subarray(4))));
          if (m === 0 || (o.slicePacing === "frame" && slice && sentAt > 0)) {
            if (m > 0) due += interval;
            // A frame that is due goes at once: after a stall the owed frames leave as one burst.
            if (due > now()) await sleep(due - now(), abort.signal);
          }
          if (abort.signal.aborted) return;
          consumers = Math.min(consumers, broadcast(message));
          if (sentAt === 0 && slice) sentAt = now();
        }
        updateCache(frame);
        o.onFrame?.(i++, sentAt || now(), frame, consumers);
      }
    }
    // send() only queues the write: yield once so the last frame leaves before the caller's next
    // work (which would otherwise delay it and skew its send time).
    await sleep(0);
  })();
  log.debug("relay listening", { port });
  return {
    url: `ws://${hostname}:${port}/ws/video/consume`,
    port,
    finished,
    waitForClient: () => enoughClients,
    get connections() {
      return connections;
    },
    async close() {
      abort.abort();
      await finished.catch(() => {});
      for (const s of sockets) s.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
