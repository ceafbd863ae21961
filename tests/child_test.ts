import assert from "node:assert/strict";
import { Child } from "../src/runtime/child.ts";
import type { Logger } from "../src/runtime/log.ts";
import { FlvReader } from "../src/ingest/ffmpeg/flv.ts";
import { encoderArgs, encoderInput } from "../src/ingest/ffmpeg/args.ts";
import { FrameParser } from "../src/ingest/h264/frame_parser.ts";
import { testJpegs } from "../src/tools/ffmpeg.ts";
import { concat } from "../src/runtime/bytes.ts";
import { ffmpegPath } from "./helpers.ts";

function capture(): {
  log: Logger;
  lines: { level: string; msg: string; fields?: Record<string, unknown> }[];
} {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    void lines.push({ level, msg, fields });
  return { log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

Deno.test("a child's stderr goes to the log at debug, line by line, and its last line is kept", async () => {
  const { log, lines } = capture();
  const child = new Child("sh", ["-c", "echo one >&2; echo two >&2; exit 3"], log, { stdin: false });
  for await (const _ of child.stdout) { /* nothing */ }
  const status = await child.stop();
  assert.equal(status.code, 3);
  assert.deepEqual(lines.map((l) => [l.level, l.fields?.line]), [["debug", "one"], ["debug", "two"]]);
  assert.equal(child.lastError, "two");
});

Deno.test("stop reaps a child that ignores SIGTERM: SIGKILL after the grace period", async () => {
  const { log } = capture();
  const ignoreTerm = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)";
  const child = new Child("python3", ["-c", ignoreTerm], log, { stdin: true });
  const t = performance.now();
  const status = await child.stop();
  assert.equal(status.signal, "SIGKILL");
  assert.ok(performance.now() - t < 6000);
  assert.throws(() => Deno.kill(child.pid, "SIGCONT"), Deno.errors.NotFound, "reaped");
  await child.stdout.cancel();
});

Deno.test("FLV from the cameras' encoder: one tag a JPEG, in order, each a whole picture with its number as its time", async () => {
  const jpegs = await testJpegs(await ffmpegPath(), { width: 320, height: 240, count: 30 });
  const p = new Deno.Command(await ffmpegPath(), {
    args: encoderArgs({ fps: 20, bitrateKbps: 500, preset: "ultrafast" }),
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = new Response(p.stdout).arrayBuffer(); // read while writing: the pipe is small
  const w = p.stdin.getWriter();
  await w.write(concat(jpegs.map(encoderInput)));
  await w.close();
  const flv = new FlvReader();
  const tags = [];
  // Pieces of every size: the reader's result does not depend on how the bytes were split.
  const out = new Uint8Array(await output);
  for (let at = 0, n = 1; at < out.length; at += n, n = (n * 7) % 4093 + 1) {
    tags.push(...flv.push(out.subarray(at, at + n)));
  }
  await p.status;
  assert.equal(tags[0].type, "config");
  const pictures = tags.filter((t) => t.type === "picture");
  assert.deepEqual(pictures.map((t) => t.ptsMs), jpegs.map((_, i) => i * 50));
  const parser = new FrameParser();
  const frames = tags.flatMap((t) => parser.unit(t.nals, t.type === "picture" ? t.ptsMs : 0));
  assert.equal(frames.length, 30);
  assert.deepEqual(frames.filter((f) => f.keyframe).map((f) => f.ts), [0, 1000]);
  assert.ok(frames.every((f) => !f.corrupt && !f.incomplete && f.params?.info.width === 320));
  assert.throws(
    () => new FlvReader().push(new TextEncoder().encode("<html>not flv</html>")),
    /not an FLV stream/,
  );
});
