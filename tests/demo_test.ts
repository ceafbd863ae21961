import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeErrors, probeFrames, ROOT, ServiceProcess, taskArgs } from "./helpers.ts";

Deno.test("the README's demo command records on a machine with Deno alone: no ffmpeg on PATH, no ../shared", async () => {
  // A clone has no ../shared beside it and no node_modules; PATH holds deno and nothing else.
  const dir = await Deno.makeTempDir({ prefix: "skyreel-demo-" });
  const bin = join(dir, "bin");
  const checkout = join(dir, "main");
  await Deno.mkdir(bin);
  await Deno.symlink(Deno.execPath(), join(bin, "deno"));
  const clone = await new Deno.Command("git", { args: ["clone", "--quiet", ROOT, checkout] }).output();
  assert.ok(clone.success, new TextDecoder().decode(clone.stderr));
  const env: Record<string, string> = {
    PATH: bin,
    HOME: Deno.env.get("HOME") ?? dir,
    DEMO_PORT: "0",
    AMQP_URL: "",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  const demo = new ServiceProcess(env, [Deno.execPath(), ...taskArgs("demo")], {
    cwd: checkout,
    clearEnv: true,
  });
  try {
    await demo.waitForLog((l) => l.msg === "chunk closed", "a closed chunk");
    // One line for the person, on stderr, naming the console, which answers there.
    const line = demo.stderr.find((l) => l.startsWith("skyreel demo: recording"));
    const url = line?.match(/open (http:\/\/\S+\/) /)?.[1];
    assert.ok(url, `the demo names its console: ${demo.stderr.join("\n")}`);
    assert.match(await (await fetch(url)).text(), /<title>skyreel<\/title>/);
    assert.ok(
      demo.logs.some((l) =>
        l.msg === "demo source streaming" && String(l.source).startsWith("ffmpeg testsrc2")
      ),
      "the source is ffmpeg's pattern, not the fixture",
    );
    demo.signal("SIGINT");
    assert.equal((await demo.exit()).code, 0);
    const chunk = (await Array.fromAsync(Deno.readDir(join(checkout, "recordings"))))
      .filter((e) => e.isDirectory && /^\d{8}_\d{6}/.test(e.name))
      .map((e) => join(checkout, "recordings", e.name, "video_segments/chunk_0001.mp4"))[0];
    assert.ok(chunk, "a session folder in ./recordings");
    const frames = await probeFrames(chunk);
    assert.ok(frames.length >= 290, `a 10 s chunk at 30 fps: ${frames.length} frames`);
    assert.equal(await decodeErrors(chunk), "");
  } finally {
    demo.signal("SIGKILL");
    await demo.exit();
    await Deno.remove(dir, { recursive: true });
  }
});
