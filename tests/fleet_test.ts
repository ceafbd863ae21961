/** Recorders sharing one PostgreSQL index (docs/fleet.md), as separate processes. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  command,
  decodeErrors,
  frameMd5s,
  pattern,
  ServiceProcess,
  SMALL_PATTERN,
  until,
} from "./helpers.ts";
import { archiveEnv, S3Server } from "./s3_helpers.ts";
import { freshSchema, pgQuery } from "./postgres_helpers.ts";

Deno.test("two recorders on one PostgreSQL index and one bucket record the same stream name side by side, every picture kept; a third node with no streams lists both and serves their clips (/api/clip, fetch, save) byte for byte as their recorders do", async () => {
  const h264 = await pattern(SMALL_PATTERN);
  const frames = sourceFrames(h264);
  const relay = await startRelay({ frames, intervalMs: () => 25, startAfterClients: 2 });
  const db = await freshSchema();
  const s3 = await S3Server.start();
  const names = ["gs-a", "gs-b"];
  const storages = await Promise.all(names.map(() => Deno.makeTempDir()));
  const uploads = await Promise.all(names.map(() => Deno.makeTempDir()));
  const services = names.map((name, i) =>
    new ServiceProcess({
      VIDEO_STREAM_URL: relay.url,
      STORAGE_PATH: storages[i],
      UPLOAD_PATH: uploads[i],
      RECORDER_ID: name,
      INDEX_URL: db.url,
      AMQP_URL: "",
      VIDEO_CHUNK_DURATION_SECONDS: "1",
      VIDEO_IDLE_TIMEOUT_SECONDS: "1",
      ...archiveEnv(s3.port),
    })
  );
  const viewerStorage = await Deno.makeTempDir();
  let viewer: ServiceProcess | null = null;
  try {
    await relay.finished;
    await relay.close();
    for (const s of services) {
      await s.waitForLog(
        (l) => l.msg === "chunk closed" && l.reason === "idle",
        "the last chunk's idle close",
      );
    }
    for (const [i, s] of services.entries()) {
      const base = `http://127.0.0.1:${await s.port("http")}`;
      const health = await (await fetch(`${base}/healthz`)).json();
      assert.deepEqual([health.recorder, health.index], [names[i], "postgres"]);
      const ranges = await (await fetch(`${base}/api/ranges`)).json();
      assert.equal(ranges.recorder, names[i]);
      assert.equal(ranges.ranges.length, 1);
      await until(
        async () => (await (await fetch(`${base}/healthz`)).json()).archive.queue.depth === 0,
        "archived",
      );
    }

    // A node that records nothing, with its own empty disk, on the same index and bucket.
    const config = join(viewerStorage, "streams.json");
    await Deno.writeTextFile(config, JSON.stringify({ streams: [] }));
    viewer = new ServiceProcess({
      CONFIG_FILE: config,
      STORAGE_PATH: join(viewerStorage, "rec"),
      UPLOAD_PATH: join(viewerStorage, "up"),
      RECORDER_ID: "gs-view",
      INDEX_URL: db.url,
      AMQP_URL: "",
      ...archiveEnv(s3.port),
    });
    const viewerBase = `http://127.0.0.1:${await viewer.port("http")}`;
    const fleet = await (await fetch(`${viewerBase}/api/ranges`)).json();
    assert.deepEqual(
      fleet.streams.map((
        s: { recorder: string; stream: string; ranges: unknown[] },
      ) => [s.recorder, s.stream, s.ranges.length]),
      [["gs-a", "default", 1], ["gs-b", "default", 1]],
    );
    for (const [i, name] of names.entries()) {
      const own = await pgQuery<{ start_ms: number; end_ms: number }>(
        db.schema,
        `SELECT start_ms, end_ms FROM chunks WHERE recorder = '${name}' ORDER BY start_ms`,
      );
      // Across the boundary of its second and third chunks.
      const from = new Date(Number(own[1].end_ms) - 400).toISOString();
      const to = new Date(Number(own[2].start_ms) + 400).toISOString();
      const holder = await fetch(
        `http://127.0.0.1:${await services[i].port("http")}/api/clip?from=${from}&to=${to}`,
      );
      const viewed = await fetch(
        `${viewerBase}/api/clip?recorder=${name}&stream=default&from=${from}&to=${to}`,
      );
      assert.deepEqual([holder.status, viewed.status], [200, 200]);
      const [a, b] = [new Uint8Array(await holder.arrayBuffer()), new Uint8Array(await viewed.arrayBuffer())];
      assert.ok(a.length > 10_000);
      assert.deepEqual(b, a, `${name}: the archive's clip is the recorder's, byte for byte`);
      assert.equal(viewed.headers.get("x-clip-from"), holder.headers.get("x-clip-from"));

      // The video-store camera's commands name the recorder and stream the same way.
      const holderBase = `http://127.0.0.1:${await services[i].port("http")}`;
      const asked = { from, to };
      const named = { ...asked, recorder: name, stream: "default" };
      const [ownFetch, farFetch] = [
        await command(holderBase, { command: "fetch", ...asked }),
        await command(viewerBase, { command: "fetch", ...named }),
      ];
      assert.ok(ownFetch.video.length > 10_000);
      assert.equal(farFetch.video, ownFetch.video, `${name}: fetch from the archive, byte for byte`);
      const [ownState, farState] = [
        await command(holderBase, { command: "get-storage-state" }),
        await command(viewerBase, { command: "get-storage-state", recorder: name }),
      ];
      assert.deepEqual(farState.stored_video, ownState.stored_video);
      assert.equal(farState.recorder, "gs-view", "the answering node says who it is");
      const [ownSave, farSave] = [
        await command(holderBase, { command: "save", ...asked }),
        await command(viewerBase, { command: "save", ...named }),
      ];
      // Named by its recorder too: stream names are unique per recorder, not in the fleet.
      assert.match(ownSave.filename, /^default_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.mp4$/);
      assert.equal(farSave.filename, `${name}_${ownSave.filename}`);
      assert.deepEqual(
        await Deno.readFile(join(viewerStorage, "up", farSave.filename)),
        await Deno.readFile(join(uploads[i], ownSave.filename)),
        `${name}: a saved clip from the archive is the recorder's own`,
      );
    }
    // Without a stream named, a recorder with one stream is understood; an unknown one is refused by name.
    const bad = await fetch(`${viewerBase}/api/ranges?recorder=gs-nobody`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /unknown "recorder": "gs-nobody"/);
    assert.equal((await (await fetch(`${viewerBase}/api/ranges?recorder=gs-a`)).json()).ranges.length, 1);
    viewer.signal("SIGTERM");
    assert.equal((await viewer.exit()).code, 0, viewer.stderr.join("\n"));
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
      "SELECT recorder, body FROM events ORDER BY seq",
    );
    assert.ok(events.length > 0);
    assert.ok(events.every((e) => JSON.parse(e.body).recorder === e.recorder));
    // The viewer stored only the clips it saved, each saying whose video it is.
    const saved = events.filter((e) => e.recorder === "gs-view").map((e) => JSON.parse(e.body));
    assert.deepEqual(saved.map((e) => [e.type, e.stream, e.data.source_recorder]), [
      ["clip_saved", "default", "gs-a"],
      ["clip_saved", "default", "gs-b"],
    ]);
    assert.ok(events.every((e) => [...names, "gs-view"].includes(e.recorder)));
  } finally {
    for (const s of [...services, ...(viewer ? [viewer] : [])]) {
      s.signal("SIGKILL");
      await s.exit();
    }
    await relay.close();
    await s3.kill();
    await s3.remove();
    await Deno.remove(viewerStorage, { recursive: true });
    await db.drop();
    for (const dir of [...storages, ...uploads]) await Deno.remove(dir, { recursive: true });
  }
});
