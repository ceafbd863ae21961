import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../src/app/config.ts";
import { launchArgs } from "../src/app/launch.ts";
import { resolveFfmpeg, withFfmpeg } from "../src/app/ffmpeg.ts";
import { firstMissing, permissionFlags, permissionsNeeded } from "../src/app/permissions.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { subscribe } from "./broker_helpers.ts";
import {
  command,
  indexRows,
  pattern,
  probeFrames,
  ROOT,
  ServiceProcess,
  SMALL_PATTERN,
  taskArgs,
  until,
} from "./helpers.ts";

Deno.test("the permissions follow the configuration: its hosts, its folders, statfs, the host name and nothing else", () => {
  assert.deepEqual(permissionFlags(permissionsNeeded(loadConfig({}))), [
    "--allow-net=127.0.0.1:5001,127.0.0.1:5672,127.0.0.1:8080,127.0.0.1:8005",
    "--allow-read=./recordings,./uploads",
    "--allow-write=./recordings,./uploads",
    "--allow-sys=hostname,statfs", // hostname: no RECORDER_ID, so the host name names the recorder
    "--allow-env",
  ]);
  const file = JSON.stringify({
    streams: [{ name: "a", url: "wss://relay.example/ws" }, { name: "b", url: "ws://[fd00::2]:5001/x" }],
  });
  const config = loadConfig({
    CONFIG_FILE: "/etc/skyreel/streams.json",
    AMQP_URL: "amqps://u:p@broker.example/vhost",
    HTTP_HOST: "::",
    HTTP_PORT: "0",
    STORAGE_PATH: "/data/a,b",
    UPLOAD_PATH: "/data/a,b",
  }, () => file);
  const needs = permissionsNeeded(config);
  assert.deepEqual(permissionFlags(needs), [
    "--allow-net=relay.example:443,[fd00::2]:5001,broker.example:5671,[::]:0,[::]:8005",
    "--allow-read=/data/a,,b,/etc/skyreel/streams.json", // a comma in a path is doubled
    "--allow-write=/data/a,,b",
    "--allow-sys=hostname,statfs",
    "--allow-env",
  ]);
  assert.deepEqual(needs.slice(0, 2).map((n) => n.variable), [
    "CONFIG_FILE streams[0].url",
    "CONFIG_FILE streams[1].url",
  ]);
  // A camera is reached by the recorder, an RTSP camera by ffmpeg: only ffmpeg is run, no other program.
  const cameras = JSON.stringify({
    streams: [{ name: "pit", url: "http://10.0.0.5/mjpeg" }, { name: "mast", url: "rtsp://10.0.0.6/s" }],
  });
  const ffmpeg = loadConfig(
    { CONFIG_FILE: "c.json", AMQP_URL: "", FFMPEG_PATH: "/opt/ffmpeg" },
    () => cameras,
  );
  assert.deepEqual(permissionFlags(permissionsNeeded(ffmpeg)).filter((f) => /net|run|sys/.test(f)), [
    "--allow-net=10.0.0.5:80,127.0.0.1:8080,127.0.0.1:8005",
    "--allow-sys=setPriority,hostname,statfs", // setPriority: the encoder runs below the recorder's priority
    "--allow-run=/opt/ffmpeg",
  ]);
  assert.ok(!permissionFlags(needs).some((f) => f.startsWith("--allow-run")), "relays alone run nothing");
  const rtspOnly = loadConfig({
    VIDEO_STREAM_URL: "rtsp://10.0.0.6/s",
    AMQP_URL: "",
    FFMPEG_PATH: "/opt/ffmpeg",
  });
  assert.ok(
    permissionFlags(permissionsNeeded(rtspOnly)).includes("--allow-sys=hostname,statfs"),
    "RTSP is copied: no encoder to lower",
  );
  // A fleet's index is reached on its port (5432 by default); a named recorder needs no host name.
  const fleet = loadConfig({
    INDEX_URL: "postgres://u:p@db.example/fleet",
    RECORDER_ID: "gs-1",
    AMQP_URL: "",
  });
  assert.deepEqual(permissionFlags(permissionsNeeded(fleet)).filter((f) => /net|sys/.test(f)), [
    "--allow-net=127.0.0.1:5001,127.0.0.1:8080,127.0.0.1:8005,db.example:5432",
    "--allow-sys=statfs",
  ]);
  // The archive: its endpoint, or AWS's host for the bucket; the SDK reads the OS release for its User-Agent.
  const keys = { AWS_ACCESS_KEY_ID: "AK", AWS_SECRET_ACCESS_KEY: "SK", AMQP_URL: "", RECORDER_ID: "gs-1" };
  const archived = (env: Record<string, string>) =>
    permissionFlags(permissionsNeeded(loadConfig({ ...keys, ARCHIVE_URL: "s3://fleet/x", ...env })))
      .filter((f) => /net|sys/.test(f));
  assert.deepEqual(archived({ AWS_ENDPOINT_URL: "http://minio:9000" }), [
    "--allow-net=127.0.0.1:5001,127.0.0.1:8080,127.0.0.1:8005,minio:9000",
    "--allow-sys=osRelease,statfs",
  ]);
  assert.equal(
    archived({ AWS_REGION: "eu-west-1" })[0].split(",").at(-1),
    "fleet.s3.eu-west-1.amazonaws.com:443",
  );
  assert.equal(
    archived({ AWS_S3_FORCE_PATH_STYLE: "true" })[0].split(",").at(-1),
    "s3.us-east-1.amazonaws.com:443",
  );
  const noBroker = permissionFlags(permissionsNeeded(loadConfig({ AMQP_URL: "" })));
  assert.equal(noBroker[0], "--allow-net=127.0.0.1:5001,127.0.0.1:8080,127.0.0.1:8005");
  // The launcher makes paths absolute, so a compiled binary does not depend on its working folder.
  const args = launchArgs("compile", loadConfig({ STORAGE_PATH: "rec" }), "out/skyreel");
  assert.ok(args.includes(`--allow-write=${join(Deno.cwd(), "rec")},${join(Deno.cwd(), "uploads")}`));
  assert.deepEqual(args.slice(-3), ["--output", "out/skyreel", join(ROOT, "src/app/main.ts")]);
});

Deno.test("firstMissing names the variable of the first permission not granted", () => {
  const needs = permissionsNeeded(loadConfig({ STORAGE_PATH: "/data/rec" }));
  assert.equal(firstMissing(needs, () => "granted"), null);
  const missing = firstMissing(
    needs,
    (d) => d.name === "write" && d.path === "/data/rec" ? "denied" : "granted",
  );
  assert.equal(missing?.variable, "STORAGE_PATH");
  assert.equal(
    firstMissing(needs, (d) => d.name === "net" ? "prompt" : "granted")?.variable,
    "VIDEO_STREAM_URL",
  );
});

Deno.test("the recorder refuses to start without a permission its configuration needs, naming the variable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      // Everything the configuration needs but write access to the storage folder.
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-sys",
        join(ROOT, "src/app/main.ts"),
      ],
      env: {
        STORAGE_PATH: join(dir, "rec"),
        UPLOAD_PATH: join(dir, "up"),
        HTTP_PORT: "0",
        METRICS_PORT: "0",
      },
      stdout: "null",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(stderr).trim();
    assert.equal(code, 2, err);
    assert.equal(
      err,
      `skyreel: invalid configuration: STORAGE_PATH: this process lacks --allow-write=${join(dir, "rec")}; ` +
        "start it with `deno task start`, or rebuild the binary with `deno task compile` under this configuration",
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The command line of a running process, from /proc (through cat: Deno opens /proc only to --allow-all). */
async function cmdline(pid: number): Promise<string[]> {
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/cmdline`], stdout: "piped" })
    .output();
  return new TextDecoder().decode(stdout).split("\0").filter((a) => a !== "");
}

Deno.test("`deno task start` runs the recorder with exactly the computed flags, and it records, saves and publishes", async () => {
  const exchange = `skyreel_test_${crypto.randomUUID().slice(0, 8)}`;
  const sub = await subscribe(exchange);
  const dir = await Deno.makeTempDir();
  const relay = await startRelay({
    frames: sourceFrames(await pattern(SMALL_PATTERN)),
    intervalMs: () => 25,
    startAfterClients: 1,
  });
  const env = {
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: join(dir, "rec"),
    UPLOAD_PATH: join(dir, "up"),
    EVENTS_EXCHANGE: exchange,
    VIDEO_CHUNK_DURATION_SECONDS: "1",
  };
  const service = new ServiceProcess(env, [Deno.execPath(), ...taskArgs("start")]);
  let recorder = 0;
  try {
    const started = await service.waitForLog(
      (l) => l.actor === "launcher" && l.msg === "starting",
      "launcher",
    );
    recorder = started.pid as number;
    const all = { ...Deno.env.toObject(), ...env, HTTP_PORT: "0", METRICS_PORT: "0" };
    const expected = launchArgs("start", await withFfmpeg(loadConfig(all), all));
    assert.deepEqual((await cmdline(recorder)).slice(1), expected);
    const flags = expected.filter((a) => a.startsWith("--allow"));
    assert.deepEqual(flags.map((f) => f.split("=")[0]), [
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-sys",
      "--allow-run", // the ffmpeg found, for thumbnails, and nothing else
      "--allow-env",
    ], "no -A");
    assert.ok(expected.includes(`--allow-run=${(await resolveFfmpeg())!}`));
    assert.ok(
      flags.every((f) => f.includes("=") || f === "--allow-env"),
      "every grant but the environment is a list",
    );

    const total = SMALL_PATTERN.fps * SMALL_PATTERN.seconds;
    await until(
      async () => await service.metric("storage_video_frames_written_total") === total,
      "every frame",
    );
    const http = await service.port("http");
    const ranges = await (await fetch(`http://127.0.0.1:${http}/api/ranges`)).json();
    const { from, to } = ranges.ranges[0];
    const saved = await command(`http://127.0.0.1:${http}`, { command: "save", from, to });
    assert.ok(saved.filename, JSON.stringify(saved));
    const clip = await probeFrames(join(dir, "up", saved.filename));
    assert.ok(clip.length >= 100, `${clip.length} frames in the saved clip`);
    const rss = await service.metric("process_resident_memory_bytes");
    assert.ok(rss > 10e6, `rss ${rss}`);
    assert.ok(await service.metric("process_cpu_seconds_total") > 0);

    service.signal("SIGTERM"); // to the launcher, as systemd or tini would
    assert.equal((await service.exit()).code, 0);
    assert.equal(service.logs.filter((l) => l.msg === "shutting down").length, 1);
    const { chunks } = indexRows(join(dir, "rec"));
    assert.equal(chunks.reduce((n, c) => n + c.frames, 0), total);
    await until(
      () => sub.of("chunk_saved").length === chunks.length,
      "a chunk_saved per chunk, through the broker",
    );
  } finally {
    service.signal("SIGKILL");
    try {
      if (recorder) Deno.kill(recorder, "SIGKILL");
    } catch { /* exited with the launcher */ }
    await service.exit();
    await relay.close();
    await sub.close();
    await Deno.remove(dir, { recursive: true });
  }
});
