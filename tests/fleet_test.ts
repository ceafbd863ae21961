/** Recorders sharing one PostgreSQL index (docs/fleet.md), as separate processes. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { decodeErrors, frameMd5s, pattern, ServiceProcess, SMALL_PATTERN } from "./helpers.ts";
import { freshSchema, pgQuery } from "./postgres_helpers.ts";

Deno.test("two recorders on one PostgreSQL index record the same stream name side by side, each its own rows, every picture kept", async () => {
  const h264 = await pattern(SMALL_PATTERN);
  const frames = sourceFrames(h264);
  const relay = await startRelay({ frames, intervalMs: () => 25, startAfterClients: 2 });
  const db = await freshSchema();
  const names = ["gs-a", "gs-b"];
  const storages = await Promise.all(names.map(() => Deno.makeTempDir()));
  const services = names.map((name, i) =>
    new ServiceProcess({
      VIDEO_STREAM_URL: relay.url,
      STORAGE_PATH: storages[i],
      RECORDER_ID: name,
      INDEX_URL: db.url,
      AMQP_URL: "",
      VIDEO_CHUNK_DURATION_SECONDS: "1",
    })
  );
  try {
    await relay.finished;
    await relay.close();
    for (const s of services) await s.waitForLog((l) => l.msg === "disconnected", "the relay's close");
    for (const [i, s] of services.entries()) {
      const base = `http://127.0.0.1:${await s.port("http")}`;
      const health = await (await fetch(`${base}/healthz`)).json();
      assert.deepEqual([health.recorder, health.index], [names[i], "postgres"]);
      const ranges = await (await fetch(`${base}/api/ranges`)).json();
      assert.equal(ranges.recorder, names[i]);
      // The open chunk counts up to its last written fragment: the whole is checked after the stop.
      assert.equal(ranges.ranges.length, 1);
    }
    for (const s of services) s.signal("SIGTERM");
    for (const s of services) assert.equal((await s.exit()).code, 0, s.stderr.join("\n"));

    const chunks = await pgQuery<
      { recorder: string; stream: string; path: string; frames: number; status: string }
    >(
      db.schema,
      "SELECT recorder, stream, path, frames, status FROM chunks ORDER BY recorder, start_ms",
    );
    const sourceFile = join(storages[0], "source.h264");
    await Deno.writeFile(sourceFile, h264);
    const source = await frameMd5s(sourceFile, true);
    for (const [i, name] of names.entries()) {
      const own = chunks.filter((c) => c.recorder === name);
      assert.ok(own.length >= 3, `${name}: ${own.length} chunks`);
      assert.ok(own.every((c) => c.stream === "default" && c.status === "complete"));
      // Each chunk decodes on its own, and together they are the source's pictures, each once.
      const md5s: string[] = [];
      for (const c of own) {
        const file = join(storages[i], c.path);
        assert.equal(await decodeErrors(file), "", c.path);
        md5s.push(...await frameMd5s(file));
      }
      assert.deepEqual(md5s, source, `${name}: every picture, in order`);
    }
    const sessions = await pgQuery<{ recorder: string; status: string }>(
      db.schema,
      "SELECT recorder, status FROM sessions ORDER BY recorder",
    );
    assert.deepEqual(sessions.map((s) => [s.recorder, s.status]), [["gs-a", "ended"], ["gs-b", "ended"]]);
    const events = await pgQuery<{ recorder: string; body: string }>(
      db.schema,
      "SELECT recorder, body FROM events",
    );
    assert.ok(events.length > 0);
    assert.ok(events.every((e) => JSON.parse(e.body).recorder === e.recorder && names.includes(e.recorder)));
  } finally {
    for (const s of services) {
      s.signal("SIGKILL");
      await s.exit();
    }
    await relay.close();
    await db.drop();
    for (const dir of storages) await Deno.remove(dir, { recursive: true });
  }
});
