/**
 * `deno task bench`: the recorder against ffmpeg's copy-remux on the same input, in one run.
 *
 * 1. Throughput: K 1280x720 ~4 Mbit/s streams through the real WebSocket path, faster than real time.
 *    CPU-seconds per stream-hour for the recorder and for `ffmpeg -f h264 -i - -c copy` to fragmented
 *    MP4, their ratio, frames/s per core, frame-arrival-to-written latency (p50/p99), peak RSS.
 * 2. Real time: N 720p30 streams for S seconds; every frame sent must be written.
 *
 * BENCH_STREAMS (4), BENCH_SPEED (8), BENCH_REALTIME_STREAMS (20), BENCH_REALTIME_SECONDS (15).
 */
import { join } from "node:path";
import { type SourceFrame, sourceFrames, startRelay } from "../src/tools/relay.ts";
import { Janitor } from "../actors/janitor.ts";
import { Publisher } from "../actors/publisher.ts";
import { Leases } from "../src/store/leases.ts";
import type { BrokerStatus } from "../src/serve/health.ts";
import { storageEvent } from "../src/publish/envelope.ts";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { IndexChanges } from "../src/store/index/index_changes.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import { ffmpegPath, FIXTURE, pattern, ServiceProcess, sumMetric, until } from "./helpers.ts";

const env = Deno.env.toObject();
const K = Number(env.BENCH_STREAMS ?? 4);
const SPEED = Number(env.BENCH_SPEED ?? 8);
const RT_STREAMS = Number(env.BENCH_REALTIME_STREAMS ?? 20);
const RT_SECONDS = Number(env.BENCH_REALTIME_SECONDS ?? 15);
const FPS = 30;
const CLOCK_TICKS = 100; // Linux USER_HZ

function procCpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime
}

function peakRssMb(pid: number): number {
  const line = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n").find((l) => l.startsWith("VmHWM:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** A quantile from Prometheus histogram buckets (linear within a bucket). */
function quantile(metrics: string, name: string, q: number): number {
  const buckets = new Map<number, number>();
  for (const line of metrics.split("\n")) {
    const m = line.match(new RegExp(`^${name}_bucket\\{le="([^"]+)".*\\} (\\d+)`)) ??
      line.match(new RegExp(`^${name}_bucket\\{.*le="([^"]+)".*\\} (\\d+)`));
    if (!m) continue;
    const le = m[1] === "+Inf" ? Infinity : Number(m[1]);
    buckets.set(le, (buckets.get(le) ?? 0) + Number(m[2]));
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)![1];
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

/**
 * Records `streams` copies of `frames` played `loops` times at `interval` ms per frame. With
 * `sampleMs`, the metrics are also read that often while it runs, for the peak GOP cache.
 */
async function record(
  frames: SourceFrame[],
  streams: number,
  loops: number,
  interval: number,
  env: Record<string, string> = {},
  o: { upstream?: boolean; sampleMs?: number } = {},
) {
  const relay = await startRelay({
    frames,
    intervalMs: () => interval,
    loops,
    startAfterClients: streams,
    upstream: o.upstream,
  });
  const storage = await Deno.makeTempDir({ prefix: "skyreel-bench-" });
  const config = join(storage, "streams.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      streams: Array.from({ length: streams }, (_, i) => ({ name: `s${i + 1}`, url: relay.url })),
    }),
  );
  const service = new ServiceProcess({
    CONFIG_FILE: config,
    STORAGE_PATH: join(storage, "rec"),
    LOG_LEVEL: "info", // the ports are read from the "listening" lines
    QUEUE_FRAMES: "2000",
    ...env,
  });
  let peakGopBytes = 0;
  const sampler = o.sampleMs
    ? setInterval(async () => {
      const m = await service.metrics().catch(() => "");
      peakGopBytes = Math.max(peakGopBytes, sumMetric(m, "storage_gop_cache_bytes") / streams);
    }, o.sampleMs)
    : undefined;
  try {
    await relay.waitForClient();
    const cpu0 = procCpuSeconds(service.pid);
    const t0 = performance.now();
    await relay.finished;
    clearInterval(sampler);
    await relay.close();
    const expected = streams * frames.length * loops;
    // Frames still missing after 30 s are reported as lost, not waited for.
    const done = await until(
      async () => (await service.metric("storage_video_frames_written_total")) >= expected,
      "every frame written",
      30_000,
    ).then(() => true, () => false);
    const wall = (performance.now() - t0) / 1000;
    const cpu = procCpuSeconds(service.pid) - cpu0;
    const metrics = await service.metrics();
    const rss = peakRssMb(service.pid);
    service.signal("SIGTERM");
    await service.exit();
    return {
      expected,
      written: sumMetric(metrics, "storage_video_frames_written_total"),
      dropped: sumMetric(metrics, "storage_frames_dropped_total"),
      skipped: sumMetric(metrics, "storage_frames_skipped_total"),
      complete: done,
      cpu,
      wall,
      rss,
      p50: quantile(metrics, "storage_frame_write_latency_seconds", 0.5),
      p99: quantile(metrics, "storage_frame_write_latency_seconds", 0.99),
      peakGopBytes,
    };
  } finally {
    clearInterval(sampler);
    service.signal("SIGKILL");
    await service.exit();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
}

async function ffmpegCopy(h264: Uint8Array, loops: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-ff-" });
  try {
    const input = join(dir, "in.h264");
    const file = await Deno.open(input, { write: true, create: true });
    for (let i = 0; i < loops; i++) await file.write(h264);
    file.close();
    const { stderr, success } = await new Deno.Command(await ffmpegPath(), {
      args: [
        "-hide_banner",
        "-nostats",
        "-benchmark",
        "-f",
        "h264",
        "-framerate",
        String(FPS),
        "-i",
        input,
        "-c",
        "copy",
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        "1000000",
        "-f",
        "mp4",
        join(dir, "out.mp4"),
      ],
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

const loops = 2;
const mediaSeconds = (frames.length * loops) / FPS;
const throughput = await record(frames, K, loops, 1000 / FPS / SPEED);
// ffmpeg is fast: give it 10 loops so its CPU time is well above the clock's 10 ms resolution.
const ffLoops = 10;
const ffCpu = await ffmpegCopy(h264, ffLoops);
const floorCpu = await bareFloor(frames, K, loops, 1000 / FPS / SPEED);
const floorPerHour = floorCpu / (K * mediaSeconds) * 3600;
const recPerHour = throughput.cpu / (K * mediaSeconds) * 3600;
const ffPerHour = ffCpu / (frames.length * ffLoops / FPS) * 3600;
console.log(
  `\n1. throughput: ${K} streams x ${mediaSeconds} s at ${SPEED}x real time (wall ${fmt(throughput.wall)} s)`,
);
console.log(
  `   frames written ${throughput.written}/${throughput.expected}, dropped ${throughput.dropped}, skipped ${throughput.skipped}`,
);
console.log(`   recorder CPU: ${fmt(throughput.cpu, 2)} s = ${fmt(recPerHour)} CPU-s per stream-hour`);
console.log(
  `   ffmpeg -c copy to fMP4: ${fmt(ffCpu, 2)} s for ${ffLoops * 20} s = ${
    fmt(ffPerHour)
  } CPU-s per stream-hour`,
);
console.log(`   ratio recorder/ffmpeg per frame: ${fmt(recPerHour / ffPerHour, 2)}x (target <= 2x)`);
console.log(
  `   floor: a Deno WebSocket client that only receives: ${fmt(floorPerHour)} CPU-s per stream-hour = ${
    fmt(floorPerHour / ffPerHour, 2)
  }x ffmpeg; recorder/floor ${fmt(recPerHour / floorPerHour, 2)}x`,
);
console.log(`   frames/s per core: ${fmt(throughput.written / throughput.cpu, 0)}`);
console.log(
  `   arrival-to-written latency: p50 ${fmt(throughput.p50 * 1000, 0)} ms, p99 ${
    fmt(throughput.p99 * 1000, 0)
  } ms`,
);
console.log(`   peak RSS ${fmt(throughput.rss, 0)} MB`);

const rtLoops = Math.max(1, Math.round(RT_SECONDS / 20));
const rtFrames = frames.slice(0, Math.min(frames.length, RT_SECONDS * FPS));
const realtime = await record(rtFrames, RT_STREAMS, rtLoops, 1000 / FPS);
console.log(`\n2. real time: ${RT_STREAMS} streams x ${fmt(rtFrames.length * rtLoops / FPS, 0)} s of 720p30`);
console.log(
  `   frames written ${realtime.written}/${realtime.expected}, dropped ${realtime.dropped}, lost ${
    realtime.expected - realtime.written
  }`,
);
console.log(
  `   recorder CPU ${fmt(realtime.cpu, 2)} s over ${fmt(realtime.wall, 1)} s wall = ${
    fmt(100 * realtime.cpu / realtime.wall, 0)
  }% of one core`,
);
console.log(
  `   latency p50 ${fmt(realtime.p50 * 1000, 0)} ms, p99 ${fmt(realtime.p99 * 1000, 0)} ms; peak RSS ${
    fmt(realtime.rss, 0)
  } MB (target < 200)`,
);

// 3. Storage events: throughput of the outbox through confirms, and what publishing costs the recorder.
async function eventsPerSecond(n: number): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-events-" });
  const index = await ChunkIndex.open(join(dir, "index.db"));
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

const rate = await eventsPerSecond(5000);
// One run varies by +-15%: compare the least CPU of two runs each, alternating.
const perHour = (r: { cpu: number }) => r.cpu / (K * mediaSeconds) * 3600;
const off1 = await record(frames, K, loops, 1000 / FPS / SPEED, { AMQP_URL: "" });
const on2 = await record(frames, K, loops, 1000 / FPS / SPEED);
const off2 = await record(frames, K, loops, 1000 / FPS / SPEED, { AMQP_URL: "" });
const onPerHour = Math.min(recPerHour, perHour(on2));
const quietPerHour = Math.min(perHour(off1), perHour(off2));
console.log(`\n3. storage events`);
console.log(`   outbox -> broker with confirms: ${fmt(rate, 0)} events/s (5000 events, batches of 200)`);
console.log(
  `   recorder CPU per stream-hour (least of 2 runs): publishing on ${fmt(onPerHour)} s, off ${
    fmt(quietPerHour)
  } s ` +
    `(${fmt(100 * (onPerHour - quietPerHour) / quietPerHour, 1)}%; target < 5%)`,
);

// 4. Retention: one janitor pass over an index of 100,000 chunks.
async function janitorPass(chunks: number) {
  const dir = await Deno.makeTempDir({ prefix: "skyreel-bench-janitor-" });
  const index = await ChunkIndex.open(join(dir, "index.db"));
  await index.db.transaction().execute(async (trx) => {
    for (let i = 0; i < chunks; i += 500) {
      await trx.insertInto("chunks").values(Array.from({ length: Math.min(500, chunks - i) }, (_, k) => ({
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
    policy: { budgetBytes: chunks * 30_000_000 + 2 ** 30, maxAgeMs: null, minFreeBytes: 0 }, // within budget: a full scan
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

const passMs = await janitorPass(100_000);
const passesPerHour = 3600 / 30 + 60; // the timer, and one per 60 s chunk close
console.log(`\n4. retention`);
console.log(`   janitor pass over 100,000 chunks: ${fmt(passMs, 0)} ms (target < 100 ms)`);
console.log(
  `   CPU per hour of recording (one stream, 60 s chunks, 30 s timer): ${
    fmt(passMs * passesPerHour / 1000, 1)
  } s`,
);

// 5. The carried GOP: the drone's stream has one IDR in its 144 frames, so the cache holds up to the
// whole loop. Its peak per stream, and the recorder's RSS with the cache on and off.
const drone = sourceFrames(await Deno.readFile(FIXTURE));
const droneBytes = drone.reduce((n, f) => n + f.nals.reduce((m, x) => m + x.length, 0), 0);
const gopStreams = 4;
const withCache = await record(drone, gopStreams, 3, 1000 / 14.7 / 4, {}, { upstream: true, sampleMs: 250 });
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
