import assert from "node:assert/strict";
import { join } from "node:path";
import { indexRows, recordPattern, ServiceProcess, SMALL_PATTERN } from "./helpers.ts";

/** Starts the service on existing storage (no relay) and stops it once recovery has run. */
async function restart(storage: string): Promise<void> {
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: "ws://127.0.0.1:9/ws/video/consume",
    STORAGE_PATH: storage,
  });
  await service.waitForLog((l) => l.msg === "recording", "start-up");
  service.signal("SIGTERM");
  assert.equal((await service.exit()).code, 0);
}

const facts = (
  c: Record<string, unknown>,
) => [c.path, c.start_ms, c.end_ms, c.frames, c.bytes, c.width, c.height, c.codec];

Deno.test("a deleted index is rebuilt from the chunk files; a deleted chunk file becomes missing", async () => {
  const { storage } = await recordPattern({
    ...SMALL_PATTERN,
    intervalMs: 25,
    env: { VIDEO_CHUNK_DURATION_SECONDS: "1" },
  });
  try {
    const before = indexRows(storage);
    assert.ok(before.chunks.length >= 3);
    for (const f of ["index.db", "index.db-wal", "index.db-shm"]) {
      await Deno.remove(join(storage, f)).catch(() => {});
    }
    await restart(storage);
    const rebuilt = indexRows(storage);
    assert.deepEqual(rebuilt.chunks.map(facts), before.chunks.map(facts));
    assert.ok(rebuilt.chunks.every((c) => c.status === "recovered"));
    assert.deepEqual(
      rebuilt.sessions.map((s) => [s.session_id, s.dir, s.start_ms]),
      before.sessions.map((s) => [s.session_id, s.dir, s.start_ms]),
    );

    const gone = rebuilt.chunks[1];
    await Deno.remove(join(storage, gone.path));
    await restart(storage);
    const after = indexRows(storage);
    assert.deepEqual(
      after.chunks.map((c) => c.status),
      rebuilt.chunks.map((c) => c.path === gone.path ? "missing" : "recovered"),
    );
    const meta = JSON.parse(await Deno.readTextFile(join(storage, after.sessions[0].dir, "metadata.json")));
    assert.equal(meta.chunks[1].status, "missing");
    assert.equal(meta.total_frames, before.chunks.reduce((n, c) => n + c.frames, 0) - gone.frames);
  } finally {
    await Deno.remove(storage, { recursive: true });
  }
});
