import assert from "node:assert/strict";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { ConfigError, loadConfig } from "../src/app/config.ts";
import { indexRows, pattern, ROOT, ServiceProcess, SMALL_PATTERN, taskArgs } from "./helpers.ts";

Deno.test("defaults", () => {
  const c = loadConfig({});
  assert.deepEqual(c.streams, [{
    name: "default",
    url: "ws://127.0.0.1:5001/ws/video/consume",
    shownUrl: "ws://127.0.0.1:5001/ws/video/consume",
    source: "relay",
    encode: null,
  }]);
  assert.deepEqual(
    [c.storagePath, c.chunkMs, c.idleMs, c.minChunkFrames, c.sessionIdleMs, c.fragmentMs],
    ["./recordings", 60_000, 10_000, 30, 300_000, 1000],
  );
  assert.deepEqual([c.httpHost, c.httpPort, c.metricsPort, c.logLevel], ["127.0.0.1", 8080, 8005, "info"]);
});

Deno.test("several streams from CONFIG_FILE", () => {
  const file = JSON.stringify({
    streams: [{ name: "cam1", url: "ws://a:1/x" }, { name: "cam2", url: "wss://b/y" }],
  });
  const c = loadConfig({ CONFIG_FILE: "f.json" }, () => file);
  assert.deepEqual(c.streams.map((s) => s.name), ["cam1", "cam2"]);
  const bad = (doc: unknown) => () => loadConfig({ CONFIG_FILE: "f.json" }, () => JSON.stringify(doc));
  assert.throws(bad({ streams: {} }), /CONFIG_FILE: streams must be an array/);
  // No streams: a node that serves the fleet's history and records nothing.
  assert.deepEqual(loadConfig({ CONFIG_FILE: "f.json" }, () => JSON.stringify({ streams: [] })).streams, []);
  assert.throws(bad({ streams: [{ name: "a/b", url: "ws://x" }] }), /streams\[0\]\.name/);
  assert.throws(bad({ streams: [{ name: "a", url: "ws://x" }, { name: "a", url: "ws://y" }] }), /used twice/);
  // STORAGE_PATH/tmp is emptied at every start: a stream there would lose its recordings.
  assert.throws(bad({ streams: [{ name: "tmp", url: "ws://x" }] }), /streams\[0\]\.name "tmp" is reserved/);
  assert.throws(
    bad({ streams: [{ name: "a", url: "ftp://x" }] }),
    /streams\[0\]\.url: expected a ws\(s\):\/\/ relay/,
  );
  assert.throws(bad({ streams: [{ name: "a", url: "http://x", framerate: 0 }] }), /streams\[0\]: framerate/);
  assert.throws(
    bad({ streams: [{ name: "a", url: "http://x", video: { codec: "h265" } }] }),
    /streams\[0\]: video\.codec must be "h264"/,
  );
});

Deno.test("a stream's source is chosen by its URL; cameras take the video-store's encoding, a stream's own over the file's, the environment over both", () => {
  const file = JSON.stringify({
    framerate: 15,
    video: { codec: "h264", bitrate: 2_000_000, preset: "fast" },
    streams: [
      { name: "relay", url: "ws://relay:5001/ws/video/consume" },
      {
        name: "pit",
        url: "http://user:secret@10.0.0.5/mjpeg",
        framerate: 10,
        video: { preset: "ultrafast" },
      },
      { name: "mast", url: "rtsp://10.0.0.6:554/stream1" },
    ],
  });
  const c = loadConfig({ CONFIG_FILE: "f.json" }, () => file);
  assert.deepEqual(c.streams.map((s) => [s.name, s.source, s.encode]), [
    ["relay", "relay", null],
    ["pit", "camera", { fps: 10, bitrateKbps: 2000, preset: "ultrafast" }],
    ["mast", "rtsp", null],
  ]);
  assert.equal(
    c.streams[1].shownUrl,
    "http://user:***@10.0.0.5/mjpeg",
    "no password in logs, events or the index",
  );
  const env = loadConfig(
    { CONFIG_FILE: "f.json", VIDEO_PRESET: "medium", CAMERA_FRAMERATE: "25" },
    () => file,
  );
  assert.deepEqual(env.streams[1].encode, { fps: 10, bitrateKbps: 2000, preset: "ultrafast" });
  const plain = JSON.stringify({
    framerate: 15,
    video: { preset: "fast" },
    streams: [{ name: "g", url: "https://g/" }],
  });
  assert.deepEqual(
    loadConfig({ CONFIG_FILE: "f.json", VIDEO_PRESET: "medium" }, () => plain).streams[0].encode,
    { fps: 15, bitrateKbps: 1000, preset: "medium" },
  );
  const one = loadConfig({ VIDEO_STREAM_URL: "http://cam/snap.jpg", VIDEO_BITRATE: "500000" });
  assert.deepEqual(one.streams[0].encode, { fps: 20, bitrateKbps: 500, preset: "veryfast" });
  assert.throws(
    () => loadConfig({ CONFIG_FILE: "f.json" }, () => "{oops"),
    /CONFIG_FILE: f\.json is not JSON/,
  );
  assert.throws(
    () =>
      loadConfig({ CONFIG_FILE: "missing.json" }, () => {
        throw new Deno.errors.NotFound("no such file");
      }),
    /CONFIG_FILE: cannot read missing\.json/,
  );
});

const BAD: [string, string][] = [
  ["VIDEO_STREAM_URL", "ftp://relay/ws"],
  ["CAMERA_FRAMERATE", "0"],
  ["VIDEO_BITRATE", "1M"],
  ["VIDEO_PRESET", "fastest"],
  ["VIDEO_STREAM_URL", "not a url"],
  ["VIDEO_CHUNK_DURATION_SECONDS", "abc"],
  ["VIDEO_CHUNK_DURATION_SECONDS", "0"],
  ["VIDEO_IDLE_TIMEOUT_SECONDS", "-5"],
  ["VIDEO_IDLE_TIMEOUT_SECONDS", "400"], // not less than the session idle timeout
  ["MIN_CHUNK_FRAMES", "1.5"],
  ["SESSION_IDLE_TIMEOUT_SECONDS", "forever"],
  ["FRAGMENT_DURATION_MS", "10"],
  ["HTTP_HOST", "bad host!"],
  ["HTTP_PORT", "70000"],
  ["METRICS_PORT", "http"],
  ["LOG_LEVEL", "loud"],
  ["STORAGE_PATH", ""],
  ["FSYNC_FRAGMENTS", "maybe"],
  ["CONFIG_FILE", "/nonexistent/streams.json"],
  ["FETCH_MAX_BYTES", "lots"],
  ["RANGE_MERGE_GAP_MS", "-1"],
  ["AMQP_URL", "http://broker"],
  ["EVENTS_EXCHANGE_TYPE", "headers-ish"],
  ["EVENTS_RETENTION_HOURS", "0"],
  ["VIDEO_CHUNK_CUT", "nearest"],
  ["GOP_CACHE_MB", "-1"],
  ["RECORDER_ID", "ground station"],
  ["INDEX_URL", "mysql://db.example/fleet"],
  ["ARCHIVE_URL", "https://bucket.example/x"],
  ["KEEP_LOCAL_UNTIL_ARCHIVED", "true"], // with no ARCHIVE_URL
];

Deno.test("each bad value is refused with one line naming the variable, exit code 2", async () => {
  for (const [name, value] of BAD) {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (e: unknown) => e instanceof ConfigError && e.variable === name,
    );
  }
  // The real entry point: `deno task start`'s launcher, which refuses before starting the recorder.
  for (const [name, value] of BAD) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: taskArgs("start"),
      cwd: ROOT,
      env: { [name]: value, STORAGE_PATH: name === "STORAGE_PATH" ? value : "/nonexistent-never-created" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(stderr).trim();
    assert.equal(code, 2, `${name}=${value}: exit ${code}, stderr ${err}`);
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, new RegExp(`^skyreel: invalid configuration: ${name}`));
    assert.equal(new TextDecoder().decode(stdout), "");
  }
});

Deno.test("a port in use stops the start with one line naming it, exit 69, before anything records", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relay = await startRelay({
    frames: sourceFrames(await pattern(SMALL_PATTERN)),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
  });
  const storage = await Deno.makeTempDir();
  try {
    for (const variable of ["HTTP_PORT", "METRICS_PORT"]) {
      const port = String(taken.addr.port);
      const service = new ServiceProcess({
        VIDEO_STREAM_URL: relay.url,
        STORAGE_PATH: storage,
        ...(variable === "HTTP_PORT" ? { HTTP_PORT: port } : { METRICS_PORT: port }),
      });
      const status = await service.exit();
      assert.equal(status.code, 69, service.stderr.join("\n"));
      assert.deepEqual(service.stderr, [
        `skyreel: cannot start: ${variable}: 127.0.0.1:${port} is already in use`,
      ]);
      assert.ok(!service.logs.some((l) => l.msg === "connected"), "it never connected to the relay");
    }
    assert.deepEqual(indexRows(storage).sessions, []);
  } finally {
    taken.close();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});

Deno.test("an index that cannot be reached stops the start with one line naming INDEX_URL, exit 69", async () => {
  const storage = await Deno.makeTempDir();
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  try {
    const service = new ServiceProcess({
      STORAGE_PATH: storage,
      INDEX_URL: `postgres://postgres@127.0.0.1:${port}/test`,
    });
    const status = await service.exit();
    assert.equal(status.code, 69, service.stderr.join("\n"));
    assert.equal(service.stderr.length, 1, service.stderr.join("\n"));
    assert.match(
      service.stderr[0],
      /^skyreel: cannot start: INDEX_URL: cannot open the index: .*ECONNREFUSED/,
    );
  } finally {
    await Deno.remove(storage, { recursive: true });
  }
});

Deno.test("the archive: ARCHIVE_URL and the AWS SDK's variables, each refused by name", () => {
  const keys = { AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "SK" };
  const c = loadConfig({
    ARCHIVE_URL: "s3://fleet-video/ground/",
    AWS_ENDPOINT_URL: "http://127.0.0.1:9000/",
    AWS_S3_FORCE_PATH_STYLE: "true",
    ARCHIVE_BANDWIDTH_KBPS: "2000",
    KEEP_LOCAL_UNTIL_ARCHIVED: "yes",
    ...keys,
  });
  assert.deepEqual(c.archive, {
    bucket: "fleet-video",
    prefix: "ground/",
    endpoint: "http://127.0.0.1:9000",
    region: "us-east-1",
    accessKeyId: "AK",
    secretAccessKey: "SK",
    sessionToken: null,
    forcePathStyle: true,
    bytesPerSecond: 250_000,
  });
  assert.equal(c.keepLocalUntilArchived, true);
  assert.equal(loadConfig({}).archive, null);
  const refused = (env: Record<string, string>) => {
    try {
      loadConfig({ ARCHIVE_URL: "s3://fleet-video", ...env });
    } catch (e) {
      return (e as ConfigError).variable;
    }
    return null;
  };
  assert.equal(refused({ AWS_SECRET_ACCESS_KEY: "SK" }), "AWS_ACCESS_KEY_ID");
  assert.equal(refused({ AWS_ACCESS_KEY_ID: "AK" }), "AWS_SECRET_ACCESS_KEY");
  assert.equal(refused({ ...keys, AWS_ENDPOINT_URL: "ftp://x" }), "AWS_ENDPOINT_URL");
  assert.equal(refused({ ...keys, AWS_REGION: "Mars 1" }), "AWS_REGION");
  assert.equal(refused({ ...keys, ARCHIVE_BANDWIDTH_KBPS: "fast" }), "ARCHIVE_BANDWIDTH_KBPS");
  assert.equal(refused({ ...keys, AWS_S3_FORCE_PATH_STYLE: "maybe" }), "AWS_S3_FORCE_PATH_STYLE");
  assert.equal(refused(keys), null);
});

Deno.test("CONFIG_FILE in the video-store module's shape: mapped onto the variables, the environment wins", () => {
  const doc = (o: unknown) => () => JSON.stringify(o);
  const base = {
    camera: "cam-1",
    storage: { size_gb: 2.5, storage_path: "/data/rec", upload_path: "/data/up" },
    video: { format: "mp4", codec: "h264", bitrate: 1000000, preset: "fast" },
    framerate: 30,
  };
  const c = loadConfig({ CONFIG_FILE: "f.json" }, doc(base));
  assert.deepEqual([c.storageBudgetBytes, c.storagePath, c.uploadPath], [
    2.5 * 2 ** 30,
    "/data/rec",
    "/data/up",
  ]);
  const env = loadConfig(
    { CONFIG_FILE: "f.json", STORAGE_SIZE_GB: "0.5", STORAGE_PATH: "/env/rec" },
    doc(base),
  );
  assert.deepEqual([env.storageBudgetBytes, env.storagePath, env.uploadPath], [
    0.5 * 2 ** 30,
    "/env/rec",
    "/data/up",
  ]);
  // An empty variable leaves the file's setting in force, and keeps its own meaning elsewhere.
  const empty = loadConfig({ CONFIG_FILE: "f.json", STORAGE_PATH: "", AMQP_URL: "" }, doc(base));
  assert.deepEqual([empty.storagePath, empty.amqpUrl], ["/data/rec", ""]);
  const refused = (o: unknown, pattern: RegExp) =>
    assert.throws(
      () => loadConfig({ CONFIG_FILE: "f.json" }, doc(o)),
      (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
    );
  refused({ storage: {} }, /storage\.size_gb is missing or not a positive number/);
  refused({ storage: { size_gb: "10" } }, /storage\.size_gb is missing or not a positive number/);
  refused({ storage: { size_gb: -1 } }, /storage\.size_gb/);
  refused({ storage: { size_gb: 1, storage_path: 3 } }, /storage\.storage_path must be a non-empty string/);
  refused({ storage: "big" }, /storage must be an object/);
  refused({ storage: { size_gb: 1 }, framerate: "fast" }, /framerate must be a number/);
  refused({ storage: { size_gb: 1 }, video: [] }, /video must be an object/);
  refused(
    { storage: { size_gb: 1 }, video: { bitrate: "1M" } },
    /video\.bitrate must be whole bits a second/,
  );
  assert.equal(loadConfig({}).storageBudgetBytes, null);
  assert.equal(loadConfig({}).minFreeDiskBytes, 2 ** 30);
  assert.throws(() => loadConfig({ STORAGE_SIZE_GB: "ten" }), /STORAGE_SIZE_GB: expected a number/);
  assert.throws(() => loadConfig({ RETENTION_MAX_AGE_HOURS: "0" }), /RETENTION_MAX_AGE_HOURS/);
  assert.throws(() => loadConfig({ MIN_FREE_DISK_GB: "-1" }), /MIN_FREE_DISK_GB/);
});
