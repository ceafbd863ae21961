import { AccessUnitAssembler } from "./h264/access_unit.ts";
import { splitAnnexB } from "./h264/annexb.ts";
import { NalType, nalType } from "./h264/nal.ts";
import { logger } from "./log.ts";
import { sleep } from "./sleep.ts";

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
  const add = (au: ReturnType<AccessUnitAssembler["flush"]>) => {
    if (au) frames.push({ nals: au.nals.map((n) => withStartCode(n)), idr: au.idr });
  };
  for (const nal of splitAnnexB(h264, 0)) add(asm.push(nal));
  add(asm.flush());
  return frames;
}

function withStartCode(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + nal.length);
  out.set(START_CODE);
  out.set(nal, 4);
  return out;
}

export interface RelayOptions {
  frames: SourceFrame[];
  hostname?: string;
  port?: number;
  /** Milliseconds to wait before frame i (the pacing; jitter goes here). */
  intervalMs(i: number): number;
  /** Play the frames this many times (Infinity: until closed). */
  loops?: number;
  /** "nal": one NAL unit per message, as the relay does; "au": one access unit per message. */
  mode?: "nal" | "au";
  /** Start pacing once this many consumers are connected, so they miss nothing (tests, benchmark). */
  startAfterClients?: number;
  /** Called when frame i (counting across loops) has been sent, with its wall-clock send time. */
  onFrame?(i: number, sentAt: number, frame: SourceFrame): void;
}

export interface Relay {
  url: string;
  port: number;
  /** Resolves when every frame has been sent (never, with infinite loops). */
  finished: Promise<void>;
  /** Resolves when `startAfterClients` consumers (default 1) have connected. */
  waitForClient(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A stand-in for the relay server's consumer endpoint (`/ws/video/consume`): on connect it sends the
 * cached SPS+PPS in one message, then the live stream, paced by `intervalMs`. It answers "ping"
 * with "pong". Used by `deno task demo`, the tests and the benchmark.
 *
 * @example
 * const relay = startRelay({ frames: sourceFrames(h264), intervalMs: () => 1000 / 30, loops: Infinity });
 * // VIDEO_STREAM_URL=relay.url
 */
export function startRelay(o: RelayOptions): Relay {
  const log = logger("relay");
  const sockets = new Set<WebSocket>();
  const paramSets = o.frames.flatMap((f) => f.nals).filter((n) => {
    const t = nalType(n.subarray(4));
    return t === NalType.sps || t === NalType.pps;
  });
  let cache = concatBytes(paramSets.slice(0, 2));
  const abort = new AbortController();
  let clientsArrived: () => void;
  const enoughClients = new Promise<void>((r) => (clientsArrived = r));
  let connected = 0;
  const server = Deno.serve(
    { hostname: o.hostname ?? "127.0.0.1", port: o.port ?? 0, onListen: () => {} },
    (req) => {
      if (new URL(req.url).pathname !== "/ws/video/consume" || req.headers.get("upgrade") !== "websocket") {
        return new Response("not found", { status: 404 });
      }
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.binaryType = "arraybuffer";
      socket.onopen = () => {
        sockets.add(socket);
        socket.send(cache);
        if (++connected >= (o.startAfterClients ?? 1)) clientsArrived();
      };
      socket.onmessage = (e) => {
        if (e.data === "ping") socket.send("pong");
      };
      socket.onclose = () => sockets.delete(socket);
      socket.onerror = () => sockets.delete(socket);
      return response;
    },
  );
  const port = (server.addr as Deno.NetAddr).port;
  const broadcast = (data: Uint8Array) => {
    for (const s of sockets) if (s.readyState === WebSocket.OPEN) s.send(data);
  };
  const finished = (async () => {
    const loops = o.loops ?? 1;
    let i = 0;
    if (o.startAfterClients) {
      await Promise.race([
        enoughClients,
        new Promise((r) => abort.signal.addEventListener("abort", r)),
      ]);
    }
    for (let loop = 0; loop < loops && !abort.signal.aborted; loop++) {
      for (const frame of o.frames) {
        await sleep(o.intervalMs(i), abort.signal);
        if (abort.signal.aborted) return;
        const sps = frame.nals.filter((n) => nalType(n.subarray(4)) === NalType.sps);
        const pps = frame.nals.filter((n) => nalType(n.subarray(4)) === NalType.pps);
        if (sps.length && pps.length) cache = concatBytes([sps[0], pps[0]]);
        const sentAt = performance.timeOrigin + performance.now();
        if (o.mode === "au") broadcast(concatBytes(frame.nals));
        else for (const nal of frame.nals) broadcast(nal);
        o.onFrame?.(i++, sentAt, frame);
      }
    }
    // send() only queues the write: yield once so the last frame leaves before the caller's next
    // work (which would otherwise delay it and skew its send time).
    await sleep(0);
  })();
  log.debug("relay listening", { port });
  return {
    url: `ws://${o.hostname ?? "127.0.0.1"}:${port}/ws/video/consume`,
    port,
    finished,
    waitForClient: () => enoughClients,
    async close() {
      abort.abort();
      await finished;
      for (const s of sockets) s.close();
      await server.shutdown();
    },
  };
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
