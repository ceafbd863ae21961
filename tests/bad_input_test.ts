import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames } from "../src/tools/relay.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { frameMd5s, indexRows, pattern, rng, ServiceProcess, sumMetric } from "./helpers.ts";

/**
 * A relay that misbehaves on purpose. First connection: 60 good frames, then random bytes, a
 * truncated NAL unit, a 50 MB message and a text flood, then 90 good frames from a keyframe, then
 * silence without a close (a vanished peer). Second connection: 60 good frames, then a close.
 */
Deno.test("bad input is counted and logged, never fatal, and recording resumes at the next keyframe", async () => {
  const h264 = await pattern({ width: 640, height: 360, fps: 30, seconds: 5, gop: 30, bitrateKbps: 1000 });
  const frames = sourceFrames(h264);
  const h264File = await Deno.makeTempFile({ suffix: ".h264" });
  await Deno.writeFile(h264File, h264);
  const random = rng(5);
  const abort = new AbortController();
  let connections = 0;
  let vanished = () => {};
  const silent = new Promise<void>((r) => (vanished = r));
  const sendFrames = async (ws: WebSocket, from: number, to: number) => {
    for (let i = from; i < to && !abort.signal.aborted; i++) {
      for (const nal of frames[i].nals) ws.send(nal);
      await sleep(1000 / 30, abort.signal);
    }
  };
  const script = async (ws: WebSocket, n: number) => {
    ws.send(Uint8Array.of(...frames[0].nals[0], ...frames[0].nals[1])); // cached SPS+PPS
    if (n === 1) {
      await sendFrames(ws, 0, 60);
      for (let i = 0; i < 20; i++) {
        ws.send(Uint8Array.from({ length: 1000 }, () => Math.floor(random() * 256)));
      }
      ws.send(Uint8Array.of(0, 0, 0, 1, 0x41)); // a slice cut after its header byte
      const huge = new Uint8Array(50 * 1024 * 1024).fill(0xab);
      huge.set([0, 0, 0, 1, 0x41]);
      ws.send(huge);
      for (let i = 0; i < 5000; i++) ws.send(`{"type":"video_config","n":${i}}`);
      await sendFrames(ws, 60, 150);
      vanished(); // no more data, no pongs, no close
    } else {
      await sendFrames(ws, 0, 60);
      ws.close();
    }
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    const n = ++connections;
    let quiet = false;
    silent.then(() => (quiet = n === 1));
    socket.onopen = () => script(socket, n);
    socket.onmessage = (e) => !quiet && e.data === "ping" && socket.send("pong");
    return response;
  });
  const storage = await Deno.makeTempDir();
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: `ws://127.0.0.1:${server.addr.port}/ws/video/consume`,
    STORAGE_PATH: storage,
    STREAM_TIMEOUT_SECONDS: "1",
  });
  try {
    await service.waitForLog((l) => l.msg === "relay silent: dropping the connection", "dead-peer detection");
    await service.waitForLog((l) => l.msg === "connected" && l.connection === 2, "reconnect");
    let disconnects = 0;
    await service.waitForLog((l) => l.msg === "disconnected" && ++disconnects === 2, "second close");
    const health = await fetch(`http://127.0.0.1:${await service.port("http")}/healthz`);
    assert.equal(health.status, 200);
    assert.ok((await health.json()).actors.every((a: { restarts: number }) => a.restarts === 0));
    const m = await service.metrics();
    assert.equal(sumMetric(m, "storage_text_messages_total"), 5000, "the relay's pongs are not counted");
    assert.equal(sumMetric(m, "storage_bad_input_total", { kind: "oversizedNals" }), 1);
    assert.ok(sumMetric(m, "storage_bad_input_total", { kind: "discardedBytes" }) >= 50 * 1024 * 1024 - 5); // all but the start code and header
    assert.ok(sumMetric(m, "storage_bad_input_total", { kind: "badSlices" }) >= 1);
    // The garbage reads as if it continued the 60th picture's last NAL unit, which cannot be told
    // from a split one: that picture is dropped as corrupt (always: the parser holds it until the
    // next message says). The truncated slice's picture is the second corrupt one.
    assert.equal(sumMetric(m, "storage_bad_input_total", { kind: "splitNals" }), 1);
    assert.equal(sumMetric(m, "storage_frames_dropped_total", { reason: "corrupt" }), 2);
    assert.equal(sumMetric(m, "storage_reconnects_total"), 1);
    assert.ok(service.logs.some((l) => l.msg === "bad input skipped" && l.kind === "oversizedNals"));
    assert.ok(service.logs.some((l) => l.msg === "corrupt frame dropped; waiting for the next keyframe"));
    service.signal("SIGTERM");
    assert.equal((await service.exit()).code, 0);
    // Every other picture sent, picture for picture: the first 59, the next 90, then 60 again.
    const source = await frameMd5s(h264File, true);
    const recorded: string[] = [];
    for (const c of indexRows(storage).chunks) recorded.push(...await frameMd5s(join(storage, c.path)));
    assert.deepEqual(recorded, [...source.slice(0, 59), ...source.slice(60, 150), ...source.slice(0, 60)]);
  } finally {
    abort.abort();
    service.signal("SIGKILL");
    await service.exit();
    await server.shutdown();
    await Deno.remove(storage, { recursive: true });
    await Deno.remove(h264File);
  }
});
