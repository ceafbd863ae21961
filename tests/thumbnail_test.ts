import assert from "node:assert/strict";
import { join } from "node:path";
import { jpegSize } from "../src/ingest/jpeg/jpeg.ts";
import { thumbnailPath } from "../src/store/layout.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { ffmpegPath, pattern, ServiceProcess, SMALL_PATTERN, until } from "./helpers.ts";

Deno.test("thumbnails: one JPEG a chunk at the chunk's size, kept beside it, deleted with it by the janitor", async () => {
  const storage = await Deno.makeTempDir();
  const relay = await startRelay({
    frames: sourceFrames(await pattern(SMALL_PATTERN)),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
  });
  const svc = new ServiceProcess({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    AMQP_URL: "",
    FFMPEG_PATH: await ffmpegPath(),
    VIDEO_CHUNK_DURATION_SECONDS: "2",
    STORAGE_SIZE_GB: "0.001", // about five 2 s chunks
    JANITOR_INTERVAL_SECONDS: "1",
    MIN_FREE_DISK_GB: "0",
  });
  try {
    const base = `http://127.0.0.1:${await svc.port("http")}`;
    const chunks = async () => (await (await fetch(`${base}/api/chunks`)).json()).chunks;
    await until(async () => (await chunks()).length >= 3, "3 chunks", 30_000, 200);
    const first = (await chunks())[0];
    for (const c of (await chunks()).slice(0, 3)) {
      const res = await fetch(`${base}/api/thumbnail?chunk=${encodeURIComponent(c.path)}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "image/jpeg");
      const jpeg = new Uint8Array(await res.arrayBuffer());
      assert.deepEqual(jpegSize(jpeg), { width: c.width, height: c.height });
      assert.deepEqual(
        await Deno.readFile(join(storage, thumbnailPath(c.path))),
        jpeg,
        "kept beside the chunk",
      );
    }
    const refused = await fetch(`${base}/api/thumbnail?chunk=${encodeURIComponent("../../etc/passwd")}`);
    assert.equal(refused.status, 404);
    assert.match((await refused.json()).error, /^chunk: no chunk/);
    await until(
      async () => !(await chunks()).some((c: { path: string }) => c.path === first.path),
      "the janitor",
      60_000,
      500,
    );
    await assert.rejects(Deno.stat(join(storage, thumbnailPath(first.path))), Deno.errors.NotFound);
  } finally {
    svc.signal("SIGTERM");
    await svc.exit();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});
