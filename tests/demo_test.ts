import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeErrors, probeFrames, ROOT, taskArgs } from "./helpers.ts";

/** Resolves with the first stdout line that contains `text`; rejects if the stream ends first. */
async function lineWith(stdout: ReadableStream<Uint8Array>, text: string, seen: string[]): Promise<void> {
  let buf = "";
  for await (const piece of stdout.pipeThrough(new TextDecoderStream())) {
    buf += piece;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    seen.push(...lines);
    if (lines.some((l) => l.includes(text))) return;
  }
  throw new Error(`the demo ended before "${text}":\n${seen.slice(-20).join("\n")}`);
}

Deno.test("the README's demo command records on a machine with Deno alone: no ffmpeg on PATH, no ../shared", async () => {
  // A clone has no ../shared beside it and no node_modules; PATH holds deno and nothing else.
  const dir = await Deno.makeTempDir({ prefix: "skyreel-demo-" });
  const bin = join(dir, "bin");
  await Deno.mkdir(bin);
  await Deno.symlink(Deno.execPath(), join(bin, "deno"));
  const clone = await new Deno.Command("git", { args: ["clone", "--quiet", ROOT, join(dir, "main")] }).output();
  assert.ok(clone.success, new TextDecoder().decode(clone.stderr));
  const env: Record<string, string> = { PATH: bin, HOME: Deno.env.get("HOME") ?? dir, NO_COLOR: "1" };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  const child = new Deno.Command(Deno.execPath(), {
    args: taskArgs("demo"),
    cwd: join(dir, "main"),
    clearEnv: true,
    env: { ...env, DEMO_PORT: "0", HTTP_PORT: "0", METRICS_PORT: "0", AMQP_URL: "" },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const seen: string[] = [];
  try {
    await lineWith(child.stdout, '"msg":"chunk closed"', seen);
    assert.ok(seen.some((l) => l.includes("ffmpeg testsrc2")), "the source is ffmpeg's pattern, not the fixture");
    child.kill("SIGINT");
    assert.equal((await child.status).code, 0);
    const chunk = (await Array.fromAsync(Deno.readDir(join(dir, "main/recordings"))))
      .filter((e) => e.isDirectory && /^\d{8}_\d{6}/.test(e.name))
      .map((e) => join(dir, "main/recordings", e.name, "video_segments/chunk_0001.mp4"))[0];
    assert.ok(chunk, "a session folder in ./recordings");
    const frames = await probeFrames(chunk);
    assert.ok(frames.length >= 290, `a 10 s chunk at 30 fps: ${frames.length} frames`);
    assert.equal(await decodeErrors(chunk), "");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
