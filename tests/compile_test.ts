import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { FIXTURE, indexRows, ROOT, ServiceProcess, taskArgs } from "./helpers.ts";

// `deno compile` needs Deno's denort runtime, which it downloads; without internet it is given as DENORT_BIN.
const DENORT_BIN = Deno.env.get("DENORT_BIN");

Deno.test({
  name:
    "the compiled binary (deno task compile) records 5 s from the demo source, within its baked permissions" +
    (DENORT_BIN ? "" : " [skipped: DENORT_BIN is not set, and deno compile cannot download denort offline]"),
  ignore: !DENORT_BIN,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const binary = join(dir, "skyreel");
    let sent = 0;
    let fiveSeconds = () => {};
    const enough = new Promise<void>((r) => (fiveSeconds = r));
    const relay = await startRelay({
      frames: sourceFrames(await Deno.readFile(FIXTURE)),
      intervalMs: () => 1000 / 15,
      loops: Infinity,
      startAfterClients: 1,
      onFrame: () => ++sent === 75 && fiveSeconds(), // 5 s at 15 fps
    });
    // The permissions are computed from the configuration at build time, as on a field machine's.
    const env = {
      VIDEO_STREAM_URL: relay.url,
      STORAGE_PATH: join(dir, "rec"),
      UPLOAD_PATH: join(dir, "up"),
      AMQP_URL: "",
      HTTP_PORT: "0",
      METRICS_PORT: "0",
    };
    const built = await new Deno.Command(Deno.execPath(), {
      args: [...taskArgs("compile"), binary],
      cwd: ROOT,
      env,
      stderr: "piped",
      stdout: "null",
    }).output();
    assert.ok(built.success, new TextDecoder().decode(built.stderr));
    const elsewhere = await new Deno.Command(binary, {
      env: { ...env, STORAGE_PATH: join(dir, "elsewhere") },
      stderr: "piped",
    }).output();
    assert.equal(elsewhere.code, 2);
    assert.match(
      new TextDecoder().decode(elsewhere.stderr),
      /^skyreel: invalid configuration: STORAGE_PATH: /,
    );
    const service = new ServiceProcess(env, [binary]);
    try {
      await service.waitForLog((l) => l.msg === "chunk opened", "recording");
      await enough;
      await relay.close();
      await service.waitForLog((l) => l.msg === "disconnected");
      service.signal("SIGTERM");
      assert.equal((await service.exit()).code, 0);
      const frames = indexRows(join(dir, "rec")).chunks.reduce((n, c) => n + c.frames, 0);
      assert.ok(frames >= 70, `${frames} frames recorded`);
    } finally {
      service.signal("SIGKILL");
      await service.exit();
      await relay.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
