/** Shared by the tests: the real service as a subprocess, ffmpeg-made streams, ffprobe's verdict. */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { type Frame, FrameParser } from "../src/ingest/h264/frame_parser.ts";
import { ConfigError, loadConfig } from "../src/app/config.ts";
import { resolveFfmpeg } from "../src/app/ffmpeg.ts";
import { testPattern, type TestPatternOptions } from "../src/tools/ffmpeg.ts";
import { launchArgs, recorderEnv } from "../src/app/launch.ts";
import { type RelayOptions, type SourceFrame, sourceFrames, startRelay } from "../src/tools/relay.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
export const FIXTURE = join(ROOT, "../shared/fixtures/drone-854x480-baseline.h264");

/** The Annex-B stream `h264` (the drone fixture by default) as the connection's parser makes it pictures. */
export function parsedFrames(h264: Uint8Array = Deno.readFileSync(FIXTURE)): Frame[] {
  const parser = new FrameParser();
  return [...parser.message(h264, 0), ...parser.end()];
}
/** The arguments of a deno.json task after its leading `deno` (every task here is one command). */
export function taskArgs(task: string): string[] {
  const line: string = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json"))).tasks[task];
  return line.split(/\s+/).slice(1);
}

/**
 * The `deno` arguments the launcher of `deno task start` would run the recorder with under `env`
 * (merged over this process's environment, as the child inherits it): every test that starts the
 * service runs it with the least-privilege flags. A configuration the service refuses gets only
 * what it takes to read and refuse it.
 */
function serviceArgs(env: Record<string, string>): string[] {
  try {
    return launchArgs("start", loadConfig({ ...Deno.env.toObject(), ...env }));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return ["run", "--allow-env", "--allow-read", join(ROOT, "src/app/main.ts")];
  }
}

/**
 * The ffmpeg that makes test inputs: FFMPEG_PATH, else Debian's (the judge's own version), else
 * the recorder's choice.
 */
export async function ffmpegPath(): Promise<string> {
  const env = Deno.env.toObject();
  const bin = await resolveFfmpeg({ ...env, FFMPEG_PATH: env.FFMPEG_PATH || "ffmpeg" });
  if (!bin) throw new Error("tests need ffmpeg: set FFMPEG_PATH or install it (apt-get install -y ffmpeg)");
  return bin;
}

const patterns = new Map<string, Promise<Uint8Array>>();

/** An ffmpeg testsrc2 H.264 stream, made once per options in a test run. */
export function pattern(o: TestPatternOptions): Promise<Uint8Array> {
  const key = JSON.stringify(o);
  if (!patterns.has(key)) patterns.set(key, ffmpegPath().then((bin) => testPattern(bin, o)));
  return patterns.get(key)!;
}

/** A seeded PRNG (mulberry32), so random tests repeat. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type LogLine = Record<string, unknown> & { level: string; actor: string; msg: string };

/** The recorder running as its own process, with its JSON log lines collected as they come. */
export class ServiceProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  #child: Deno.ChildProcess;
  #waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  #reading: Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;

  /**
   * `command`: run this (a compiled binary, `deno task start`) instead of src/app/main.ts, in `cwd`
   * (the checkout by default); `clearEnv`: with `env` only, not this process's environment.
   */
  constructor(
    env: Record<string, string>,
    command?: string[],
    o: { cwd?: string; clearEnv?: boolean } = {},
  ) {
    env = { LOG_LEVEL: "info", HTTP_PORT: "0", METRICS_PORT: "0", NO_COLOR: "1", ...env };
    this.#child = new Deno.Command(command?.[0] ?? Deno.execPath(), {
      args: command ? command.slice(1) : serviceArgs(env),
      cwd: command ? o.cwd ?? ROOT : undefined, // relative paths resolve where serviceArgs resolved them
      env: command ? env : { ...recorderEnv({ ...Deno.env.toObject(), ...env }), ...env },
      clearEnv: o.clearEnv,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    this.#reading = Promise.all([
      this.#lines(this.#child.stdout, true),
      this.#lines(this.#child.stderr, false),
    ])
      .then(() => {});
    this.status = this.#child.status;
  }

  async #lines(stream: ReadableStream<Uint8Array>, json: boolean): Promise<void> {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!json) {
          this.stderr.push(line);
          continue;
        }
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line);
        } catch {
          this.stderr.push(line);
          continue;
        }
        this.logs.push(parsed);
        this.#waiters = this.#waiters.filter((w) => !(w.pred(parsed) && (w.resolve(parsed), true)));
      }
    }
  }

  /** The first log line (past or future) that matches; rejects if the process exits first or after `timeoutMs`. */
  waitForLog(pred: (l: LogLine) => boolean, what = "log line", timeoutMs = 60_000): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (l: LogLine) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.#waiters.push({ pred, resolve: done });
      this.status.then((s) => {
        clearTimeout(timer);
        reject(new Error(`service exited (${s.code}) before ${what}; stderr: ${this.stderr.join("\n")}`));
      });
    });
  }

  async port(actor: "http" | "metrics"): Promise<number> {
    const l = await this.waitForLog((l) => l.actor === actor && l.msg === "listening", `${actor} listening`);
    return l.port as number;
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${await this.port("metrics")}/metrics`);
    return await res.text();
  }

  /** Sum of a metric's samples whose labels contain `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return sumMetric(await this.metrics(), name, labels);
  }

  get pid(): number {
    return this.#child.pid;
  }

  signal(sig: Deno.Signal): void {
    try {
      this.#child.kill(sig);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e; // already exited
    }
  }

  async exit(): Promise<Deno.CommandStatus> {
    const s = await this.status;
    await this.#reading;
    return s;
  }
}

export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).some(([k, v]) => !line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

export interface ProbedFrame {
  ptsMs: number;
  key: boolean;
}

/**
 * The grid step of a chunk's presentation times (ms), asserting every interval is a whole number
 * of it (the timing model: frames sit on the stream's frame grid).
 */
export function gridStep(ptsMs: number[]): number {
  const deltas = ptsMs.slice(1).map((t, i) => t - ptsMs[i]);
  const step = Math.min(...deltas);
  for (const d of deltas) {
    const steps = Math.round(d / step);
    if (steps < 1 || Math.abs(d - steps * step) > 0.02) {
      throw new Error(`interval ${d} ms is not a whole number of ${step} ms`);
    }
  }
  return step;
}

/** Packets of a file as ffprobe reads them (presentation time in ms, keyframe flag). */
export async function probeFrames(path: string): Promise<ProbedFrame[]> {
  const { stdout, success, stderr } = await new Deno.Command("ffprobe", {
    args: [
      "-v",
      "error",
      "-select_streams",
      "v",
      "-show_entries",
      "packet=pts_time,flags",
      "-of",
      "csv=p=0",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffprobe ${path}: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout).trim().split("\n").filter(Boolean).map((l) => {
    const [pts, flags] = l.split(",");
    return { ptsMs: Number(pts) * 1000, key: flags.startsWith("K") };
  });
}

/**
 * What `ffmpeg -v error -i FILE -f null -` prints (empty: it decodes cleanly, timestamps included).
 * `timing: false` leaves out the null muxer's check of output timestamps: for a stream replayed
 * several times faster than its encoded frame rate, which ffmpeg then takes as the output rate.
 */
export async function decodeErrors(path: string, timing = true): Promise<string> {
  const { stderr } = await new Deno.Command(await ffmpegPath(), {
    args: [
      "-v",
      "error",
      "-i",
      path,
      ...(timing ? [] : ["-fps_mode", "passthrough", "-enc_time_base", "-1"]),
      "-f",
      "null",
      "-",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(stderr).trim();
}

/**
 * The MD5 of every picture ffmpeg decodes from a file, in decoding order (`-f framemd5`, no frame
 * dropped or repeated for timing). `h264`: the file is an Annex-B elementary stream.
 */
export async function frameMd5s(path: string, h264 = false): Promise<string[]> {
  const { stdout, stderr, success } = await new Deno.Command(await ffmpegPath(), {
    args: [
      "-v",
      "error",
      ...(h264 ? ["-f", "h264"] : []),
      "-i",
      path,
      "-fps_mode",
      "passthrough",
      "-autoscale", // a change of picture size mid-stream: hash each picture as it is, not rescaled
      "0",
      "-f",
      "framemd5",
      "-",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffmpeg framemd5 ${path}: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout).split("\n").filter((l) => l && !l.startsWith("#"))
    .map((l) => l.slice(l.lastIndexOf(",") + 1).trim());
}

/** The index's rows, read directly (the service must have exited). */
export function indexRows(
  storage: string,
): { sessions: Record<string, any>[]; chunks: Record<string, any>[] } {
  const db = new DatabaseSync(join(storage, "index.db"), { readOnly: true });
  try {
    const spread = (rows: unknown[]) => rows.map((r) => ({ ...(r as object) })) as Record<string, any>[];
    return {
      sessions: spread(db.prepare("SELECT * FROM sessions ORDER BY start_ms").all()),
      chunks: spread(db.prepare("SELECT * FROM chunks ORDER BY stream, start_ms").all()),
    };
  } finally {
    db.close();
  }
}

/** Uniform intervals between lo and hi ms from a seeded PRNG: a jittered frame rate. */
export function jitter(seed: number, lo: number, hi: number): (i: number) => number {
  const r = rng(seed);
  return () => lo + r() * (hi - lo);
}

/**
 * Waits for a state the code under test reaches on its own schedule (a restart after its backoff,
 * a row in the index): polls every `pollMs`, fails after `timeoutMs`.
 */
export async function until(
  pred: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
  pollMs = 20,
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Whether `path` exists now. */
export function exists(path: string): Promise<boolean> {
  return Deno.stat(path).then(() => true, () => false);
}

/**
 * Sends a video-store camera command to the recorder at `base` (`http://127.0.0.1:PORT`) and returns
 * its answer, which must come with a 200 (the answer is in the failure message).
 */
export async function command(base: string, body: Record<string, unknown>) {
  const res = await fetch(`${base}/command`, { method: "POST", body: JSON.stringify(body) });
  const answer = await res.json();
  if (res.status !== 200) throw new Error(`${body.command}: ${res.status} ${JSON.stringify(answer)}`);
  return answer;
}

/** Wall-clock now with sub-millisecond resolution. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A small pattern for tests about files and events rather than pictures: 640x360, 5 s, 30 fps, a keyframe a second. */
export const SMALL_PATTERN: TestPatternOptions = {
  width: 640,
  height: 360,
  fps: 30,
  seconds: 5,
  gop: 30,
  bitrateKbps: 800,
};

/** ffprobe's duration of a file, in ms. */
export async function probeDurationMs(path: string): Promise<number> {
  const { stdout } = await new Deno.Command("ffprobe", {
    args: ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(stdout).trim()) * 1000;
}

/** A frame as the relay sent it: its index in the source, when, and to how many consumers. */
export interface SentFrame {
  i: number;
  at: number;
  consumers: number;
}

/**
 * Plays `frames` through a relay-like source (`relay` sets the producer's behaviour) into the real
 * service, and stops it cleanly once the source is done and the connection has closed. Returns the
 * storage folder (the caller removes it), each frame as sent, the metrics and the log just before
 * the stop.
 */
export async function recordRelay(o: {
  frames: SourceFrame[];
  intervalMs: number | ((i: number) => number);
  relay?: Partial<RelayOptions>;
  env?: Record<string, string>;
}): Promise<{ storage: string; sent: SentFrame[]; metrics: string; logs: LogLine[] }> {
  const sent: SentFrame[] = [];
  const interval = o.intervalMs;
  const relay = await startRelay({
    frames: o.frames,
    intervalMs: typeof interval === "number" ? () => interval : interval,
    startAfterClients: 1,
    ...o.relay,
    onFrame: (i, at, _frame, consumers) => sent.push({ i, at, consumers }),
  });
  const storage = await Deno.makeTempDir();
  const service = new ServiceProcess({ VIDEO_STREAM_URL: relay.url, STORAGE_PATH: storage, ...o.env });
  try {
    await relay.finished;
    const connections = relay.connections;
    await relay.close();
    let closes = 0;
    await service.waitForLog(
      (l) => l.msg === "disconnected" && ++closes === connections,
      "the last disconnect",
    );
    const metrics = await service.metrics();
    service.signal("SIGTERM");
    const status = await service.exit();
    if (status.code !== 0) throw new Error(`service exited ${status.code}: ${service.stderr.join("\n")}`);
    return { storage, sent, metrics, logs: service.logs };
  } finally {
    service.signal("SIGKILL");
    await service.exit();
    await relay.close();
  }
}

/**
 * Records an ffmpeg pattern through the real service, one frame every `intervalMs`, and stops it
 * cleanly. Returns the storage folder (the caller removes it) and each frame's send time.
 */
export async function recordPattern(
  o: TestPatternOptions & { intervalMs: number; env: Record<string, string> },
): Promise<{ storage: string; sent: number[] }> {
  const { storage, sent } = await recordRelay({
    frames: sourceFrames(await pattern(o)),
    intervalMs: o.intervalMs,
    env: o.env,
  });
  return { storage, sent: sent.map((s) => s.at) };
}

/** Mounts a tmpfs of `mib` MiB on `dir` (root only), for tests of a full or small disk. */
export function mountTmpfs(dir: string, mib: number): void {
  const { success, stderr } = new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir],
    stderr: "piped",
  }).outputSync();
  if (!success) throw new Error(`cannot mount a tmpfs: ${new TextDecoder().decode(stderr)}`);
}

/** A new folder that is a small filesystem of our own (root only); `umount` it when done. */
export function smallFilesystem(mib: number): string {
  const dir = Deno.makeTempDirSync({ prefix: "skyreel-tmpfs-" });
  mountTmpfs(dir, mib);
  return dir;
}

/** Raw requests cut short: half the headers, or a body of 1000 bytes announced and one sent. */
export const HALF_SENT = {
  headers: "GET /api/ranges HTTP/1.1\r\nHost: x\r\n",
  body:
    "POST /command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
};

/**
 * Sends `request` raw to 127.0.0.1:`port` and reads until the server closes the connection, or
 * closes it itself after `limitMs`: all that was answered, when, and whether the server closed it.
 */
export async function sendRaw(
  port: number,
  request: string,
  limitMs: number,
): Promise<{ answer: string; ms: number; closed: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  await conn.write(new TextEncoder().encode(request));
  let ours = false;
  const limit = setTimeout(() => {
    ours = true;
    conn.close();
  }, limitMs);
  let answer = "";
  try {
    answer = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  } catch { /* closed at our limit */ }
  clearTimeout(limit);
  return { answer, ms: performance.now() - started, closed: !ours };
}
