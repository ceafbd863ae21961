/**
 * `deno task bench`: the recorder measured against references in the same run, never against a
 * wall-clock limit. Each section prints its figures; the last output is a Markdown table (the
 * README quotes it).
 *
 * 1. CPU per stream-hour, K 1280x720 ~4 Mbit/s streams at SPEED x real time through the real
 *    WebSocket path: the recorder, a Deno client that only receives the same traffic (the floor),
 *    ffmpeg copy-remuxing the same NAL units fed through a pipe at the same pace, and ffmpeg reading
 *    the whole file unpaced.
 * 2. Real time: 20, 100 and 200 720p30 streams (4 slices a picture, parameter sets before every IDR
 *    slice, as the drone's stack sends them). Split and lost frames are counted in the written
 *    files (every sample compared with the source pictures), not taken from the recorder's counters.
 *    Late frames are also counted after the first 5 s, and the largest count runs again dealt over
 *    two recorder processes (what spreading streams over cores buys).
 * 3-5. Storage events, retention, the carried GOP.
 * 6. Recovery after kill -9 with 10,000 and 100,000 chunks indexed: until the service records again.
 * 7. A 10-minute clip (GET /api/clip) against `cat` of the same chunk files.
 * 8. 50 concurrent 120 s clips while 4 streams record in real time: RSS (5 and 30 s after) and
 *    frames on time.
 * 9. Cameras: 20 fps MJPEG at 640x480 and 1280x720, presets ultrafast, veryfast and medium: the
 *    recorder with its ffmpeg (CPU per stream-hour, frames a CPU-second) against ffmpeg alone
 *    encoding the same JPEGs with the same arguments; then how many 640x480 cameras one machine
 *    records in real time with no frame lost.
 * 10. The index on PostgreSQL (a fleet's) against SQLite (the default), side by side: what a chunk
 *    (its row opened, closed with its event, the event marked sent) and a fragment (its row
 *    updated) cost the indexer, in the order the recorder writes them.
 * 11. The archive against a local S3 server (s3rver): the uploader's client (streamed, hashed,
 *    verified, multipart above 8 MiB) against the SDK's plain PutObject of the same bytes from
 *    memory; and with ARCHIVE_BANDWIDTH_KBPS set, the rate reached against the limit.
 *
 * BENCH_STREAMS (4), BENCH_SPEED (8), BENCH_REALTIME_STREAMS ("20,100,200"), BENCH_REALTIME_SECONDS
 * (15), BENCH_ENCODE_SECONDS (15), BENCH_CAMERAS ("4,8,12,16"), BENCH_SECTIONS (all: "1,...,11").
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { frameMessages, type SourceFrame, sourceFrames, startRelay } from "../src/tools/relay.ts";
import { FrameParser } from "../src/ingest/h264/frame_parser.ts";
import { concat } from "../src/runtime/bytes.ts";
import { Janitor } from "../actors/janitor.ts";
import { Publisher } from "../actors/publisher.ts";
import { Leases } from "../src/store/leases.ts";
import type { BrokerStatus } from "../src/serve/health.ts";
import { storageEvent } from "../src/publish/envelope.ts";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { IndexChanges } from "../src/store/index/index_changes.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import { Fragmenter } from "../src/store/mp4/fragmenter.ts";
import { initSegment } from "../src/store/mp4/init_segment.ts";
import { scanChunk } from "../src/store/mp4/fragment_reader.ts";
import { chunkPath, sessionIdFor } from "../src/store/layout.ts";
import type { Frame } from "../src/ingest/h264/frame_parser.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { resolveFfmpeg } from "../src/app/ffmpeg.ts";
import { encoderArgs, encoderInput, type EncodeSettings } from "../src/ingest/ffmpeg/args.ts";
import { testJpegs } from "../src/tools/ffmpeg.ts";
import { serveCamera } from "../src/tools/mjpeg_camera.ts";
import { ffmpegPath, FIXTURE, parsedFrames, pattern, ServiceProcess, sumMetric, until } from "./helpers.ts";
import { indexLocation } from "./postgres_helpers.ts";
import { archiveEnv, BUCKET, S3Server } from "./s3_helpers.ts";
import { loadConfig } from "../src/app/config.ts";
import { ArchiveClient } from "../src/store/archive/s3.ts";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import type { Engine } from "../src/store/index/schema.ts";

const env = Deno.env.toObject();
const K = Number(env.BENCH_STREAMS ?? 4);
const SPEED = Number(env.BENCH_SPEED ?? 8);
const RT_STREAMS = (env.BENCH_REALTIME_STREAMS ?? "20,100,200").split(",").map(Number);
const RT_SECONDS = Number(env.BENCH_REALTIME_SECONDS ?? 15);
/** Section 2 also counts late frames after this many seconds, when every stream is under way. */
const SETTLE_SECONDS = 5;
const SECTIONS = new Set((env.BENCH_SECTIONS ?? "1,2,3,4,5,6,7,8,9,10,11").split(",").map(Number));
const FPS = 30;
const CLOCK_TICKS = 100; // Linux USER_HZ
/** Rows of the final report: section, figure, value, reference or target. */
const report: [string, string, string, string][] = [];

function procCpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime
}

function procStatusMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const line = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n").find((l) =>
    l.startsWith(`${field}:`)
  )!;
  return Number(line.split(/\s+/)[1]) / 1024;
}
const peakRssMb = (pid: number) => procStatusMb(pid, "VmHWM");

/** Histogram buckets (cumulative counts by upper bound) from Prometheus text, summed over labels. */
function buckets(metrics: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of metrics.split("\n")) {
    const m = line.match(new RegExp(`^${name}_bucket\\{.*le="([^"]+)".*\\} (\\d+)`));
    if (!m) continue;
    const le = m[1] === "+Inf" ? Infinity : Number(m[1]);
    out.set(le, (out.get(le) ?? 0) + Number(m[2]));
  }
  return out;
}

/** A quantile from cumulative buckets (linear within a bucket); `since` subtracts an earlier reading. */
function quantile(now: Map<number, number>, q: number, since = new Map<number, number>()): number {
  const sorted = [...now.entries()].map(([le, n]) => [le, n - (since.get(le) ?? 0)] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= q * total) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((q * total - prevCount) / Math.max(1, count - prevCount));
    }
    prevLe = le;
    prevCount = count;
  }
  return NaN;
}

const sha1 = (b: Uint8Array) => createHash("sha1").update(b).digest("hex");

/**
 * Every sample of every chunk under `root` compared with the source pictures: `whole` samples equal
 * one, `split` ones do not (a picture cut in two, or damaged). Decode-only leads are copies and
 * are left out.
 */
async function inspect(root: string, source: Set<string>): Promise<{ whole: number; split: number }> {
  let whole = 0, split = 0;
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path);
      else if (e.name.endsWith(".mp4")) {
        const bytes = await Deno.readFile(path);
        for (const s of scanChunk(bytes).samples) {
          if (!s.shown) continue;
          if (source.has(sha1(bytes.subarray(s.offset, s.offset + s.size)))) whole++;
          else split++;
        }
      }
    }
  };
  await walk(root);
  return { whole, split };
}

interface RecordOptions {
  upstream?: boolean;
  sampleMs?: number;
  /** The source pictures as the recorder stores them: the files are inspected against them. */
  inspectWith?: Set<string>;
  /** Recorder processes the streams are dealt over (1): what spreading them over cores buys. */
  processes?: number;
  /** Also counts the late frames after this many seconds: the steady state without the start. */
  settleSeconds?: number;
}

/**
 * Records `streams` copies of `frames` played `loops` times at `interval` ms per frame. With
 * `sampleMs`, the metrics are also read that often while it runs, for the peak GOP cache. With
 * several `processes`, CPU, peak RSS and the metrics are their sums.
 */
async function record(
  frames: SourceFrame[],
  streams: number,
  loops: number,
  interval: number,
  env: Record<string, string> = {},
  o: RecordOptions = {},
) {
  const relay = await startRelay({
    frames,
    intervalMs: () => interval,
    loops,
    startAfterClients: streams,
    upstream: o.upstream,
  });
  const storage = await Deno.makeTempDir({ prefix: "skyreel-bench-" });
  const processes = o.processes ?? 1;
  const services: ServiceProcess[] = [];
  for (let p = 0; p < processes; p++) {
    const config = join(storage, `streams${p}.json`);
    const names = Array.from({ length: streams }, (_, i) => `s${i + 1}`).filter((_, i) =>
      i % processes === p
    );
    await Deno.writeTextFile(
      config,
      JSON.stringify({ streams: names.map((name) => ({ name, url: relay.url })) }),
    );
    services.push(
      new ServiceProcess({
        CONFIG_FILE: config,
        STORAGE_PATH: join(storage, `rec${p}`),
        LOG_LEVEL: "info", // the ports are read from the "listening" lines
        QUEUE_FRAMES: "2000",
        ...env,
      }),
    );
  }
  const allMetrics = async () => (await Promise.all(services.map((s) => s.metrics()))).join("\n");
  const cpuNow = () => services.reduce((t, s) => t + procCpuSeconds(s.pid), 0);
  let peakGopBytes = 0;
  const sampler = o.sampleMs
    ? setInterval(async () => {
      const m = await allMetrics().catch(() => "");
      peakGopBytes = Math.max(peakGopBytes, sumMetric(m, "storage_gop_cache_bytes") / streams);
    }, o.sampleMs)
    : undefined;
  let settled: Promise<string> | undefined;
  try {
    await relay.waitForClient();
    const cpu0 = cpuNow();
    const t0 = performance.now();
    if (o.settleSeconds) settled = sleep(o.settleSeconds * 1000).then(allMetrics);
    await relay.finished;
    clearInterval(sampler);
    await relay.close();
    const expected = streams * frames.length * loops;
    // Frames still missing after 30 s are reported as lost, not waited for.
    const done = await until(
      async () => sumMetric(await allMetrics(), "storage_video_frames_written_total") >= expected,
      "every frame written",
      30_000,
      250, // a 20 ms poll of /metrics cost the measured recorder ~15% of its CPU
    ).then(() => true, () => false);
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuNow() - cpu0;
    const metrics = await allMetrics();
    const rss = services.reduce((t, s) => t + peakRssMb(s.pid), 0);
    for (const s of services) s.signal("SIGTERM");
    for (const s of services) await s.exit();
    const latency = buckets(metrics, "storage_frame_write_latency_seconds");
    const early = settled ? buckets(await settled, "storage_frame_write_latency_seconds") : undefined;
    const lateAfter = (b: Map<number, number>) => b.get(Infinity)! - b.get(1.1)!;
    return {
      expected,
      written: sumMetric(metrics, "storage_video_frames_written_total"),
      dropped: sumMetric(metrics, "storage_frames_dropped_total"),
      skipped: sumMetric(metrics, "storage_frames_skipped_total"),
      files: o.inspectWith ? await inspect(storage, o.inspectWith) : null,
      complete: done,
      cpu,
      wall,
      rss,
      latency,
      p50: quantile(latency, 0.5),
      p99: quantile(latency, 0.99),
      late: lateAfter(latency),
      /** Frames later than 1.1 s after `settleSeconds`, and how many were written then. */
      settled: early && {
        late: lateAfter(latency) - lateAfter(early),
        of: latency.get(Infinity)! - early.get(Infinity)!,
        p99: quantile(latency, 0.99, early),
      },
      peakGopBytes,
    };
  } finally {
    clearInterval(sampler);
    await settled?.catch(() => {});
    for (const s of services) {
      s.signal("SIGKILL");
      await s.exit();
    }
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
}

const FFMPEG_ARGS = [
  "-hide_banner",
  "-nostats",
  "-f",
  "h264",
  "-framerate",
  String(FPS),
  "-i",
  "pipe:0",
  "-c",
  "copy",
  "-movflags",
  "frag_keyframe+empty_moov+default_base_moof",
  "-frag_duration",
  "1000000",
  "-f",
  "mp4",
];

/** ffmpeg reading a whole file, unpaced (its start-up included): CPU seconds. */
async function ffmpegUnpaced(h264: Uint8Array, loops: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-ff-" });
  try {
    const input = join(dir, "in.h264");
    const file = await Deno.open(input, { write: true, create: true });
    for (let i = 0; i < loops; i++) await file.write(h264);
    file.close();
    const args = [...FFMPEG_ARGS, join(dir, "out.mp4")].map((a) => a === "pipe:0" ? input : a);
    const { stderr, success } = await new Deno.Command(await ffmpegPath(), {
      args: ["-benchmark", ...args],
      stderr: "piped",
      stdout: "null",
    }).output();
    const text = new TextDecoder().decode(stderr);
    if (!success) throw new Error(text);
    const m = text.match(/utime=([\d.]+)s stime=([\d.]+)s/);
    if (!m) throw new Error(`no -benchmark line in: ${text}`);
    return Number(m[1]) + Number(m[2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * `streams` ffmpeg processes, each fed the same NAL units through a pipe at the recorder's pace:
 * CPU seconds from the first frame to the last (start-up and finishing excluded).
 */
async function ffmpegPaced(frames: SourceFrame[], streams: number, loops: number, interval: number) {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-ffp-" });
  const bin = await ffmpegPath();
  const children = Array.from({ length: streams }, (_, i) =>
    new Deno.Command(bin, {
      args: ["-loglevel", "error", ...FFMPEG_ARGS, join(dir, `out${i}.mp4`)],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn());
  const writers = children.map((c) => c.stdin.getWriter());
  try {
    let cpu0 = 0, due = performance.now();
    for (let n = 0; n < frames.length * loops; n++) {
      const frame = frames[n % frames.length];
      for (const w of writers) for (const nal of frame.nals) await w.write(nal);
      if (n === 0) cpu0 = children.reduce((t, c) => t + procCpuSeconds(c.pid), 0);
      due += interval;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const cpu = children.reduce((t, c) => t + procCpuSeconds(c.pid), 0) - cpu0;
    await Promise.all(writers.map((w) => w.close()));
    await Promise.all(children.map((c) => c.status));
    return cpu;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The floor of any recorder on this runtime: a Deno process that receives the same WebSocket traffic
 * and does nothing with it (run as `bench.ts --bare URL STREAMS`; prints its CPU seconds).
 */
if (Deno.args[0] === "--bare") {
  const [url, streams] = [Deno.args[1], Number(Deno.args[2])];
  await Promise.all(Array.from({ length: streams }, () =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      ws.onmessage = () => {};
      ws.onclose = () => resolve();
    })));
  console.log(procCpuSeconds(Deno.pid));
  Deno.exit(0);
}

async function bareFloor(
  frames: SourceFrame[],
  streams: number,
  loops: number,
  interval: number,
): Promise<number> {
  const relay = await startRelay({ frames, intervalMs: () => interval, loops, startAfterClients: streams });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(import.meta.url).pathname, "--bare", relay.url, String(streams)],
    stdout: "piped",
  }).spawn();
  await relay.waitForClient();
  const startCpu = procCpuSeconds(child.pid);
  await relay.finished;
  await relay.close();
  const out = await child.output();
  return Number(new TextDecoder().decode(out.stdout).trim()) - startCpu;
}

const fmt = (n: number, d = 1) => n.toFixed(d);
const h264 = await pattern({ width: 1280, height: 720, fps: FPS, seconds: 20, gop: FPS, bitrateKbps: 4000 });
const frames = sourceFrames(h264);
const mbps = h264.length * 8 / 20 / 1e6;
console.log(`input: 1280x720 ${FPS} fps, ${frames.length} frames (20 s), ${fmt(mbps, 2)} Mbit/s`);
// 120 s a stream, 15 s of wall time at 8x: with 40 s, JIT warm-up and the 10 ms CPU clock made
// one run's recorder figure vary from 22 to 35 CPU-s per stream-hour.
const loops = 6;
const mediaSeconds = (frames.length * loops) / FPS;
const perHour = (cpu: number, streams: number, seconds: number) => cpu / (streams * seconds) * 3600;
let recPerHour = NaN;

if (SECTIONS.has(1)) {
  const interval = 1000 / FPS / SPEED;
  const throughput = await record(frames, K, loops, interval);
  const floorCpu = await bareFloor(frames, K, loops, interval);
  const pacedCpu = await ffmpegPaced(frames, K, loops, interval);
  const ffLoops = 10; // well above the clock's 10 ms resolution
  const unpacedCpu = await ffmpegUnpaced(h264, ffLoops);
  recPerHour = perHour(throughput.cpu, K, mediaSeconds);
  const floor = perHour(floorCpu, K, mediaSeconds);
  const paced = perHour(pacedCpu, K, mediaSeconds);
  const unpaced = perHour(unpacedCpu, 1, frames.length * ffLoops / FPS);
  console.log(
    `\n1. CPU: ${K} streams x ${mediaSeconds} s at ${SPEED}x real time (wall ${fmt(throughput.wall)} s)`,
  );
  console.log(
    `   frames written ${throughput.written}/${throughput.expected}, dropped ${throughput.dropped}, skipped ${throughput.skipped}`,
  );
  console.log(
    `   CPU-s per stream-hour: recorder ${fmt(recPerHour)}, receive-only floor ${fmt(floor)}, ` +
      `ffmpeg paced through a pipe ${fmt(paced)}, ffmpeg unpaced from a file ${fmt(unpaced)}`,
  );
  console.log(
    `   recorder/floor ${fmt(recPerHour / floor, 2)}x (target <= 2.0), recorder/ffmpeg paced ${
      fmt(recPerHour / paced, 2)
    }x (target <= 1.0)`,
  );
  console.log(
    `   latency p50 ${fmt(throughput.p50 * 1000, 0)} ms, p99 ${fmt(throughput.p99 * 1000, 0)} ms; ` +
      `peak RSS ${fmt(throughput.rss, 0)} MB`,
  );
  report.push(
    ["1 CPU", "recorder, CPU-s per stream-hour", fmt(recPerHour), ""],
    ["1 CPU", "recorder / receive-only floor", `${fmt(recPerHour / floor, 2)}x`, "<= 2.0x"],
    ["1 CPU", "recorder / ffmpeg paced through a pipe", `${fmt(recPerHour / paced, 2)}x`, "<= 1.0x"],
    [
      "1 CPU",
      "recorder / ffmpeg unpaced from a file",
      `${fmt(recPerHour / unpaced, 2)}x`,
      "(start-up included)",
    ],
  );
}

if (SECTIONS.has(2)) {
  // 4 slices a picture, parameter sets repeated before every IDR slice.
  const sliced = await pattern({
    width: 1280,
    height: 720,
    fps: FPS,
    seconds: 20,
    gop: FPS,
    bitrateKbps: 4000,
    slices: 4,
  });
  const rtAll = sourceFrames(sliced);
  const rtFrames = rtAll.slice(0, Math.min(rtAll.length, RT_SECONDS * FPS));
  // The pictures as the recorder stores them, from the same messages (the upstream stack sends no SEI).
  const state = {};
  const parser = new FrameParser();
  const source = new Set(
    [
      ...rtFrames.flatMap((f) => frameMessages(f, { upstream: true }, state)).flatMap((m) =>
        parser.message(concat(m), 0)
      ),
      ...parser.end(),
    ].map((f) => sha1(f.data)),
  );
  // The largest count again over two recorder processes: an upper bound on what worker threads
  // would buy (no messages between threads; docs/architecture.md).
  const runs = [...RT_STREAMS.map((n) => [n, 1]), [Math.max(...RT_STREAMS), 2]];
  for (const [n, processes] of runs) {
    const r = await record(rtFrames, n, 1, 1000 / FPS, {}, {
      upstream: true,
      inspectWith: source,
      processes,
      settleSeconds: SETTLE_SECONDS,
    });
    const lost = r.expected - r.files!.whole;
    const corePct = 100 * r.cpu / r.wall;
    const label = `2 real time x${n}${processes > 1 ? ` over ${processes} processes` : ""}`;
    console.log(
      `\n2. real time: ${n} streams x ${fmt(rtFrames.length / FPS, 0)} s of 720p30, 4 slices a picture` +
        (processes > 1 ? `, dealt over ${processes} recorder processes` : ""),
    );
    console.log(
      `   in the files: ${r.files!.whole}/${r.expected} pictures whole, ${
        r.files!.split
      } split, ${lost} lost; ` +
        `the recorder counted ${r.dropped} dropped`,
    );
    console.log(
      `   CPU ${fmt(corePct, 0)}% of one core (${fmt(corePct / n, 2)}% a stream); latency p50 ${
        fmt(r.p50 * 1000, 0)
      } ms, p99 ${
        fmt(r.p99 * 1000, 0)
      } ms, ${r.late} frames later than 1.1 s (after the first ${SETTLE_SECONDS} s: ${r.settled!.late} of ${
        r.settled!.of
      }, p99 ${fmt(r.settled!.p99 * 1000, 0)} ms); peak RSS ${fmt(r.rss, 0)} MB`,
    );
    report.push(
      [label, "pictures lost / split (in the files)", `${lost} / ${r.files!.split}`, "0 / 0"],
      [label, "CPU, % of one core a stream", fmt(corePct / n, 2), ""],
      [label, "arrival-to-written p99", `${fmt(r.p99 * 1000, 0)} ms`, "< 1100 ms"],
      [label, "frames written later than 1.1 s", `${r.late} of ${r.expected}`, "0"],
      [
        label,
        `the same after the first ${SETTLE_SECONDS} s`,
        `${r.settled!.late} of ${r.settled!.of}`,
        "0",
      ],
      [label, "peak RSS", `${fmt(r.rss, 0)} MB`, n === 200 ? "< 600 MB" : ""],
    );
  }
}

// 3. Storage events: throughput of the outbox through confirms, and what publishing costs the recorder.
async function eventsPerSecond(n: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-events-" });
  const index = await ChunkIndex.open(join(dir, "index.db"), "bench");
  const exchange = `skyreel_bench_${crypto.randomUUID().slice(0, 8)}`;
  for (let i = 0; i < n; i++) {
    await index.appendEvent(
      storageEvent("chunk_saved", "bench", { session_id: "s", chunk_info: { index: i } }),
    );
  }
  const status: BrokerStatus = { state: "off", lastError: null };
  const publisher = new Publisher({
    index,
    changes: new IndexChanges(),
    url: "amqp://guest:guest@127.0.0.1:5672",
    exchange,
    exchangeType: "fanout",
    retentionMs: 3_600_000,
    reconnectMaxMs: 1000,
    metrics: new Metrics(),
    status,
  });
  const abort = new AbortController();
  const t0 = performance.now();
  const running = publisher.run(abort.signal);
  await until(async () => (await index.outbox()).depth === 0, "outbox drained", 120_000);
  const seconds = (performance.now() - t0) / 1000;
  abort.abort();
  await running;
  await index.close();
  await Deno.remove(dir, { recursive: true });
  return n / seconds;
}

if (SECTIONS.has(3)) {
  const rate = await eventsPerSecond(5000);
  // One run varies by +-15%: compare the least CPU of two runs each, alternating.
  const cpuOf = (r: { cpu: number }) => perHour(r.cpu, K, mediaSeconds);
  const runs = [];
  for (const amqp of [undefined, "", undefined, ""]) {
    runs.push({
      on: amqp === undefined,
      r: await record(frames, K, loops, 1000 / FPS / SPEED, amqp === "" ? { AMQP_URL: "" } : {}),
    });
  }
  const onPerHour = Math.min(...runs.filter((x) => x.on).map((x) => cpuOf(x.r)));
  const quietPerHour = Math.min(...runs.filter((x) => !x.on).map((x) => cpuOf(x.r)));
  const cost = 100 * (onPerHour - quietPerHour) / quietPerHour;
  console.log(`\n3. storage events`);
  console.log(`   outbox -> broker with confirms: ${fmt(rate, 0)} events/s (5000 events, batches of 200)`);
  console.log(
    `   recorder CPU per stream-hour (least of 2 runs): publishing on ${fmt(onPerHour)} s, off ${
      fmt(quietPerHour)
    } s (${fmt(cost, 1)}%; target < 5%)`,
  );
  report.push(["3 events", "publishing's share of the recorder's CPU", `${fmt(cost, 1)}%`, "< 5%"]);
}

// 4. Retention: one janitor pass over an index of 100,000 chunks.
async function janitorPass(chunks: number) {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-janitor-" });
  const index = await ChunkIndex.open(join(dir, "index.db"), "bench");
  await index.db.transaction().execute(async (trx) => {
    for (let i = 0; i < chunks; i += 500) {
      await trx.insertInto("chunks").values(Array.from({ length: Math.min(500, chunks - i) }, (_, k) => ({
        recorder: "bench",
        stream: "bench",
        session_id: `s${Math.floor((i + k) / 1000)}`,
        idx: (i + k) % 1000 + 1,
        path: `p/${i + k}.mp4`,
        start_ms: (i + k) * 60_000,
        end_ms: (i + k + 1) * 60_000,
        frames: 1800,
        bytes: 30_000_000,
        partial: 0,
        codec: "avc1.64001f",
        width: 1280,
        height: 720,
        status: "complete" as const,
      }))).execute();
    }
  });
  const janitor = new Janitor({
    index,
    changes: new IndexChanges(),
    leases: new Leases(),
    root: dir,
    settings: { chunkMs: 60_000, idleMs: 10_000 },
    metrics: new Metrics(),
    self: { send: () => true },
    indexer: { send: () => true },
    intervalMs: 30_000,
    policy: {
      budgetBytes: chunks * 30_000_000 + 2 ** 30,
      maxAgeMs: null,
      minFreeBytes: 0,
      keepUntilArchived: false,
    }, // within budget: a full scan
  });
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await janitor.pass();
    times.push(performance.now() - t0);
  }
  janitor.close();
  await index.close();
  await Deno.remove(dir, { recursive: true });
  return Math.min(...times);
}

if (SECTIONS.has(4)) {
  const passMs = await janitorPass(100_000);
  const passesPerHour = 3600 / 30 + 60; // the timer, and one per 60 s chunk close
  console.log(`\n4. retention`);
  console.log(`   janitor pass over 100,000 chunks: ${fmt(passMs, 0)} ms (target < 100 ms)`);
  console.log(
    `   CPU per hour of recording (one stream, 60 s chunks, 30 s timer): ${
      fmt(passMs * passesPerHour / 1000, 1)
    } s`,
  );
  report.push(["4 retention", "janitor pass over 100,000 chunks", `${fmt(passMs, 0)} ms`, "< 100 ms"]);
}

if (SECTIONS.has(5)) {
  // The carried GOP: the drone's stream has one IDR in its 144 frames, so the cache holds up to the
  // whole loop. Its peak per stream, and the recorder's RSS with the cache on and off.
  const drone = sourceFrames(await Deno.readFile(FIXTURE));
  const droneBytes = drone.reduce((n, f) => n + f.nals.reduce((m, x) => m + x.length, 0), 0);
  const gopStreams = 4;
  const withCache = await record(drone, gopStreams, 3, 1000 / 14.7 / 4, {}, {
    upstream: true,
    sampleMs: 250,
  });
  const noCache = await record(drone, gopStreams, 3, 1000 / 14.7 / 4, { GOP_CACHE_MB: "0" }, {
    upstream: true,
  });
  console.log(
    `\n5. carried GOP (drone fixture, 144-frame GOP of ${
      fmt(droneBytes / 2 ** 20, 2)
    } MB, ${gopStreams} streams at 4x)`,
  );
  console.log(
    `   peak GOP cache per stream ${fmt(withCache.peakGopBytes / 2 ** 20, 2)} MB (${
      fmt(withCache.peakGopBytes / droneBytes, 2)
    }x the GOP); peak RSS ${fmt(withCache.rss, 0)} MB with the cache, ${fmt(noCache.rss, 0)} MB without`,
  );
  console.log(
    `   frames written ${withCache.written}/${withCache.expected} and ${noCache.written}/${noCache.expected}`,
  );
}

const LINKS_PER_FILE = 50_000;

/** Where the written history starts. */
const HISTORY_T0 = Date.UTC(2026, 0, 1);

/**
 * Writes `count` chunks of `chunkMs` each of `source` (looped, 30 fps from HISTORY_T0) as the writer
 * would, with their rows (`complete`) and ended sessions of `perSession` chunks, under
 * `[stream/]`. Chunk files after the first `real` are hard links to a real one: the index and
 * the folders are full-size, the disk is not. Returns the paths.
 */
async function history(o: {
  root: string;
  /** The index's database, or a transaction of it. */
  db: ChunkIndex["db"];
  stream: string;
  multiStream: boolean;
  count: number;
  chunkMs: number;
  perSession: number;
  source: Frame[];
  real?: number;
}): Promise<string[]> {
  const paths: string[] = [];
  const frameMs = 1000 / FPS;
  const perChunk = Math.round(o.chunkMs / frameMs);
  let n = 0;
  for (let c = 0; c < o.count; c++) {
    const start = HISTORY_T0 + c * o.chunkMs;
    const sessionStart = HISTORY_T0 + Math.floor(c / o.perSession) * o.perSession * o.chunkMs;
    const sessionId = sessionIdFor(sessionStart);
    const dir = o.multiStream ? join(o.stream, sessionId) : sessionId;
    const path = chunkPath(dir, (c % o.perSession) + 1);
    if (c % o.perSession === 0) {
      await Deno.mkdir(join(o.root, dir, "video_segments"), { recursive: true });
      await o.db.insertInto("sessions").values({
        recorder: "bench",
        stream: o.stream,
        session_id: sessionId,
        dir,
        start_ms: sessionStart,
        end_ms: sessionStart + o.perSession * o.chunkMs,
        video_url: "ws://bench",
        status: "ended",
      }).execute();
    }
    // ext4 allows 65,000 links to a file: a new real one every LINKS_PER_FILE.
    if (c < (o.real ?? o.count) || c % LINKS_PER_FILE === 0) {
      const f = new Fragmenter({ startMs: start, fragmentMs: 1000 });
      const file = await Deno.open(join(o.root, path), { write: true, createNew: true });
      await file.write(initSegment(o.source[n % o.source.length].params!));
      for (let i = 0; i < perChunk; i++, n++) {
        // Each chunk starts at a keyframe: the source's GOP divides the chunk.
        const out = f.add({ ...o.source[n % o.source.length], ts: start + i * frameMs });
        if (out) await file.write(out.bytes);
      }
      const last = f.finish(start + o.chunkMs);
      if (last) await file.write(last.bytes);
      file.close();
    } else await Deno.link(join(o.root, paths[c - c % LINKS_PER_FILE]), join(o.root, path));
    const bytes = (await Deno.stat(join(o.root, path))).size;
    await o.db.insertInto("chunks").values({
      recorder: "bench",
      stream: o.stream,
      session_id: sessionId,
      idx: (c % o.perSession) + 1,
      path,
      start_ms: start,
      end_ms: start + o.chunkMs,
      frames: perChunk,
      bytes,
      partial: 0,
      codec: o.source[0].params!.info.codec,
      width: o.source[0].params!.info.width,
      height: o.source[0].params!.info.height,
      status: "complete",
    }).execute();
    paths.push(path);
  }
  return paths;
}

const source720 = parsedFrames(h264);

/** `count` chunks of 60 s of the 720p pattern, one session, in a new index under `root`. */
async function minutesOfVideo(root: string, stream: string, multiStream: boolean, count: number) {
  const index = await ChunkIndex.open(join(root, "index.db"), "bench");
  try {
    return await history({
      root,
      db: index.db,
      stream,
      multiStream,
      count,
      chunkMs: 60_000,
      perSession: count,
      source: source720,
    });
  } finally {
    await index.close();
  }
}

if (SECTIONS.has(6)) {
  // Recovery after kill -9: the index holds N closed chunks and one still `recording`.
  const startUp = async (chunks: number) => {
    const root = await Deno.makeTempDir({ prefix: "skyreel-bench-recovery-" });
    try {
      const index = await ChunkIndex.open(join(root, "index.db"), "bench");
      if (chunks > 0) {
        await index.db.transaction().execute((db) =>
          history({
            root,
            db,
            stream: "default",
            multiStream: false,
            count: chunks,
            chunkMs: 1000,
            perSession: 60,
            source: source720,
            real: 1,
          })
        );
        // The crash: the newest chunk was being written, its session open.
        const last = await index.db.selectFrom("chunks").select(["path", "session_id"]).orderBy("id", "desc")
          .executeTakeFirstOrThrow();
        await index.db.updateTable("chunks").set({ status: "recording" }).where("path", "=", last.path)
          .execute();
        await index.db.updateTable("sessions").set({ status: "open", end_ms: null })
          .where("session_id", "=", last.session_id).execute();
      }
      await index.close();
      const t = performance.now();
      const service = new ServiceProcess({
        VIDEO_STREAM_URL: "ws://127.0.0.1:9/ws/video/consume",
        STORAGE_PATH: root,
        AMQP_URL: "",
      });
      await service.waitForLog((l) => l.msg === "recording", "recording", 120_000);
      const ms = performance.now() - t;
      service.signal("SIGKILL");
      await service.exit();
      return ms;
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  };
  const empty = Math.min(await startUp(0), await startUp(0));
  console.log(
    `\n6. recovery after kill -9, until the service records again (empty store: ${fmt(empty, 0)} ms)`,
  );
  for (const n of [10_000, 100_000]) {
    const ms = await startUp(n);
    console.log(
      `   ${n.toLocaleString("en")} chunks indexed: ${fmt(ms, 0)} ms (${fmt(ms / empty, 2)}x an empty store)`,
    );
    report.push([
      "6 recovery",
      `recording again, ${n.toLocaleString("en")} chunks indexed`,
      `${fmt(ms, 0)} ms`,
      `< 1000 ms (empty: ${fmt(empty, 0)} ms)`,
    ]);
  }
}

/** Bytes of a fetch's body, with the time to its first byte and to its end (ms from the request). */
async function download(url: string): Promise<{ bytes: number; firstMs: number; totalMs: number }> {
  const t = performance.now();
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  let bytes = 0, firstMs = NaN;
  for await (const part of res.body!) {
    if (bytes === 0) firstMs = performance.now() - t;
    bytes += part.length;
  }
  return { bytes, firstMs, totalMs: performance.now() - t };
}

const iso = (ms: number) => new Date(ms).toISOString();

if (SECTIONS.has(7)) {
  // A 10-minute clip of 60 s chunks of 720p ~4 Mbit/s, against `cat` of the same files.
  const root = await Deno.makeTempDir({ prefix: "skyreel-bench-clip-" });
  const t0 = HISTORY_T0;
  const paths = await minutesOfVideo(root, "default", false, 11);
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: "ws://127.0.0.1:9/ws/video/consume",
    STORAGE_PATH: root,
    AMQP_URL: "",
  });
  try {
    const url = `http://127.0.0.1:${await service.port("http")}/api/clip?from=${iso(t0 + 30_000)}&to=${
      iso(t0 + 630_000)
    }`;
    const cat = async () => {
      const t = performance.now();
      const child = new Deno.Command("cat", { args: paths.map((p) => join(root, p)), stdout: "piped" })
        .spawn();
      let bytes = 0;
      for await (const part of child.stdout) bytes += part.length;
      await child.status;
      return { bytes, totalMs: performance.now() - t };
    };
    await cat(); // the page cache holds them for both
    const clips = [], cats = [];
    for (let i = 0; i < 3; i++) (clips.push(await download(url)), cats.push(await cat()));
    const clip = clips.reduce((a, b) => a.totalMs < b.totalMs ? a : b);
    const catMs = Math.min(...cats.map((c) => c.totalMs));
    const firstMs = Math.min(...clips.map((c) => c.firstMs));
    console.log(
      `\n7. a 10-minute clip (${fmt(clip.bytes / 2 ** 20, 0)} MB from 11 chunks of 60 s), best of 3`,
    );
    console.log(
      `   GET /api/clip: first byte ${fmt(firstMs, 0)} ms, total ${fmt(clip.totalMs, 0)} ms; ` +
        `cat of the chunk files ${fmt(catMs, 0)} ms: ${fmt(clip.totalMs / catMs, 2)}x (target <= 1.5x)`,
    );
    report.push(
      ["7 clip", "10-minute clip / cat of its chunks", `${fmt(clip.totalMs / catMs, 2)}x`, "<= 1.5x"],
      ["7 clip", "first byte", `${fmt(firstMs, 0)} ms`, "< 50 ms"],
    );
  } finally {
    service.signal("SIGTERM");
    await service.exit();
    await Deno.remove(root, { recursive: true });
  }
}

if (SECTIONS.has(8)) {
  // 50 concurrent 120 s clips of s1's history while s1-s4 record 720p30 in real time.
  const root = await Deno.makeTempDir({ prefix: "skyreel-bench-clips-" });
  const storage = join(root, "rec");
  await Deno.mkdir(storage);
  const t0 = HISTORY_T0;
  await minutesOfVideo(storage, "s1", true, 3);
  const relay = await startRelay({
    frames,
    intervalMs: () => 1000 / FPS,
    loops: Infinity,
    startAfterClients: 4,
  });
  const config = join(root, "streams.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({ streams: [1, 2, 3, 4].map((i) => ({ name: `s${i}`, url: relay.url })) }),
  );
  const service = new ServiceProcess({
    CONFIG_FILE: config,
    STORAGE_PATH: storage,
    AMQP_URL: "",
    CLIP_MAX_CONCURRENT: "50",
  });
  try {
    await relay.waitForClient();
    const base = `http://127.0.0.1:${await service.port("http")}`;
    await new Promise((r) => setTimeout(r, 5000));
    const before = procStatusMb(service.pid, "VmRSS");
    Deno.writeTextFileSync(`/proc/${service.pid}/clear_refs`, "5"); // the peak from here on
    const latency0 = buckets(await service.metrics(), "storage_frame_write_latency_seconds");
    const url = `${base}/api/clip?stream=s1&from=${iso(t0 + 30_000)}&to=${iso(t0 + 150_000)}`;
    const t = performance.now();
    const got = await Promise.all(Array.from({ length: 50 }, () => download(url)));
    const clipsMs = performance.now() - t;
    const peak = procStatusMb(service.pid, "VmHWM");
    const latency = buckets(await service.metrics(), "storage_frame_write_latency_seconds");
    await new Promise((r) => setTimeout(r, 5000));
    const after = procStatusMb(service.pid, "VmRSS");
    // The clips' garbage goes when the heap is next collected, which recording alone brings about.
    await sleep(25_000);
    const later = procStatusMb(service.pid, "VmRSS");
    const p99 = quantile(latency, 0.99, latency0);
    const late = (latency.get(Infinity)! - (latency0.get(Infinity) ?? 0)) -
      (latency.get(1.1)! - (latency0.get(1.1) ?? 0));
    console.log(
      `\n8. 50 concurrent 120 s clips (${fmt(got[0].bytes / 2 ** 20, 0)} MB each) while 4 streams record`,
    );
    console.log(
      `   done in ${fmt(clipsMs / 1000, 1)} s; RSS ${fmt(before, 0)} MB before, peak ${fmt(peak, 0)} MB, ` +
        `${fmt(after, 0)} MB 5 s after, ${fmt(later, 0)} MB 30 s after`,
    );
    console.log(
      `   frames written meanwhile: p99 arrival-to-written ${
        fmt(p99 * 1000, 0)
      } ms, ${late} later than 1.1 s`,
    );
    report.push(
      ["8 clips x50", "peak RSS while recording 4 streams", `${fmt(peak, 0)} MB`, "< 500 MB"],
      ["8 clips x50", "RSS 5 s after, over before", `${fmt(after - before, 0)} MB`, "< 50 MB"],
      ["8 clips x50", "RSS 30 s after, over before", `${fmt(later - before, 0)} MB`, "< 50 MB"],
      ["8 clips x50", "frames written later than fragment + 100 ms", String(late), "0"],
    );
  } finally {
    service.signal("SIGTERM");
    await service.exit();
    await relay.close();
    await Deno.remove(root, { recursive: true });
  }
}

// 9. Cameras: the encode path.
const ENCODE_SECONDS = Number(env.BENCH_ENCODE_SECONDS ?? 15);
const CAMERA_COUNTS = (env.BENCH_CAMERAS ?? "4,8,12,16").split(",").map(Number);

/** CPU seconds ffmpeg alone takes to encode `jpegs` with the recorder's arguments (fed from a file). */
async function ffmpegEncodeCpu(
  ffmpeg: string,
  jpegs: Uint8Array[],
  settings: EncodeSettings,
): Promise<number> {
  const dir = await Deno.makeTempDir();
  const input = join(dir, "in.mpjpeg");
  await Deno.writeFile(input, concat(jpegs.map(encoderInput)));
  const args = encoderArgs(settings).map((a) => `'${a}'`).join(" ");
  const { stderr, success } = await new Deno.Command("bash", {
    args: ["-c", `TIMEFORMAT='%3U %3S'; time '${ffmpeg}' ${args} < '${input}' > /dev/null 2>/dev/null`],
    stderr: "piped",
  }).output();
  await Deno.remove(dir, { recursive: true });
  if (!success) throw new Error("ffmpeg alone failed");
  const [user, sys] = new TextDecoder().decode(stderr).trim().split("\n").at(-1)!.split(" ").map(Number);
  return user + sys;
}

/** The recorder with cameras on `url` (K streams) for `seconds` after its encoders start. */
async function recordCameras(
  ffmpeg: string,
  url: string,
  cameras: number,
  seconds: number,
  extra: Record<string, string> = {},
) {
  const root = await Deno.makeTempDir({ prefix: "skyreel-bench-cameras-" });
  const config = join(root, "streams.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({ streams: Array.from({ length: cameras }, (_, i) => ({ name: `c${i + 1}`, url })) }),
  );
  const service = new ServiceProcess({
    CONFIG_FILE: config,
    STORAGE_PATH: join(root, "rec"),
    AMQP_URL: "",
    FFMPEG_PATH: ffmpeg,
    MIN_FREE_DISK_GB: "0",
    ...extra,
  });
  try {
    await until(
      () => service.logs.filter((l) => l.msg === "encoder started").length === cameras,
      "encoders",
      30_000,
    );
    const encoders = service.logs.filter((l) => l.msg === "encoder started").map((l) => l.pid as number);
    const cpu = () => procCpuSeconds(service.pid) + encoders.reduce((n, pid) => n + procCpuSeconds(pid), 0);
    await sleep(2000); // JIT and the encoders' first pictures
    const m0 = await service.metrics(), cpu0 = cpu(), t0 = performance.now();
    await sleep(seconds * 1000);
    const m1 = await service.metrics(), cpu1 = cpu(), wall = (performance.now() - t0) / 1000;
    const delta = (name: string, labels = {}) => sumMetric(m1, name, labels) - sumMetric(m0, name, labels);
    const latency = buckets(m1, "storage_frame_write_latency_seconds");
    return {
      cpu: cpu1 - cpu0,
      wall,
      received: delta("storage_camera_frames_received_total"),
      encoded: delta("storage_frames_encoded_total"),
      dropped: sumMetric(m1, "storage_frames_dropped_total"),
      errors: sumMetric(m1, "storage_camera_errors_total"),
      encodeP99: quantile(
        buckets(m1, "storage_encode_latency_seconds"),
        0.99,
        buckets(m0, "storage_encode_latency_seconds"),
      ),
      late: (latency.get(Infinity) ?? 0) - (latency.get(1.1) ?? 0),
    };
  } finally {
    service.signal("SIGTERM");
    await service.exit();
    await Deno.remove(root, { recursive: true });
  }
}

if (SECTIONS.has(9)) {
  const ffmpeg = (await resolveFfmpeg())!;
  console.log(
    `\n9. Cameras, 20 fps MJPEG, the recorder's ffmpeg (${
      ffmpeg.includes("ffmpeg-installer") ? "the npm package's 4.1" : ffmpeg
    })`,
  );
  for (const [width, height] of [[640, 480], [1280, 720]]) {
    const jpegs = await testJpegs(await ffmpegPath(), { width, height, count: 200 });
    const cam = serveCamera({ jpegs, mode: "mjpeg", intervalMs: () => 50 });
    try {
      for (const preset of ["ultrafast", "veryfast", "medium"]) {
        const settings = { fps: 20, bitrateKbps: 1000, preset };
        const alone = await ffmpegEncodeCpu(ffmpeg, jpegs, settings) / jpegs.length;
        const r = await recordCameras(ffmpeg, cam.url, 1, ENCODE_SECONDS, { VIDEO_PRESET: preset });
        const perFrame = r.cpu / r.encoded;
        console.log(
          `   ${width}x${height} ${preset}: ${fmt(r.cpu / r.wall * 3600, 0)} CPU-s per stream-hour, ` +
            `${fmt(1 / perFrame, 0)} frames a CPU-second (ffmpeg alone ${fmt(1 / alone, 0)}): ` +
            `${fmt(perFrame / alone, 2)}x; encode p99 ${fmt(r.encodeP99 * 1000, 0)} ms`,
        );
        report.push(
          [
            `9 camera ${width}x${height} ${preset}`,
            "CPU per stream-hour (recorder + its ffmpeg)",
            `${fmt(r.cpu / r.wall * 3600, 0)} CPU-s`,
            "",
          ],
          [
            `9 camera ${width}x${height} ${preset}`,
            "CPU a frame against ffmpeg alone",
            `${fmt(perFrame / alone, 2)}x`,
            `ffmpeg alone: ${fmt(1 / alone, 0)} frames a CPU-second`,
          ],
        );
      }
    } finally {
      await cam.close();
    }
  }
  const jpegs = await testJpegs(await ffmpegPath(), { width: 640, height: 480, count: 200 });
  let best = 0;
  for (const cameras of CAMERA_COUNTS) {
    const cam = serveCamera({ jpegs, mode: "mjpeg", intervalMs: () => 50 });
    const r = await recordCameras(ffmpeg, cam.url, cameras, ENCODE_SECONDS).finally(() => cam.close());
    const kept = r.dropped === 0 && r.errors === 0 && r.late === 0 && r.received - r.encoded <= cameras;
    console.log(
      `   ${cameras} cameras 640x480 veryfast: ${fmt(r.received / r.wall, 0)} JPEGs/s received, ` +
        `${r.encoded} encoded of ${r.received}, ${r.dropped} dropped, ${r.late} written later than 1.1 s, ` +
        `encode p99 ${fmt(r.encodeP99 * 1000, 0)} ms, CPU ${fmt(r.cpu / r.wall * 100, 0)}% of one core`,
    );
    if (!kept) break;
    best = cameras;
  }
  report.push([
    "9 cameras",
    "640x480 20 fps cameras recorded in real time, none lost",
    `${best} (of ${CAMERA_COUNTS.join(", ")} tried)`,
    "",
  ]);
}

// 10. The index on PostgreSQL against SQLite: the indexer's writes for `chunks` chunks of `fragments` fragments.
async function indexCost(engine: Engine, chunks: number, fragments: number) {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-index-" });
  const where = await indexLocation(engine, dir);
  const index = await ChunkIndex.open(where.location, "bench");
  await index.insertSession({ stream: "bench", session_id: "s", dir: "s", start_ms: 0, video_url: "ws://x" });
  let chunkMs = 0;
  let fragmentMs = 0;
  for (let c = 0; c < chunks; c++) {
    const path = `s/video_segments/chunk_${c}.mp4`;
    const start = c * 60_000;
    let t0 = performance.now();
    await index.insertChunk({
      stream: "bench",
      session_id: "s",
      idx: c + 1,
      path,
      start_ms: start,
      end_ms: start,
      frames: 0,
      bytes: 0,
      partial: 0,
      codec: "avc1.64001f",
      width: 1280,
      height: 720,
      status: "recording",
    });
    chunkMs += performance.now() - t0;
    for (let f = 1; f <= fragments; f++) {
      t0 = performance.now();
      await index.progress(path, { end_ms: start + f * 1000, frames: f * 30, bytes: f * 500_000 });
      fragmentMs += performance.now() - t0;
    }
    t0 = performance.now();
    const facts = {
      end_ms: start + fragments * 1000,
      frames: fragments * 30,
      bytes: fragments * 500_000,
      partial: 0,
    };
    await index.finish(path, facts, "complete", "duration", storageEvent("chunk_saved", "bench", { c }));
    const [sent] = await index.unsentEvents(1);
    await index.markSent([sent.seq], Date.now());
    chunkMs += performance.now() - t0;
  }
  await index.close();
  await where.drop();
  await Deno.remove(dir, { recursive: true });
  return { perChunk: chunkMs / chunks, perFragment: fragmentMs / (chunks * fragments) };
}

if (SECTIONS.has(10)) {
  const CHUNKS = 300;
  const FRAGMENTS = 20;
  // Alternated, the least of two runs each.
  const runs: Record<Engine, { perChunk: number; perFragment: number }[]> = { sqlite: [], postgres: [] };
  for (const engine of ["sqlite", "postgres", "sqlite", "postgres"] as const) {
    runs[engine].push(await indexCost(engine, CHUNKS, FRAGMENTS));
  }
  const best = (e: Engine, k: "perChunk" | "perFragment") => Math.min(...runs[e].map((r) => r[k]));
  console.log(
    `\n10. index: PostgreSQL (127.0.0.1, default settings) against SQLite (WAL, synchronous=NORMAL)`,
  );
  for (const k of ["perChunk", "perFragment"] as const) {
    const what = k === "perChunk" ? "a chunk (open, close with event, mark sent)" : "a fragment (row update)";
    console.log(
      `   ${what}: SQLite ${fmt(best("sqlite", k), 3)} ms, PostgreSQL ${fmt(best("postgres", k), 3)} ms (${
        fmt(best("postgres", k) / best("sqlite", k), 1)
      }x)`,
    );
    report.push([
      "10 index",
      `${what}, PostgreSQL vs SQLite`,
      `${fmt(best("postgres", k), 3)} vs ${fmt(best("sqlite", k), 3)} ms (${
        fmt(best("postgres", k) / best("sqlite", k), 1)
      }x)`,
      "",
    ]);
  }
}

// 11. The archive: uploads to s3rver, unthrottled against the SDK's own PutObject, and throttled against the limit.
if (SECTIONS.has(11)) {
  const s3 = await S3Server.start();
  const file = await Deno.makeTempFile({ prefix: "skyreel-bench-archive-" });
  const MB = 1_000_000;
  const bytes = new Uint8Array(64 * 2 ** 20);
  for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  await Deno.writeFile(file, bytes);
  const config = loadConfig(archiveEnv(s3.port)).archive!;
  const ours = new ArchiveClient(config);
  const sdk = new S3Client({
    region: config.region,
    endpoint: config.endpoint!,
    forcePathStyle: true,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
  });
  const timed = async (run: () => Promise<unknown>) => {
    const t0 = performance.now();
    await run();
    return (performance.now() - t0) / 1000;
  };
  // Alternated, the least of three each.
  const plain: number[] = [];
  const uploader: number[] = [];
  for (let i = 0; i < 3; i++) {
    plain.push(
      await timed(() => sdk.send(new PutObjectCommand({ Bucket: BUCKET, Key: `plain/${i}`, Body: bytes }))),
    );
    uploader.push(await timed(() => ours.upload(`ours/${i}`, file, new AbortController().signal)));
  }
  const limitKbps = 40_000;
  const limited = new ArchiveClient({ ...config, bytesPerSecond: limitKbps * 1000 / 8 });
  const part = 24 * 2 ** 20;
  await Deno.truncate(file, part);
  const throttledS = await timed(() => limited.upload("limited", file, new AbortController().signal));
  const rateKbps = part * 8 / 1000 / throttledS;
  [ours, limited].forEach((c) => c.destroy());
  sdk.destroy();
  await s3.kill();
  await s3.remove();
  await Deno.remove(file);
  const mbps = (s: number) => bytes.length / MB / s;
  console.log(`\n11. archive to s3rver on 127.0.0.1 (64 MiB, least of 3)`);
  console.log(
    `   uploader (streamed, MD5, multipart, verified): ${fmt(mbps(Math.min(...uploader)))} MB/s; ` +
      `SDK PutObject from memory: ${fmt(mbps(Math.min(...plain)))} MB/s (${
        fmt(Math.min(...uploader) / Math.min(...plain), 2)
      }x the time)`,
  );
  console.log(
    `   ARCHIVE_BANDWIDTH_KBPS=${limitKbps}: ${fmt(rateKbps, 0)} kbit/s over 24 MiB (${
      fmt(rateKbps / limitKbps, 3)
    } of the limit)`,
  );
  report.push(
    [
      "11 archive",
      "upload time, uploader vs SDK PutObject",
      `${fmt(Math.min(...uploader) / Math.min(...plain), 2)}x`,
      "",
    ],
    [
      "11 archive",
      "throttled rate vs ARCHIVE_BANDWIDTH_KBPS",
      `${fmt(rateKbps / limitKbps, 3)}`,
      "1, plus a first burst of a quarter second",
    ],
  );
}

console.log(`\n| section | figure | this run | target or reference |\n| --- | --- | --- | --- |`);
for (const row of report) console.log(`| ${row.join(" | ")} |`);
