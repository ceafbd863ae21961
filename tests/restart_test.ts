import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../src/app/config.ts";
import { setLogLevel } from "../src/runtime/log.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { startService } from "../src/app/service.ts";
import { decodeErrors, indexRows, pattern, probeFrames, sumMetric, until } from "./helpers.ts";

Deno.test("a writer restart replays recovery and recording goes on; an indexer restart leaves open chunks alone", async () => {
  setLogLevel("error");
  const h264 = await pattern({ width: 640, height: 360, fps: 30, seconds: 5, gop: 30, bitrateKbps: 1000 });
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
    startAfterClients: 1,
  });
  const storage = await Deno.makeTempDir();
  const service = await startService(loadConfig({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    FRAGMENT_DURATION_MS: "300",
    HTTP_PORT: "0",
    METRICS_PORT: "0",
  }));
  const box = (actor: string) => service.mailboxes.find((m) => m.actor === actor)!.box;
  const health = (actor: string) => service.supervisor.health().find((h) => h.actor === actor)!;
  try {
    await until(async () => ((await service.index.chunks())[0]?.frames ?? 0) > 30, "frames in chunk 1");
    // A bug in the writer: a frame whose bytes cannot be copied. It fails at the next fragment, mid-chunk.
    const poisoned = {
      length: 5,
      get 0(): number {
        throw new Error("poisoned frame");
      },
    } as unknown as Uint8Array;
    const poison = { ts: Date.now(), keyframe: false, corrupt: false, params: null, data: poisoned };
    box("writer").send({ type: "frame", frame: poison });
    await until(
      () => health("writer").restarts === 1 && health("writer").state === "running",
      "writer restart",
    );
    await until(
      async () => (await service.index.chunks()).some((c) => c.idx === 2 && c.frames > 10),
      "chunk 2",
    );
    const afterWriter = await service.index.chunks();
    assert.equal(afterWriter[0].status, "recovered");
    assert.equal(afterWriter[1].status, "recording");

    // A bug in the indexer: recovery runs again, but chunk 2 is held open by the live writer.
    box("indexer").send({ type: "chunk-opened", chunk: null });
    await until(
      () => health("indexer").restarts === 1 && health("indexer").state === "running",
      "indexer restart",
    );
    assert.equal((await service.index.chunk(afterWriter[1].path))?.status, "recording");
    const healthz = await fetch(`http://127.0.0.1:${service.httpPort}/healthz`).then((r) => r.json());
    assert.equal(healthz.status, "ok");

    assert.equal(await service.stop(), 0);
    const chunks = indexRows(storage).chunks;
    assert.deepEqual(chunks.map((c) => [c.idx, c.status]), [[1, "recovered"], [2, "complete"]]);
    assert.equal(new Set(chunks.map((c) => c.session_id)).size, 1, "one session throughout");
    for (const c of chunks) {
      const path = join(storage, c.path);
      assert.equal(await decodeErrors(path), "", c.path);
      const probed = await probeFrames(path);
      assert.equal(probed.length, c.frames);
      assert.equal(probed[0].key, true);
    }
    const metrics = await service.metrics.registry.metrics();
    assert.equal(sumMetric(metrics, "storage_actor_restarts_total", { actor: "writer" }), 1);
    assert.equal(sumMetric(metrics, "storage_actor_restarts_total", { actor: "indexer" }), 1);
    assert.equal(sumMetric(metrics, "storage_chunks_recovered_total"), 1);
  } finally {
    await service.stop();
    await relay.close();
    setLogLevel("info");
    await Deno.remove(storage, { recursive: true });
  }
});
