/**
 * `deno task demo`: a relay-like source looping a bundled H.264 stream (interleaved as the upstream
 * relay sends it), and the recorder reading it, so a new user sees chunks appear in ./recordings
 * with nothing else set up.
 *
 * DEMO_SOURCE: "fixture" (the drone recording in ../shared/fixtures), "pattern" (ffmpeg's testsrc2,
 * 1280x720 at 30 fps), "camera" (an MJPEG camera of testsrc2 JPEGs, 640x480 at 20 fps, which the
 * recorder encodes with ffmpeg: docs/cameras.md), or a path to an Annex-B .h264 file. Default: the fixture if present, else the
 * pattern. DEMO_FPS paces a file (default 30; the fixture plays at its 14.7 fps). DEMO_HOST and
 * DEMO_PORT (127.0.0.1:5001) place the source; DEMO_SOURCE_ONLY=1 runs the source without a recorder.
 */
import { resolveFfmpeg } from "../app/ffmpeg.ts";
import { testJpegs, testPattern } from "./ffmpeg.ts";
import { serveCamera } from "./mjpeg_camera.ts";
import { FORMATS, logger, setLogFormat } from "../runtime/log.ts";
import { runRecorder } from "../app/main.ts";
import type { Service } from "../app/service.ts";
import { sourceFrames, startRelay } from "./relay.ts";

const FIXTURE = new URL("../../../shared/fixtures/drone-854x480-baseline.h264", import.meta.url);
const FIXTURE_FPS = 7359 / 500;

async function loadSource(
  env: Record<string, string>,
): Promise<{ h264: Uint8Array; fps: number; name: string }> {
  const choice = env.DEMO_SOURCE ?? "";
  const fps = Number(env.DEMO_FPS) || 0;
  if (choice === "fixture" || (choice === "" && await exists(FIXTURE))) {
    return { h264: await Deno.readFile(FIXTURE), fps: fps || FIXTURE_FPS, name: "drone fixture (854x480)" };
  }
  if (choice === "pattern" || choice === "") {
    const h264 = await testPattern(await needFfmpeg(env), {
      width: 1280,
      height: 720,
      fps: 30,
      seconds: 10,
      gop: 30,
      bitrateKbps: 4000,
    });
    return { h264, fps: fps || 30, name: "ffmpeg testsrc2 (1280x720)" };
  }
  return { h264: await Deno.readFile(choice), fps: fps || 30, name: choice };
}

async function exists(path: URL): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** One line for the person who ran the demo (on stderr: stdout stays the log). */
function announce(service: Service): void {
  const host = env.HTTP_HOST ?? "127.0.0.1";
  console.error(
    `skyreel demo: recording to ${
      env.STORAGE_PATH ?? "./recordings"
    }; open http://${host}:${service.httpPort}/ (Ctrl-C stops)`,
  );
}

async function needFfmpeg(env: Record<string, string>): Promise<string> {
  const ffmpeg = await resolveFfmpeg(env);
  if (ffmpeg) return ffmpeg;
  console.error(
    "skyreel demo: no fixture at ../shared/fixtures and no ffmpeg (set FFMPEG_PATH or install ffmpeg)",
  );
  Deno.exit(2);
}

const env = Deno.env.toObject();
setLogFormat(
  (FORMATS as readonly string[]).includes(env.LOG_FORMAT ?? "") ? env.LOG_FORMAT as "json" : "auto",
);
if (env.DEMO_SOURCE === "camera") {
  const jpegs = await testJpegs(await needFfmpeg(env), { width: 640, height: 480, count: 100 });
  const cam = serveCamera({
    jpegs,
    mode: "mjpeg",
    intervalMs: () => 50,
    hostname: env.DEMO_HOST ?? "127.0.0.1",
    port: Number(env.DEMO_PORT ?? 5001),
  });
  logger("demo").info("demo camera serving MJPEG", { size: "640x480", fps: 20, url: cam.url });
  await runRecorder(
    { VIDEO_CHUNK_DURATION_SECONDS: "10", ...env, VIDEO_STREAM_URL: cam.url },
    () => cam.close(),
  );
}
const source = await loadSource(env);
const relay = await startRelay({
  frames: sourceFrames(source.h264),
  hostname: env.DEMO_HOST ?? "127.0.0.1",
  port: Number(env.DEMO_PORT ?? 5001),
  intervalMs: () => 1000 / source.fps,
  loops: Infinity,
  upstream: true, // as the real relay sends it: SPS, SPS+PPS before every IDR slice
});
logger("demo").info("demo source streaming", { source: source.name, fps: source.fps, url: relay.url });
// DEMO_SOURCE_ONLY: the source alone, for a recorder elsewhere (the compose stack's demo profile).
if (env.DEMO_SOURCE_ONLY === "1") await new Promise(() => {});
await runRecorder(
  { VIDEO_CHUNK_DURATION_SECONDS: "10", ...env, VIDEO_STREAM_URL: relay.url },
  () => relay.close(),
  announce,
);
