import { jpegPart } from "../jpeg/multipart.ts";

/** How a camera's JPEGs are encoded (the video-store's `video` attributes and `framerate`). */
export interface EncodeSettings {
  /** Pictures a second the camera is expected to send (snapshots are polled at this rate). */
  fps: number;
  bitrateKbps: number;
  /** x264's preset. */
  preset: string;
}

/** x264's presets, fastest first. */
export const PRESETS = [
  "ultrafast",
  "superfast",
  "veryfast",
  "faster",
  "fast",
  "medium",
  "slow",
  "slower",
  "veryslow",
] as const;

/**
 * ffmpeg's arguments to encode JPEGs written to its stdin (each framed by `encoderInput`) into
 * H.264 in FLV on its stdout. The input is multipart with a Content-Length a part, because ffmpeg's
 * raw MJPEG demuxer ends a picture only at the next one's start, which would hold every picture a
 * frame interval (measured: 50 ms at 20 fps, against 5 ms). libx264
 * tuned for zero latency (no lookahead, no B-frames, no frame threads: one picture out per picture
 * in, at once), a keyframe every `fps` pictures (every second at the camera's rate), `bitrate`
 * capped by a one-second buffer. Inputs are numbered at `fps` and passed through unchanged
 * (`-vsync 0`), which is how each output picture names its JPEG (src/ingest/ffmpeg/encoder_ledger.ts).
 * x264 needs even sizes: an odd row or column is cropped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encoderArgs } from "./args.ts";
 * const args = encoderArgs({ fps: 20, bitrateKbps: 1000, preset: "veryfast" });
 * assert.equal(args[args.indexOf("-g") + 1], "20");
 * ```
 */
export function encoderArgs(s: EncodeSettings): string[] {
  const gop = String(Math.max(1, Math.round(s.fps)));
  return [
    ...["-hide_banner", "-nostdin", "-loglevel", "warning"],
    ...["-f", "mpjpeg", "-r", String(s.fps), "-i", "pipe:0"],
    ...["-map", "0:v:0", "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p"],
    ...["-c:v", "libx264", "-preset", s.preset, "-tune", "zerolatency", "-bf", "0"],
    ...["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"],
    ...["-b:v", `${s.bitrateKbps}k`, "-maxrate", `${s.bitrateKbps}k`, "-bufsize", `${s.bitrateKbps}k`],
    ...["-vsync", "0", "-flush_packets", "1", "-f", "flv", "pipe:1"],
  ];
}

/**
 * A JPEG as the encoder reads it (`encoderArgs`): a multipart part with its length, so ffmpeg
 * knows where the picture ends the moment it has it.
 *
 * @example
 * await child.write(encoderInput(jpeg));
 */
export function encoderInput(jpeg: Uint8Array): Uint8Array {
  return jpegPart("ffmpeg", jpeg);
}

/**
 * ffmpeg's arguments to read an RTSP source's first video stream (interleaved over the RTSP TCP
 * connection, so nothing is lost to UDP) and copy its H.264 unchanged into FLV on stdout, which
 * keeps each picture's RTP time at millisecond precision.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rtspArgs } from "./args.ts";
 * assert.ok(rtspArgs("rtsp://cam/stream").includes("copy"));
 * ```
 */
export function rtspArgs(url: string): string[] {
  return [
    ...["-hide_banner", "-nostdin", "-loglevel", "warning"],
    // ffmpeg reads up to this much of the stream before it passes any on: the first pictures'
    // delay (docs/time.md).
    ...["-rtsp_transport", "tcp", "-analyzeduration", "1000000", "-i", url],
    ...["-map", "0:v:0", "-c", "copy", "-flush_packets", "1", "-f", "flv", "pipe:1"],
  ];
}
