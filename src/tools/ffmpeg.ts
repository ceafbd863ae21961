export interface TestPatternOptions {
  width: number;
  height: number;
  fps: number;
  seconds: number;
  /** Frames between IDR pictures. */
  gop: number;
  bitrateKbps: number;
  /** Slices per picture (the drone codes 7); one when absent. */
  slices?: number;
  /** CABAC (main/high profile entropy coding) instead of ultrafast's CAVLC. */
  cabac?: boolean;
  /** x264's preset and B-frames (ultrafast, none by default): "medium" with B-frames exercises weighted prediction and reference list changes. */
  preset?: string;
  bframes?: number;
  /** Fresh grain on every picture, so the stream is as large as its bitrate (testsrc2 alone stays near 3 Mbit/s at 640x360). */
  noise?: boolean;
}

/**
 * Encodes ffmpeg's testsrc2 pattern as an Annex-B H.264 stream (baseline-like: no B-frames).
 *
 * @example
 * const h264 = await testPattern(ffmpeg, { width: 1280, height: 720, fps: 30, seconds: 10, gop: 30, bitrateKbps: 4000 });
 */
export async function testPattern(ffmpeg: string, o: TestPatternOptions): Promise<Uint8Array> {
  const { success, stdout, stderr } = await new Deno.Command(ffmpeg, {
    args: [
      ...testsrc(o.width, o.height, o.fps),
      ...(o.noise ? ["-vf", "noise=alls=60:allf=t"] : []),
      "-t",
      String(o.seconds),
      "-c:v",
      "libx264",
      "-preset",
      o.preset ?? "ultrafast",
      "-tune",
      "zerolatency",
      "-bf",
      String(o.bframes ?? 0),
      "-g",
      String(o.gop),
      "-keyint_min",
      String(o.gop),
      "-sc_threshold",
      "0",
      ...(o.slices ? ["-x264-params", `slices=${o.slices}:sliced-threads=0`] : []),
      ...(o.cabac ? ["-coder", "1"] : []),
      "-pix_fmt",
      "yuv420p",
      "-b:v",
      `${o.bitrateKbps}k`,
      "-maxrate",
      `${o.bitrateKbps}k`,
      "-bufsize",
      `${o.bitrateKbps}k`,
      "-bsf:v",
      "h264_mp4toannexb",
      "-f",
      "h264",
      "-",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffmpeg test pattern failed: ${new TextDecoder().decode(stderr)}`);
  return stdout;
}

/** ffmpeg's arguments up to its input: the testsrc2 pattern, quiet but for errors. */
function testsrc(width: number, height: number, fps: number): string[] {
  return [
    "-hide_banner",
    "-loglevel",
    "error",
    "-f",
    "lavfi",
    "-i",
    `testsrc2=size=${width}x${height}:rate=${fps}`,
  ];
}

/**
 * `count` JPEGs of the testsrc2 pattern (a moving picture with a frame counter), each its own
 * frame, as an MJPEG camera sends them.
 *
 * @example
 * const [first] = await testJpegs(ffmpeg, { width: 640, height: 480, count: 20 });
 */
export async function testJpegs(
  ffmpeg: string,
  o: { width: number; height: number; count: number },
): Promise<Uint8Array<ArrayBuffer>[]> {
  const { success, stdout, stderr } = await new Deno.Command(ffmpeg, {
    args: [
      ...testsrc(o.width, o.height, 20),
      ...["-frames:v", String(o.count), "-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg", "pipe:1"],
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!success) throw new Error(`ffmpeg failed to make JPEGs: ${new TextDecoder().decode(stderr)}`);
  // ffmpeg's JPEGs stuff every 0xff in their scan data, so an end of image followed by a start of
  // image is always a frame boundary.
  const out: Uint8Array<ArrayBuffer>[] = [];
  let from = 0;
  for (let i = 2; i + 3 < stdout.length; i++) {
    if (stdout[i] === 0xff && stdout[i + 1] === 0xd9 && stdout[i + 2] === 0xff && stdout[i + 3] === 0xd8) {
      out.push(stdout.slice(from, i + 2));
      from = i + 2;
    }
  }
  out.push(stdout.slice(from));
  return out;
}
