/**
 * An RTSP camera, recorded as it sends: GStreamer's gst-rtsp-server (tests/rtsp_server.py, Debian's
 * packages, installed by tests/setup.sh) serves an H.264 file; the recorder reads it with its own
 * ffmpeg; the chunks are judged picture by picture against the file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveFfmpeg } from "../src/app/ffmpeg.ts";
import {
  decodeErrors,
  ffmpegPath,
  frameMd5s,
  indexRows,
  pattern,
  probeFrames,
  ROOT,
  ServiceProcess,
  until,
} from "./helpers.ts";

/** The RTSP server as its own process, started (and restarted) on one port. */
class RtspServer {
  #child: Deno.ChildProcess | null = null;
  constructor(readonly port: number, readonly file: string) {}

  get url(): string {
    return `rtsp://127.0.0.1:${this.port}/stream`;
  }

  async start(): Promise<void> {
    this.#child = new Deno.Command("/usr/bin/python3", {
      args: [join(ROOT, "tests/rtsp_server.py"), String(this.port), this.file],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // The server prints one line, then nothing. Once the whole line is read, cancelling the reader
    // closes the pipe: piped through a decoder, stdout stayed locked and closed only when the pipe
    // read its end, which a kill did not always bring before the test ended (the sanitizer's leak).
    // Cut before the line's end, the server would fail writing the rest.
    const reader = this.#child.stdout.getReader();
    const decoder = new TextDecoder();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      line += decoder.decode(value, { stream: true });
    }
    await reader.cancel();
    assert.match(line, /ready/, "the RTSP server did not start");
  }

  async kill(): Promise<void> {
    if (!this.#child) return;
    this.#child.kill("SIGKILL");
    await this.#child.status;
    this.#child = null;
  }
}

Deno.test("an RTSP camera: recorded bit-exact without re-encoding, timed by its own clock; the server restarted mid-stream is reconnected to and recording goes on", async () => {
  const dir = await Deno.makeTempDir();
  const storage = join(dir, "rec");
  // The drone's own habit: 7 slices a picture, which the RTSP payloader sends with SPS and PPS
  // before every IDR slice.
  const h264 = await pattern({
    width: 640,
    height: 360,
    fps: 30,
    seconds: 30,
    gop: 30,
    bitrateKbps: 1000,
    slices: 7,
  });
  const source = join(dir, "source.h264");
  const mp4 = join(dir, "source.mp4");
  await Deno.writeFile(source, h264);
  const mux = await new Deno.Command(await ffmpegPath(), {
    args: ["-v", "error", "-r", "30", "-i", source, "-c", "copy", mp4],
  }).output();
  assert.ok(mux.success);
  const sourceMd5 = await frameMd5s(source, true);
  const server = new RtspServer(20_000 + Math.floor(Math.random() * 20_000), mp4);
  await server.start();
  const ffmpeg = await resolveFfmpeg();
  const svc = new ServiceProcess({
    VIDEO_STREAM_URL: server.url,
    STORAGE_PATH: storage,
    UPLOAD_PATH: join(dir, "up"),
    AMQP_URL: "",
    FFMPEG_PATH: ffmpeg!,
    VIDEO_CHUNK_DURATION_SECONDS: "3",
    RECONNECT_MAX_SECONDS: "1",
    STREAM_TIMEOUT_SECONDS: "3",
    MIN_FREE_DISK_GB: "0",
  });
  try {
    const written = () => svc.metric("storage_video_frames_written_total");
    await until(async () => (await written()) >= 120, "4 s recorded", 30_000, 200);
    await server.kill();
    await svc.waitForLog((l) => l.msg === "disconnected" && l.actor === "rtsp", "the drop noticed");
    await server.start();
    await svc.waitForLog((l) => l.msg === "connected" && l.session === 2, "reconnected", 30_000);
    const before = await written();
    await until(async () => (await written()) >= before + 90, "3 s more", 30_000, 200);
    assert.equal(await svc.metric("storage_reconnects_total"), 1);
    svc.signal("SIGINT");
    assert.equal((await svc.exit()).code, 0);
  } finally {
    await server.kill();
  }
  const { chunks } = indexRows(storage);
  const recorded: string[] = [];
  for (const chunk of chunks) {
    const path = join(storage, chunk.path);
    assert.equal(await decodeErrors(path), "", `${chunk.path} decodes`);
    const md5 = await frameMd5s(path);
    // The source's 30 fps, from its RTP clock: every interval one frame (at ffmpeg's 1 ms precision),
    // but the one across the reconnect.
    const pts = (await probeFrames(path)).map((f) => f.ptsMs);
    const odd = pts.slice(1).map((t, i) => t - pts[i]).filter((d) => Math.abs(d - 1000 / 30) > 1.5);
    assert.ok(odd.length <= 1, `${chunk.path}: intervals ${odd.map(Math.round)}`);
    recorded.push(...md5);
  }
  // Every picture is the source's, in runs of consecutive source pictures: one run a session.
  const at = recorded.map((m) => sourceMd5.indexOf(m));
  assert.ok(!at.includes(-1), "a recorded picture that the source does not have");
  const breaks = at.slice(1).filter((p, i) => p !== at[i] + 1).length;
  assert.equal(breaks, 1, `runs of the source: ${breaks + 1}`);
  assert.ok(recorded.length >= 210, `${recorded.length} pictures`);
  await Deno.remove(dir, { recursive: true });
});
