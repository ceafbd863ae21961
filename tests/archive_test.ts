/** The S3 archive (docs/fleet.md) against a real S3-protocol server, killed and cut off mid-upload. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  command,
  decodeErrors,
  frameMd5s,
  indexRows,
  type LogLine,
  pattern,
  ServiceProcess,
  smallFilesystem,
  sumMetric,
  until,
} from "./helpers.ts";
import { archiveEnv, S3Server } from "./s3_helpers.ts";
import { loadConfig } from "../src/app/config.ts";
import { ArchiveClient, PART_BYTES } from "../src/store/archive/s3.ts";
import { tcpProxy } from "./tcp_proxy.ts";

/** 2 s chunks of about 750 kB (grain keeps the pattern at its bitrate). */
const PATTERN = { width: 640, height: 360, fps: 30, seconds: 8, gop: 30, bitrateKbps: 3000, noise: true };

interface Run {
  service: ServiceProcess;
  storage: string;
  uploads: string;
  base: string;
  source: string[];
}

/**
 * Records PATTERN in real time through a relay with the archive at `port`; `during` runs once the
 * service has started. Returns when the relay has sent everything and every chunk is closed.
 */
async function recordArchived(env: Record<string, string>, during: (r: Run) => Promise<void>): Promise<Run> {
  const h264 = await pattern(PATTERN);
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: () => 1000 / 30,
    startAfterClients: 1,
  });
  const storage = await Deno.makeTempDir();
  const uploads = await Deno.makeTempDir();
  const source = join(uploads, "..", `${crypto.randomUUID()}.h264`);
  await Deno.writeFile(source, h264);
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    UPLOAD_PATH: uploads,
    AMQP_URL: "",
    VIDEO_CHUNK_DURATION_SECONDS: "2",
    VIDEO_IDLE_TIMEOUT_SECONDS: "1",
    ...env,
  });
  const run = {
    service,
    storage,
    uploads,
    base: `http://127.0.0.1:${await service.port("http")}`,
    source: await frameMd5s(source, true),
  };
  await Deno.remove(source);
  await during(run);
  await relay.finished;
  await relay.close();
  await service.waitForLog(
    (l) => l.msg === "chunk closed" && l.reason === "idle",
    "the last chunk's idle close",
  );
  return run;
}

async function health(base: string): Promise<Record<string, any>> {
  return await (await fetch(`${base}/healthz`)).json();
}

/** Every chunk is in the bucket as it is on disk, archived once, its row saying where; the pictures are the source's. */
async function assertArchived(run: Run, s3: S3Server, logs: LogLine[]) {
  const { chunks } = indexRows(run.storage);
  assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
  const md5s: string[] = [];
  for (const c of chunks) {
    assert.equal(c.archive_key, `fleet/gs-1/${c.path}`);
    const local = await Deno.readFile(join(run.storage, c.path));
    assert.deepEqual(await s3.object(c.archive_key), local, `${c.path}: the bucket's copy is the file`);
    assert.equal(logs.filter((l) => l.msg === "archived" && l.key === c.archive_key).length, 1, c.path);
    assert.equal(await decodeErrors(join(run.storage, c.path)), "");
    md5s.push(...await frameMd5s(join(run.storage, c.path)));
  }
  assert.deepEqual(md5s, run.source, "recording lost nothing: every picture, in order");
  const db = new DatabaseSync(join(run.storage, "index.db"), { readOnly: true });
  try {
    const states = db.prepare("SELECT state, COUNT(*) AS n FROM uploads GROUP BY state").all();
    assert.deepEqual(
      states.map((r) => [r.state, Number(r.n)]),
      [["done", chunks.length + 1]],
      "and the clip",
    );
  } finally {
    db.close();
  }
}

/** Saves the whole recording as a clip and waits until the archive holds it. */
async function saveClip(run: Run, s3: S3Server): Promise<void> {
  const { chunks } = indexRows(run.storage);
  const { filename } = await command(run.base, {
    command: "save",
    from: new Date(chunks[0].start_ms).toISOString(),
    to: new Date(chunks.at(-1)!.end_ms).toISOString(),
  });
  const key = `fleet/gs-1/clips/${filename}`;
  await until(
    async () => (await s3.object(key)) !== null && (await health(run.base)).archive.queue.depth === 0,
    "the clip archived",
    30_000,
  );
  assert.deepEqual(await s3.object(key), await Deno.readFile(join(run.uploads, filename)));
}

Deno.test("the archive server killed mid-upload and restarted: every chunk and the saved clip arrive once, verified, and recording lost nothing", async () => {
  let s3 = await S3Server.start();
  let run: Run | undefined;
  try {
    run = await recordArchived(
      { ...archiveEnv(s3.port), RECORDER_ID: "gs-1", ARCHIVE_BANDWIDTH_KBPS: "4000" },
      async ({ service }) => {
        const first = await service.waitForLog((l) => l.msg === "archived", "the first chunk archived");
        // Mid-way through the next upload (500 kB/s: about 1.5 s a chunk).
        await until(
          async () =>
            await service.metric("storage_archive_bytes_uploaded_total") > Number(first.bytes) + 200_000,
          "the second upload under way",
        );
        await s3.kill();
        await service.waitForLog((l) => l.msg === "upload failed: retrying with backoff", "the failure");
        s3 = await s3.restart();
      },
    );
    await until(async () => (await health(run!.base)).archive.queue.depth === 0, "the queue drained", 60_000);
    const h = await health(run.base);
    assert.deepEqual([h.archive.state, h.archive.last_error], ["ok", null]);
    await saveClip(run, s3);
    assert.ok(await run.service.metric("storage_archive_failures_total") >= 1);
    assert.equal(
      await run.service.metric("storage_archive_objects_uploaded_total", { kind: "chunk" }),
      indexRows(run.storage).chunks.length,
    );
    assert.equal(await run.service.metric("storage_archive_losses_total"), 0);
    run.service.signal("SIGTERM");
    assert.equal((await run.service.exit()).code, 0);
    await assertArchived(run, s3, run.service.logs);
  } finally {
    run?.service.signal("SIGKILL");
    await run?.service.exit();
    await s3.kill();
    await s3.remove();
    for (const dir of [run?.storage, run?.uploads]) if (dir) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the archive cut off by a silent proxy for 60 s: uploads time out, retry, and once it flows every chunk arrives once, verified", async () => {
  const s3 = await S3Server.start();
  const proxy = tcpProxy(s3.port);
  let run: Run | undefined;
  try {
    run = await recordArchived(
      { ...archiveEnv(proxy.port), RECORDER_ID: "gs-1", ARCHIVE_BANDWIDTH_KBPS: "4000" },
      async ({ service }) => {
        await service.waitForLog((l) => l.msg === "archived", "the first chunk archived");
        proxy.pause();
      },
    );
    const cutAt = performance.now();
    await run.service.waitForLog(
      (l) => l.msg === "upload failed: retrying with backoff" && l.reason === "timeout",
      "a timeout",
      60_000,
    );
    assert.ok((await health(run.base)).archive.queue.depth > 0, "chunks wait while the link is cut");
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (performance.now() - cutAt))));
    proxy.resume();
    await until(async () => (await health(run!.base)).archive.queue.depth === 0, "the queue drained", 90_000);
    await saveClip(run, s3);
    run.service.signal("SIGTERM");
    assert.equal((await run.service.exit()).code, 0);
    await assertArchived(run, s3, run.service.logs);
  } finally {
    run?.service.signal("SIGKILL");
    await run?.service.exit();
    proxy.close();
    await s3.kill();
    await s3.remove();
    for (const dir of [run?.storage, run?.uploads]) if (dir) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "KEEP_LOCAL_UNTIL_ARCHIVED with the archive down: over the budget nothing unarchived goes; the disk floor forces deletions, each counted as a loss",
  ignore: Deno.uid() !== 0, // the small disk is a tmpfs mount
  fn: async () => {
    const storage = smallFilesystem(6);
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadPort = closed.addr.port;
    closed.close();
    let run: Run | undefined;
    try {
      run = await recordArchived({
        ...archiveEnv(deadPort),
        RECORDER_ID: "gs-1",
        STORAGE_PATH: storage,
        KEEP_LOCAL_UNTIL_ARCHIVED: "true",
        STORAGE_SIZE_GB: "0.001", // 1 MB: over it from the second chunk on
        MIN_FREE_DISK_GB: String(4 / 1024), // 4 of the 6 MiB kept free: reached at the third chunk
        JANITOR_INTERVAL_SECONDS: "1",
      }, async () => {});
      const { service } = run;
      await until(async () => await service.metric("storage_chunks_deleted_total") > 0, "a deletion", 20_000);
      // One scrape: the janitor goes on deleting between two.
      const metrics = await service.metrics();
      assert.equal(
        sumMetric(metrics, "storage_chunks_deleted_total", { reason: "size" }),
        0,
        "the budget deletes nothing unarchived",
      );
      const deleted = sumMetric(metrics, "storage_chunks_deleted_total", { reason: "disk-floor" });
      assert.ok(deleted > 0);
      assert.equal(
        sumMetric(metrics, "storage_archive_losses_total", { kind: "chunk" }),
        deleted,
        "each a loss",
      );
      assert.ok(sumMetric(metrics, "storage_archive_failures_total", { reason: "unreachable" }) > 0);
      service.signal("SIGTERM");
      assert.equal((await service.exit()).code, 0);
      const { chunks } = indexRows(storage);
      const db = new DatabaseSync(join(storage, "index.db"), { readOnly: true });
      try {
        const lost = db.prepare("SELECT path FROM uploads WHERE state = 'lost'").all().map((r) =>
          String(r.path)
        );
        const gone = chunks.filter((c) => c.status === "deleted").map((c) => c.path).sort();
        assert.deepEqual(lost.sort(), gone);
        // Each logged, by the end.
        assert.deepEqual(
          service.logs.filter((l) => l.msg === "chunk deleted before it was archived").map((l) => l.path)
            .sort(),
          gone,
        );
      } finally {
        db.close();
      }
      // What was not deleted is all still there, unarchived and queued.
      for (const c of chunks.filter((c) => c.status === "complete")) {
        assert.ok((await Deno.stat(join(storage, c.path))).size > 0);
        assert.equal(c.archive_key, null);
      }
    } finally {
      run?.service.signal("SIGKILL");
      await run?.service.exit();
      new Deno.Command("umount", { args: [storage] }).outputSync();
      await Deno.remove(storage, { recursive: true }).catch(() => {});
      if (run) await Deno.remove(run.uploads, { recursive: true });
    }
  },
});

Deno.test("the archive client: a file over 8 MiB goes in parts and is verified; ranged reads return exactly the bytes asked for, across a part's edge", async () => {
  const s3 = await S3Server.start();
  const client = new ArchiveClient(loadConfig(archiveEnv(s3.port)).archive!);
  const file = await Deno.makeTempFile();
  try {
    const bytes = new Uint8Array(2 * PART_BYTES + 123_457);
    for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    await Deno.writeFile(file, bytes);
    let counted = 0;
    const { etag, bytes: sent } = await client.upload(
      "fleet/t/big.mp4",
      file,
      new AbortController().signal,
      (n) => {
        counted += n;
      },
    );
    assert.deepEqual([sent, counted], [bytes.length, bytes.length]);
    assert.match(etag, /^[0-9a-f]{32}(-3)?$/, "the MD5 of the bytes, or of the 3 parts'");
    assert.deepEqual(await s3.object("fleet/t/big.mp4"), bytes);
    const [from, to] = [PART_BYTES - 1000, PART_BYTES + 1000];
    assert.deepEqual(await client.read("fleet/t/big.mp4", from, to), bytes.subarray(from, to));
    assert.equal(await client.size("fleet/t/big.mp4"), bytes.length);
  } finally {
    client.destroy();
    await Deno.remove(file);
    await s3.kill();
    await s3.remove();
  }
});
