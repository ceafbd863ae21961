import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { formatCompact } from "../src/serve/clip/timestamps.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  decodeErrors,
  indexRows,
  pattern,
  probeDurationMs,
  probeFrames,
  ServiceProcess,
  until,
} from "./helpers.ts";

const TOKEN = "s3cret-token";
const FRAME_MS = 100;

/** Local-time compact form, as operators type it. */
function localCompact(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}_${p(d.getHours())}-${
    p(d.getMinutes())
  }-${p(d.getSeconds())}`;
}

Deno.test("clip commands over HTTP against a real recording: ranges, fetch, save, async save, errors", async (t) => {
  // 62 s of 320x240 at 10 fps (a keyframe every second), a 3 s pause, then 5 s more.
  const h264 = await pattern({ width: 320, height: 240, fps: 10, seconds: 67, gop: 10, bitrateKbps: 150 });
  const frames = sourceFrames(h264);
  const sent: number[] = [];
  let onSent = () => {};
  const relay = await startRelay({
    frames,
    intervalMs: (i) => (i === 620 ? 3000 + FRAME_MS : FRAME_MS),
    startAfterClients: 1,
    onFrame: (_i, at) => (sent.push(at), onSent()),
  });
  const storage = await Deno.makeTempDir();
  const uploads = join(storage, "uploads");
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: join(storage, "rec"),
    UPLOAD_PATH: uploads,
    VIDEO_CHUNK_DURATION_SECONDS: "40",
    VIDEO_IDLE_TIMEOUT_SECONDS: "1",
    MIN_CHUNK_FRAMES: "5",
    API_TOKEN: TOKEN,
    FETCH_MAX_BYTES: "300000",
  });
  const base = `http://127.0.0.1:${await service.port("http")}`;
  const auth = { authorization: `Bearer ${TOKEN}` };
  const command = (body: unknown, headers: Record<string, string> = auth) =>
    fetch(`${base}/command`, {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : JSON.stringify(body),
    })
      .then(async (r) => ({ status: r.status, body: await r.json() }));
  const framesSent = (n: number) => new Promise<void>((r) => (onSent = () => sent.length >= n && r()));
  try {
    await t.step("async save waits for the fragment holding 'to', not a fixed delay", async () => {
      await framesSent(300); // 30 s into the first chunk
      const to = sent[sent.length - 1] - 50; // its fragment (1 s) is not written yet
      const from = to - 5000;
      const res = await command({
        command: "save",
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        async: true,
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.status, "async");
      const job = () => fetch(`${base}${res.body.job_url}`, { headers: auth }).then((r) => r.json());
      // Accepted and waiting for its last fragment: queued, or running and waiting on the index.
      assert.match((await job()).state, /^(queued|running)$/);
      await until(async () => (await job()).state === "done", "async save", 10_000);
      const done = await job();
      assert.equal(done.progress, 1);
      const path = join(uploads, done.filename);
      assert.equal(await decodeErrors(path), "");
      assert.ok(Math.abs(await probeDurationMs(path) - 5000) <= FRAME_MS, "5 s clip");
    });

    await relay.finished;
    await relay.close();
    await service.waitForLog(
      (l) =>
        l.msg === "chunk closed" && l.reason === "idle" &&
        service.logs.filter((x) => x.msg === "chunk closed").length >= 3,
      "third chunk closed",
    );
    const ranges = await fetch(`${base}/api/ranges`, { headers: auth }).then((r) => r.json());
    assert.equal(ranges.ranges.length, 2, JSON.stringify(ranges));
    assert.equal(ranges.ranges.reduce((n: number, r: { frames: number }) => n + r.frames, 0), sent.length);
    const [first, second] = ranges.ranges.map((r: { from: string; to: string }) => ({
      from: Date.parse(r.from),
      to: Date.parse(r.to),
    }));

    await t.step("the token guards every endpoint but /healthz and /metrics", async () => {
      assert.equal((await command({ command: "get-storage-state" }, {})).status, 401);
      assert.equal(
        (await command({ command: "get-storage-state" }, { authorization: "Bearer wrong" })).status,
        401,
      );
      assert.equal(await fetch(`${base}/api/ranges`).then((r) => (r.body?.cancel(), r.status)), 401);
      assert.equal(await fetch(`${base}/healthz`).then((r) => (r.body?.cancel(), r.status)), 200);
    });

    await t.step("get-storage-state: two ranges from the index, disk usage", async () => {
      const { status, body } = await command({ command: "get-storage-state" });
      assert.equal(status, 200);
      assert.deepEqual(body.stored_video, [
        { from: formatCompact(first.from), to: formatCompact(first.to) },
        { from: formatCompact(second.from), to: formatCompact(second.to) },
      ]);
      assert.ok(body.disk_usage.storage_used_gb > 0);
      assert.ok(body.disk_usage.device_storage_remaining_gb > 0);
      assert.equal(body.disk_usage.storage_limit_gb, null);
    });

    await t.step("a 60 s save across two chunks plays for 60 s, to the frame", async () => {
      const from = first.from + 1000, to = from + 60_000;
      const { status, body } = await command({
        command: "save",
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        metadata: "survey",
        tags: ["north", "dawn"],
      });
      assert.equal(status, 200, JSON.stringify(body));
      assert.match(
        body.filename,
        /^tag=dawn\/tag=north\/default_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_survey\.mp4$/,
      );
      const path = join(uploads, body.filename);
      assert.equal(await decodeErrors(path), "");
      assert.ok(
        Math.abs(await probeDurationMs(path) - 60_000) <= FRAME_MS,
        `${await probeDurationMs(path)} ms`,
      );
      assert.deepEqual(body.gaps, []);
      const leftovers = [...Deno.readDirSync(join(uploads, "tag=dawn", "tag=north"))].filter((e) =>
        e.name.endsWith(".tmp")
      );
      assert.deepEqual(leftovers, []);
    });

    const clipOf = async (from: number | string, to: number | string) => {
      const f = typeof from === "number" ? new Date(from).toISOString() : from;
      const tt = typeof to === "number" ? new Date(to).toISOString() : to;
      return await command({ command: "fetch", from: f, to: tt });
    };
    const probeBase64 = async (b64: string) => {
      const path = await Deno.makeTempFile({ dir: storage, suffix: ".mp4" });
      await Deno.writeFile(path, Buffer.from(b64, "base64"));
      return {
        path,
        frames: await probeFrames(path),
        errors: await decodeErrors(path),
        duration: await probeDurationMs(path),
      };
    };

    await t.step("fetch inside one chunk; Z and local forms give the same clip", async () => {
      const from = Math.ceil((first.from + 5000) / 1000) * 1000, to = from + 3000;
      const z = await clipOf(formatCompact(from), formatCompact(to));
      const local = await clipOf(localCompact(from), localCompact(to));
      assert.equal(z.status, 200, JSON.stringify(z.body));
      assert.equal(z.body.video, local.body.video);
      const clip = await probeBase64(z.body.video);
      assert.equal(clip.errors, "");
      assert.equal(clip.frames[0].key, true);
      // A fetched clip starts at the keyframe at or before `from` (a keyframe every second) and says so.
      const start = Date.parse(z.body.from_iso);
      assert.ok(start <= from && from - start < 1000 + FRAME_MS, `starts ${from - start} ms early`);
      assert.ok(Math.abs(clip.duration - (to - start)) <= FRAME_MS, `${clip.duration} ms`);
    });

    await t.step("a clip exactly on chunk boundaries holds exactly those chunks' frames", async () => {
      const chunks = indexRows(join(storage, "rec")).chunks;
      for (const c of chunks.slice(0, 2)) { // each over FETCH_MAX_BYTES: streamed
        const query = `from=${new Date(c.start_ms).toISOString()}&to=${new Date(c.end_ms).toISOString()}`;
        const res = await fetch(`${base}/api/clip?${query}`, { headers: auth });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-clip-gaps"), "[]");
        assert.equal(Date.parse(res.headers.get("x-clip-from")!), c.start_ms);
        const path = await Deno.makeTempFile({ dir: storage, suffix: ".mp4" });
        await Deno.writeFile(path, new Uint8Array(await res.arrayBuffer()));
        assert.equal(await decodeErrors(path), "");
        const frames = await probeFrames(path);
        assert.equal(frames.length, c.frames, c.path);
        assert.equal(frames[0].key, true);
      }
    });

    await t.step(
      "fetch across the gap, and starting or ending inside it, says where the gap is",
      async () => {
        for (
          const [from, to] of [[first.to - 2000, second.from + 2000], [first.to + 500, second.from + 2000], [
            first.to - 2000,
            first.to + 1500,
          ]]
        ) {
          const { status, body } = await clipOf(from, to);
          assert.equal(status, 200, JSON.stringify(body));
          assert.equal(body.gaps.length, 1, JSON.stringify(body.gaps));
          const gap = body.gaps[0];
          assert.ok(
            Math.abs(Date.parse(gap.from) - Math.max(from, first.to)) <= 1 &&
              Date.parse(gap.to) <= second.from + 1,
          );
          assert.equal((await probeBase64(body.video)).errors, "");
        }
      },
    );

    await t.step("fetch over FETCH_MAX_BYTES names the streaming endpoint, which streams it", async () => {
      const { status, body } = await clipOf(first.from, second.to);
      assert.equal(status, 413);
      assert.match(body.error, /GET \/api\/clip\?from=/);
      const res = await fetch(
        `${base}/api/clip?from=${new Date(first.from).toISOString()}&to=${new Date(second.to).toISOString()}`,
        { headers: auth },
      );
      assert.equal(res.headers.get("content-type"), "video/mp4");
      const reader = res.body!.getReader();
      const firstPiece = (await reader.read()).value!;
      assert.equal(new TextDecoder().decode(firstPiece.subarray(4, 8)), "ftyp");
      let total = firstPiece.length, pieces = 1;
      for (let r = await reader.read(); !r.done; r = await reader.read()) (total += r.value.length, pieces++);
      assert.ok(
        pieces > 10 && firstPiece.length < total / 10,
        `first piece ${firstPiece.length} of ${total} in ${pieces}`,
      );
      assert.ok(total > 300_000);
    });

    await t.step("errors: 400 naming the field, 404 with the nearest ranges", async () => {
      const cases: [unknown, number, RegExp][] = [
        [{ command: "fetch", to: "2026-01-01_00-00-00Z" }, 400, /missing "from"/],
        [{ command: "fetch", from: "2026-01-01_00-00-00Z" }, 400, /missing "to"/],
        [
          { command: "fetch", from: "soon", to: "2026-01-01_00-00-00Z" },
          400,
          /"from" is not a timestamp.*YYYY-MM-DD_HH-MM-SS/,
        ],
        [
          { command: "fetch", from: "2026-01-02_00-00-00Z", to: "2026-01-01_00-00-00Z" },
          400,
          /"from" must be before "to"/,
        ],
        [
          {
            command: "save",
            from: new Date(Date.now() - 1000).toISOString(),
            to: new Date(Date.now() + 60_000).toISOString(),
          },
          400,
          /"to" is in the future/,
        ],
        [{ command: "rewind" }, 400, /unknown "command"/],
        [{ nothing: 1 }, 400, /missing "command"/],
        ["{not json", 400, /not JSON/],
        [JSON.stringify({ command: "fetch", pad: "x".repeat(70_000) }), 413, /over 64 KiB/],
        [
          {
            command: "save",
            from: new Date(first.from).toISOString(),
            to: new Date(first.from + 1000).toISOString(),
            metadata: "../../etc",
          },
          400,
          /"metadata"/,
        ],
        [
          {
            command: "save",
            from: new Date(first.from).toISOString(),
            to: new Date(first.from + 1000).toISOString(),
            tags: ["ok", "a/b"],
          },
          400,
          /"tags\[1\]"/,
        ],
        [
          { command: "fetch", from: "2020-01-01_00-00-00Z", to: "2020-01-01_00-01-00Z" },
          404,
          /no recorded video/,
        ],
        [
          { command: "fetch", stream: "nope", from: "2020-01-01_00-00-00Z", to: "2020-01-01_00-01-00Z" },
          400,
          /unknown "stream"/,
        ],
      ];
      for (const [body, status, message] of cases) {
        const res = await command(body);
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.match(res.body.error, message);
      }
      const missing = await command({
        command: "fetch",
        from: "2020-01-01_00-00-00Z",
        to: "2020-01-01_00-01-00Z",
      });
      assert.deepEqual(missing.body.nearest, [{
        from: formatCompact(first.from),
        to: formatCompact(first.to),
      }]);
      // Nothing was written outside UPLOAD_PATH by the traversal attempts.
      const outside = [...Deno.readDirSync(storage)].map((e) => e.name).sort();
      assert.deepEqual(outside.filter((n) => !n.endsWith(".mp4")), ["rec", "uploads"]);
    });
    service.signal("SIGTERM");
    assert.equal((await service.exit()).code, 0);
  } finally {
    service.signal("SIGKILL");
    await service.exit();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});
