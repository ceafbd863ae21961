import assert from "node:assert/strict";
import { join } from "node:path";
import { JOB_HISTORY_MS, MAX_PENDING_JOBS, SaveJobs } from "../src/serve/clip/save_jobs.ts";
import { ChunkIndex, type SaveJobRow } from "../src/store/index/chunk_index.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { decodeErrors, HALF_SENT, pattern, sendRaw, ServiceProcess, until } from "./helpers.ts";
import { ENGINES, indexLocation } from "./postgres_helpers.ts";

/** A service recording a 30 fps pattern in real time, with its storage and upload folders. */
async function recording(env: Record<string, string> = {}) {
  const h264 = await pattern({ width: 320, height: 240, fps: 30, seconds: 4, gop: 30, bitrateKbps: 300 });
  let last = 0;
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
    startAfterClients: 1,
    onFrame: (_i, at) => (last = at),
  });
  const root = await Deno.makeTempDir();
  const envs = {
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: join(root, "rec"),
    UPLOAD_PATH: join(root, "uploads"),
    AMQP_URL: "",
    VIDEO_CHUNK_DURATION_SECONDS: "2",
    ...env,
  };
  const runs: ServiceProcess[] = [];
  const start = () => {
    const s = new ServiceProcess(envs);
    runs.push(s);
    return s;
  };
  const api = async (s: ServiceProcess, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${await s.port("http")}${path}`, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: await res.json() };
  };
  /** An async save of the last `seconds` sent. */
  const save = (s: ServiceProcess, seconds: number, tag: string) =>
    api(s, "/command", {
      command: "save",
      from: new Date(last - seconds * 1000).toISOString(),
      to: new Date(last - 10).toISOString(),
      async: true,
      tags: [tag],
    });
  return {
    root,
    start,
    api,
    save,
    async close() {
      for (const r of runs) r.signal("SIGKILL"), await r.exit();
      await relay.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** Every file under `dir`, relative to it. */
function files(dir: string, prefix = ""): string[] {
  try {
    return [...Deno.readDirSync(dir)].flatMap((e) =>
      e.isDirectory ? files(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]
    );
  } catch {
    return [];
  }
}

Deno.test("kill -9 with save jobs accepted: the restart removes the temporary files and settles every job", async () => {
  const t = await recording();
  try {
    let s = t.start();
    await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk");
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await t.save(s, 1.5, `k${i}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      ids.push(res.body.job_id);
    }
    s.signal("SIGKILL");
    await s.exit();
    // What a kill mid-write leaves: a clip half-written in STORAGE_PATH/tmp.
    await Deno.writeFile(join(t.root, "rec", "tmp", "interrupted.mp4.tmp"), new Uint8Array(1000)).catch(
      async () => {
        await Deno.mkdir(join(t.root, "rec", "tmp"), { recursive: true });
        await Deno.writeFile(join(t.root, "rec", "tmp", "interrupted.mp4.tmp"), new Uint8Array(1000));
      },
    );
    s = t.start();
    await s.waitForLog(
      (l) => l.msg === "temporary clip files of an interrupted save removed",
      "the clean-up",
    );
    for (const id of ids) {
      await until(async () => (await t.api(s, `/api/jobs/${id}`)).body.state === "done", `job ${id}`, 20_000);
    }
    const saved = files(join(t.root, "uploads"));
    assert.equal(saved.length, 4, saved.join(", "));
    assert.ok(saved.every((f) => /^tag=k\d\/default_.*\.mp4$/.test(f)), saved.join(", "));
    for (const f of saved) assert.equal(await decodeErrors(join(t.root, "uploads", f)), "", f);
    assert.deepEqual(files(join(t.root, "rec", "tmp")), []);
    s.signal("SIGTERM");
    assert.equal((await s.exit()).code, 0);
  } finally {
    await t.close();
  }
});

Deno.test("async saves are bounded: beyond 16 queued or running, 429 with Retry-After; SIGTERM keeps the rest for the next start", async () => {
  const t = await recording();
  try {
    let s = t.start();
    await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk");
    // Each waits for its last fragment (up to a second): they pile up.
    const answers = await Promise.all(
      Array.from({ length: MAX_PENDING_JOBS + 4 }, (_, i) => t.save(s, 1, `b${i}`)),
    );
    const accepted = answers.filter((a) => a.status === 200),
      refused = answers.filter((a) => a.status === 429);
    assert.equal(accepted.length, MAX_PENDING_JOBS);
    assert.equal(refused.length, 4);
    assert.equal(refused[0].headers.get("retry-after"), "5");
    assert.match(refused[0].body.error, /16 async saves are queued or running/);
    const stopAt = performance.now();
    s.signal("SIGTERM");
    assert.equal((await s.exit()).code, 0);
    assert.ok(performance.now() - stopAt < 5000, "stopped within 5 s");
    s = t.start();
    for (const a of accepted) {
      await until(
        async () => (await t.api(s, `/api/jobs/${a.body.job_id}`)).body.state === "done",
        "every job",
        30_000,
      );
    }
    assert.equal(files(join(t.root, "uploads")).length, MAX_PENDING_JOBS);
  } finally {
    await t.close();
  }
});

Deno.test("HTTP edges: long and many labels are 400 naming the field, no error names a path, half-sent requests get 408 and a closed socket in 10 s", async () => {
  const t = await recording();
  try {
    const s = t.start();
    await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk");
    const range = (await t.api(s, "/command", { command: "get-storage-state" })).body.stored_video[0];
    const save = (extra: Record<string, unknown>) =>
      t.api(s, "/command", { command: "save", ...range, ...extra });
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ metadata: "語".repeat(100) }, /"metadata" is 300 bytes of UTF-8; at most 100/],
      [{ tags: ["語".repeat(30)] }, /"tags\[0\]" is 90 bytes/],
      [{ tags: Array.from({ length: 2000 }, (_, i) => `t${i}`) }, /"tags" has 2000 entries; at most 3/],
      [{ tags: Array.from({ length: 300 }, (_, i) => `t${i}`) }, /"tags" has 300 entries/],
      [{ metadata: "a\u0001b" }, /control characters/],
      [{ async: "yes" }, /"async" must be true or false/],
    ];
    for (const [extra, message] of cases) {
      const res = await save(extra);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.match(res.body.error, message);
      assert.ok(!JSON.stringify(res.body).includes(t.root), "no absolute path");
    }
    assert.deepEqual(files(join(t.root, "uploads")), [], "nothing saved");

    // Half a body is answered 408 when given up on, half the headers 408 by the server; both
    // connections are then closed (read to the end here), so no client can hold a socket for ever.
    const port = await s.port("http");
    const [body, headers] = await Promise.all([
      sendRaw(port, HALF_SENT.body, 20_000),
      sendRaw(port, HALF_SENT.headers, 20_000),
    ]);
    assert.match(body.answer, /^HTTP\/1\.1 408[^]*body not received within 10 s/);
    assert.ok(body.ms >= 9_500 && body.ms < 12_000, `408 and close after ${Math.round(body.ms)} ms`);
    assert.match(headers.answer, /^HTTP\/1\.1 408/);
    assert.ok(headers.ms >= 9_500 && headers.ms < 12_500, `408 and close after ${Math.round(headers.ms)} ms`);
  } finally {
    await t.close();
  }
});

for (const engine of ENGINES) {
  Deno.test(`start-up forgets jobs settled over 7 days ago, settles one whose clip is in place, runs the rest again (${engine})`, async () => {
    const dir = await Deno.makeTempDir();
    const where = await indexLocation(engine, dir);
    const index = await ChunkIndex.open(where.location, "test");
    try {
      const now = Date.now();
      const row = (id: string, state: SaveJobRow["state"], ageMs: number): SaveJobRow => ({
        recorder: "test",
        id,
        request: "{}",
        state,
        created_ms: now - ageMs,
        updated_ms: now - ageMs,
        filename: null,
        error: null,
        gaps: null,
      });
      const week = JOB_HISTORY_MS;
      for (
        const r of [
          row("old-done", "done", week + 60_000),
          row("old-failed", "failed", week + 60_000),
          row("recent-done", "done", week - 60_000),
          row("old-running", "running", week + 60_000),
          // Killed after its clip was renamed into place, before "done": not to be run again.
          { ...row("placed", "running", 60_000), filename: "placed.mp4", gaps: "[]" },
        ]
      ) await index.db.insertInto("save_jobs").values(r).execute();
      const ran: string[] = [];
      const jobs = new SaveJobs({
        index,
        metrics: new Metrics(),
        save: (request) => {
          ran.push(JSON.stringify(request));
          return Promise.resolve({ filename: "x.mp4", gaps: [] });
        },
        exists: (filename) => Promise.resolve(filename === "placed.mp4"),
        describe: String,
      });
      await jobs.start();
      await until(
        async () => (await index.job("old-running"))?.state === "done",
        "the interrupted job to run",
      );
      await jobs.stop(1000);
      assert.equal(await index.job("old-done"), undefined);
      assert.equal(await index.job("old-failed"), undefined);
      assert.equal((await index.job("recent-done"))?.state, "done");
      assert.deepEqual(ran, ["{}"], "only the interrupted job ran");
      assert.deepEqual([(await index.job("placed"))?.state, (await index.job("placed"))?.filename], [
        "done",
        "placed.mp4",
      ]);
    } finally {
      await index.close();
      await where.drop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
