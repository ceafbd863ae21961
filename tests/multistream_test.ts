import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { FIXTURE, indexRows, pattern, probeFrames, ServiceProcess } from "./helpers.ts";

Deno.test("one process records several streams, each under its own folder, sharing one index", async () => {
  const drone = sourceFrames(await Deno.readFile(FIXTURE));
  const testsrc = sourceFrames(
    await pattern({ width: 640, height: 360, fps: 30, seconds: 3, gop: 30, bitrateKbps: 800 }),
  );
  const sent = { drone: 0, cam: 0 };
  const relays = {
    drone: await startRelay({
      frames: drone,
      intervalMs: () => 10,
      startAfterClients: 1,
      onFrame: () => sent.drone++,
    }),
    cam: await startRelay({
      frames: testsrc,
      intervalMs: () => 15,
      startAfterClients: 1,
      onFrame: () => sent.cam++,
    }),
  };
  const storage = await Deno.makeTempDir();
  const config = join(storage, "streams.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      streams: [{ name: "drone", url: relays.drone.url }, { name: "cam", url: relays.cam.url }],
    }),
  );
  const service = new ServiceProcess({ CONFIG_FILE: config, STORAGE_PATH: join(storage, "rec") });
  try {
    await Promise.all([relays.drone.finished, relays.cam.finished]);
    await Promise.all([relays.drone.close(), relays.cam.close()]);
    let disconnects = 0;
    await service.waitForLog((l) => l.msg === "disconnected" && ++disconnects === 2, "both streams ended");
    service.signal("SIGTERM");
    assert.equal((await service.exit()).code, 0);
    const { sessions, chunks } = indexRows(join(storage, "rec"));
    assert.deepEqual(sessions.map((s) => s.stream).sort(), ["cam", "drone"]);
    for (const stream of ["drone", "cam"] as const) {
      const mine = chunks.filter((c) => c.stream === stream);
      assert.ok(mine.length > 0);
      for (const c of mine) {
        assert.match(c.path, new RegExp(`^${stream}/\\d{8}_\\d{6}/video_segments/chunk_\\d{4}\\.mp4$`));
      }
      let frames = 0;
      for (const c of mine) frames += (await probeFrames(join(storage, "rec", c.path))).length;
      assert.equal(frames, sent[stream], stream);
      const session = sessions.find((s) => s.stream === stream)!;
      const meta = JSON.parse(await Deno.readTextFile(join(storage, "rec", session.dir, "metadata.json")));
      assert.equal(meta.total_frames, sent[stream]);
    }
    assert.equal(sent.drone, 144);
  } finally {
    service.signal("SIGKILL");
    await service.exit();
    await relays.drone.close();
    await relays.cam.close();
    await Deno.remove(storage, { recursive: true });
  }
});
