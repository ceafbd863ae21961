/**
 * HTTP cameras, end to end: a camera served by the test (tools/mjpeg_camera.ts), the recorder as
 * its own process encoding with its own ffmpeg, and the chunks judged by ffprobe and ffmpeg.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveFfmpeg } from "../src/app/ffmpeg.ts";
import { testJpegs } from "../src/tools/ffmpeg.ts";
import { serveCamera } from "../src/tools/mjpeg_camera.ts";
import { concat } from "../src/runtime/bytes.ts";
import {
  decodeErrors,
  ffmpegPath,
  indexRows,
  jitter,
  probeFrames,
  ServiceProcess,
  until,
} from "./helpers.ts";

/** The ffmpeg the recorder would choose on this machine (FFMPEG_PATH, ffmpeg-static, the npm package, PATH). */
async function recorderFfmpeg(): Promise<string> {
  const bin = await resolveFfmpeg();
  assert.ok(bin, "no ffmpeg for the recorder");
  return bin;
}

let jpegCache: Promise<Uint8Array<ArrayBuffer>[]> | null = null;
/** 640x480 JPEGs of ffmpeg's testsrc2 (a moving picture with a frame counter). */
function jpegs(): Promise<Uint8Array<ArrayBuffer>[]> {
  jpegCache ??= ffmpegPath().then((bin) => testJpegs(bin, { width: 640, height: 480, count: 200 }));
  return jpegCache;
}

function cameraEnv(storage: string, url: string, ffmpeg: string, extra: Record<string, string> = {}) {
  return {
    VIDEO_STREAM_URL: url,
    STORAGE_PATH: storage,
    UPLOAD_PATH: join(storage, "uploads"),
    AMQP_URL: "",
    FFMPEG_PATH: ffmpeg,
    CAMERA_FRAMERATE: "20",
    VIDEO_CHUNK_DURATION_SECONDS: "4",
    MIN_FREE_DISK_GB: "0",
    ...extra,
  };
}

/** Per-picture PSNR (dB) of a chunk's decoded pictures against the JPEGs they were encoded from. */
async function psnr(chunk: string, sent: Uint8Array[], dir: string): Promise<number[]> {
  const ref = join(dir, `ref-${crypto.randomUUID()}.mjpeg`);
  const stats = join(dir, `psnr-${crypto.randomUUID()}.log`);
  await Deno.writeFile(ref, concat(sent));
  const { success, stderr } = await new Deno.Command(await ffmpegPath(), {
    args: [
      ...["-v", "error", "-i", chunk, "-f", "mjpeg", "-i", ref],
      ...[
        "-lavfi",
        `[0:v]settb=1/20,setpts=N[a];[1:v]format=yuv420p,settb=1/20,setpts=N[b];[a][b]psnr=stats_file=${stats}`,
      ],
      ...["-f", "null", "-"],
    ],
    stderr: "piped",
  }).output();
  assert.ok(success, new TextDecoder().decode(stderr));
  return (await Deno.readTextFile(stats)).trim().split("\n").map((l) =>
    Number(l.match(/psnr_avg:(\S+)/)![1])
  );
}

Deno.test("an MJPEG camera: every JPEG recorded in order, at its arrival time, close to the picture sent, a keyframe a second", async () => {
  const storage = await Deno.makeTempDir();
  const pictures = await jpegs();
  const COUNT = 200;
  const cam = serveCamera({ jpegs: pictures, mode: "mjpeg", intervalMs: jitter(7, 40, 66.7), count: COUNT });
  const svc = new ServiceProcess(cameraEnv(storage, cam.url, await recorderFfmpeg()));
  try {
    await svc.waitForLog((l) => l.msg === "encoder started", "encoder started");
    await until(
      async () => (await svc.metric("storage_frames_encoded_total")) >= COUNT,
      "200 pictures encoded",
      30_000,
      500,
    );
    svc.signal("SIGINT");
    assert.equal((await svc.exit()).code, 0);
  } finally {
    await cam.close();
  }
  const { chunks } = indexRows(storage);
  assert.ok(chunks.length >= 2, `${chunks.length} chunks`);
  let at = 0;
  const keyframeIntervals: number[] = [];
  for (const [i, chunk] of chunks.entries()) {
    const path = join(storage, chunk.path);
    // Timed by arrival, the pictures are at a variable rate: ffmpeg's null muxer would round them
    // onto a guessed constant one, so only decoding is judged.
    assert.equal(await decodeErrors(path, false), "", `chunk ${i} decodes`);
    const frames = await probeFrames(path);
    assert.ok(frames[0].key, `chunk ${i} starts at a keyframe`);
    for (const [k, f] of frames.entries()) {
      const off = Number(chunk.start_ms) + f.ptsMs - cam.sent[at + k];
      assert.ok(Math.abs(off) <= 5, `chunk ${i} frame ${k}: ${off.toFixed(1)} ms from its JPEG's sending`);
    }
    const keys = frames.filter((f) => f.key).map((f) => f.ptsMs);
    keyframeIntervals.push(...keys.slice(1).map((t, j) => t - keys[j]));
    if (i < chunks.length - 1) {
      const ms = Number(chunk.end_ms) - Number(chunk.start_ms);
      assert.ok(Math.abs(ms - 4000) <= 700, `chunk ${i} lasts ${ms} ms, not the 4 s rule's nearest keyframe`);
    }
    const db = await psnr(path, pictures.slice(at, at + frames.length), storage);
    assert.equal(db.length, frames.length);
    assert.ok(Math.min(...db) > 35, `chunk ${i}: lowest PSNR ${Math.min(...db).toFixed(1)} dB`);
    at += frames.length;
  }
  assert.equal(at, COUNT, "pictures recorded");
  // A keyframe every 20 pictures: every second at the camera's 15-25 fps (mean 18.8).
  for (const ms of keyframeIntervals) assert.ok(ms > 800 && ms < 1330, `keyframe interval ${ms} ms`);
  await Deno.remove(storage, { recursive: true });
});
