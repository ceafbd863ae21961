/**
 * What one chaos round runs against: the real service (restartable on the same storage), a relay
 * playing an ffmpeg pattern in real time behind a TCP proxy, the real broker behind another, a
 * subscriber on the broker, and optionally a small tmpfs as the storage (root only).
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { type RelayOptions, sourceFrames, startRelay } from "../../src/tools/relay.ts";
import { brokerUrl, type Received, subscribe } from "../broker_helpers.ts";
import { type LogLine, mountTmpfs, nowMs, pattern, ServiceProcess, sumMetric } from "../helpers.ts";
import { tcpProxy } from "../tcp_proxy.ts";

export const FPS = 30;
export const FRAGMENT_MS = 500;
/** STREAM_TIMEOUT_SECONDS of every round: /healthz must tell a hung relay within it. */
export const STREAM_TIMEOUT_S = 2;

export interface WorldOptions {
  env?: Record<string, string>;
  /** The storage is a tmpfs of this many MiB (root only). */
  tmpfsMib?: number;
  relay?: Partial<RelayOptions>;
  /** The pattern the relay plays (PATTERN by default). */
  pattern?: typeof PATTERN;
  /** A source of our own instead of the pattern relay; it records what it sends in `sent`. */
  source?: (sent: Sent[]) => Promise<Source>;
}

/** A frame as the relay sent it: when, and to how many consumers. */
export interface Sent {
  at: number;
  consumers: number;
}

/** A relay-like WebSocket server on 127.0.0.1:`port`. */
export interface Source {
  port: number;
  close(): Promise<void>;
  /** Resolves when a finite source has sent everything. */
  finished: Promise<void>;
}

export class World {
  readonly relayProxy;
  readonly brokerProxy = tcpProxy(5672);
  readonly exchange = `skyreel_chaos_${crypto.randomUUID().slice(0, 8)}`;
  /** Every service process of the round, in order; the last may be running. */
  readonly runs: ServiceProcess[] = [];
  /** Save jobs the service accepted (202/async), by id. */
  readonly jobs = new Set<string>();
  /** True once a process of the round was killed: events may then repeat (at-least-once). */
  killed = false;
  /**
   * True once the broker connection was cut with publishes in flight (reset, refused, or silenced
   * until the heartbeat gives up): a confirm may be lost after the broker routed the event, which
   * is then sent again.
   */
  brokerCut = false;
  #subscriber: Awaited<ReturnType<typeof subscribe>> | null = null;

  private constructor(
    readonly sent: Sent[],
    readonly storage: string,
    readonly uploads: string,
    readonly tmpfs: boolean,
    readonly env: Record<string, string>,
    readonly source: Source,
  ) {
    this.relayProxy = tcpProxy(source.port);
  }

  static async create(o: WorldOptions = {}): Promise<World> {
    const root = await Deno.makeTempDir({ prefix: "skyreel-chaos-" });
    const storage = join(root, "rec"), uploads = join(root, "uploads");
    if (o.tmpfsMib) mountTmpfs(root, o.tmpfsMib);
    const sent: Sent[] = [];
    const source = o.source ? await o.source(sent) : await startRelay({
      frames: sourceFrames(await pattern(o.pattern ?? PATTERN)),
      intervalMs: () => 1000 / FPS,
      loops: Infinity,
      startAfterClients: 1, // the first connection starts at a keyframe: no frame is skipped
      ...o.relay,
      onFrame: (_i, at, _f, consumers) => sent.push({ at, consumers }),
    });
    const world = new World(sent, storage, uploads, !!o.tmpfsMib, {}, source);
    Object.assign(world.env, {
      VIDEO_STREAM_URL: `ws://127.0.0.1:${world.relayProxy.port}/ws/video/consume`,
      STORAGE_PATH: storage,
      UPLOAD_PATH: uploads,
      AMQP_URL: brokerUrl(world.brokerProxy.port),
      EVENTS_EXCHANGE: world.exchange,
      FRAGMENT_DURATION_MS: String(FRAGMENT_MS),
      VIDEO_CHUNK_DURATION_SECONDS: "2",
      STREAM_TIMEOUT_SECONDS: String(STREAM_TIMEOUT_S),
      RECONNECT_MAX_SECONDS: "1",
      FSYNC_FRAGMENTS: "false",
      ...o.env,
    });
    world.#subscriber = await subscribe(world.exchange);
    return world;
  }

  get service(): ServiceProcess | null {
    return this.runs.at(-1) ?? null;
  }

  get received(): Received[] {
    return this.#subscriber?.received ?? [];
  }

  /** Starts a service process on the round's storage; resolves when it records (recovery done). */
  async start(): Promise<ServiceProcess> {
    const s = new ServiceProcess(this.env);
    this.runs.push(s);
    await s.waitForLog((l) => l.msg === "recording", "the service recording", 30_000);
    return s;
  }

  /** SIGKILL now; the wall-clock ms it was sent. */
  async kill(): Promise<number> {
    const at = nowMs();
    this.service?.signal("SIGKILL");
    await this.service?.exit();
    this.killed = true;
    return at;
  }

  /** SIGTERM, and the exit code. */
  async stop(): Promise<number> {
    const s = this.service!;
    s.signal("SIGTERM");
    return (await s.exit()).code;
  }

  async health(): Promise<Record<string, any>> {
    const port = await this.service!.port("http");
    return await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.json());
  }

  async api(path: string, init?: RequestInit): Promise<Response> {
    return await fetch(`http://127.0.0.1:${await this.service!.port("http")}${path}`, init);
  }

  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sumMetric(await this.service!.metrics(), name, labels);
  }

  /** Frames the relay sent to a consumer at or before `ms`. */
  sentBy(ms: number): number {
    return this.sent.filter((s) => s.consumers > 0 && s.at <= ms).length;
  }

  /** Ends the source (a clean close) and waits for the service to see the connection end. */
  async endSource(): Promise<void> {
    const s = this.service!;
    const ends = s.logs.filter((l) => l.msg === "disconnected").length;
    await this.source.close();
    await s.waitForLog(
      (l) => l.msg === "disconnected" && s.logs.filter((m) => m.msg === "disconnected").length > ends,
      "the end of the source",
    );
  }

  /** Frames the index holds in chunks that started before `ms` (deleted ones included). */
  indexedFrames(ms = Infinity): number {
    const db = new DatabaseSync(join(this.storage, "index.db"), { readOnly: true });
    try {
      const row = db.prepare("SELECT coalesce(sum(frames), 0) AS n FROM chunks WHERE start_ms < ?")
        .get(Number.isFinite(ms) ? ms : Number.MAX_SAFE_INTEGER) as { n: number };
      return row.n;
    } finally {
      db.close();
    }
  }

  /** Every log line of every run. */
  get logs(): LogLine[] {
    return this.runs.flatMap((r) => r.logs);
  }

  async close(): Promise<void> {
    for (const r of this.runs) {
      r.signal("SIGKILL");
      await r.exit();
    }
    await this.source.close();
    this.relayProxy.close();
    this.brokerProxy.close();
    await this.#subscriber?.close();
    const root = join(this.storage, "..");
    if (Deno.env.get("CHAOS_KEEP")) {
      await Deno.writeTextFile(join(root, "service.log"), this.logs.map((l) => JSON.stringify(l)).join("\n"));
      return console.log(`chaos: kept ${root} (service.log: every run's log)`);
    }
    if (this.tmpfs) new Deno.Command("umount", { args: [root] }).outputSync();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** 320x240, 1 s GOP, 300 kb/s: small enough that many rounds fit in a minute. */
export const PATTERN = { width: 320, height: 240, fps: FPS, seconds: 4, gop: FPS, bitrateKbps: 300 };

/** Resolves after `ms`, for a fault's chosen duration (not a wait for an event). */
export function hold(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
