import assert from "node:assert/strict";
import { join } from "node:path";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { decodeErrors, indexRows, pattern, ServiceProcess, sumMetric, until } from "./helpers.ts";
import { tcpProxy } from "./tcp_proxy.ts";

/** The stream at 30 fps from a relay behind a proxy that can hang it, and the service recording it. */
async function hungRelay(loops: number) {
  const h264 = await pattern({ width: 320, height: 240, fps: 30, seconds: 4, gop: 30, bitrateKbps: 300 });
  let sent = 0;
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: () => 1000 / 30,
    loops,
    startAfterClients: 1,
    onFrame: () => sent++,
  });
  const proxy = tcpProxy(relay.port);
  const storage = await Deno.makeTempDir();
  const service = new ServiceProcess({
    VIDEO_STREAM_URL: `ws://127.0.0.1:${proxy.port}/ws/video/consume`,
    STORAGE_PATH: storage,
    AMQP_URL: "",
    STREAM_TIMEOUT_SECONDS: "1",
    RECONNECT_MAX_SECONDS: "1",
    VIDEO_CHUNK_DURATION_SECONDS: "2",
  });
  const health = async () =>
    await fetch(`http://127.0.0.1:${await service.port("http")}/healthz`).then((r) => r.json());
  return {
    relay,
    proxy,
    storage,
    service,
    health,
    sent: () => sent,
    async close() {
      service.signal("SIGKILL");
      await service.exit();
      await relay.close();
      proxy.close();
      await Deno.remove(storage, { recursive: true });
    },
  };
}

const handshakeTimeouts = (s: ServiceProcess) =>
  s.logs.filter((l) =>
    l.msg === "connection failed" && String(l.reason).startsWith("no WebSocket handshake")
  );

Deno.test("a relay that accepts TCP but answers no handshake: each attempt is abandoned in time, /healthz says so, recording starts when it answers", async () => {
  const t = await hungRelay(1);
  t.proxy.pause();
  try {
    await until(() => handshakeTimeouts(t.service).length >= 3, "three abandoned handshakes", 20_000);
    const hung = await t.health();
    assert.equal(hung.status, "degraded");
    assert.equal(hung.streams[0].state !== "connected", true);
    assert.ok(
      hung.reasons.some((r: string) => /^stream default not connected/.test(r)),
      hung.reasons.join("; "),
    );
    t.proxy.reset(); // the abandoned attempts are gone; the next one goes through
    t.proxy.resume();
    await t.relay.finished;
    assert.equal((await t.health()).status, "ok");
    await t.relay.close();
    await t.service.waitForLog((l) => l.msg === "disconnected", "the end of the stream");
    const metrics = await t.service.metrics();
    t.service.signal("SIGTERM");
    assert.equal((await t.service.exit()).code, 0);
    assert.ok(
      sumMetric(metrics, "storage_stream_connection_ends_total", { reason: "handshake_timeout" }) >= 3,
    );
    const { chunks } = indexRows(t.storage);
    assert.equal(chunks.reduce((n, c) => n + c.frames, 0), t.sent(), "every frame sent was recorded");
  } finally {
    await t.close();
  }
});

Deno.test("a relay stalled at the TCP level mid-stream: dropped, the hung reconnect abandoned, recording resumes when it flows", async () => {
  const t = await hungRelay(Infinity);
  try {
    await t.service.waitForLog((l) => l.msg === "chunk closed", "a first chunk");
    t.proxy.pause(); // the open connection goes silent without a close, and new ones hang
    await t.service.waitForLog(
      (l) => l.msg === "relay silent: dropping the connection",
      "dead-peer detection",
    );
    await until(() => handshakeTimeouts(t.service).length >= 2, "hung reconnects abandoned", 20_000);
    assert.equal((await t.health()).status, "degraded");
    t.proxy.reset();
    t.proxy.resume();
    await t.service.waitForLog((l) => l.msg === "connected" && l.connection === 2, "the reconnect");
    const closed = t.service.logs.filter((l) => l.msg === "chunk closed").length;
    await t.service.waitForLog(
      (l) =>
        l.msg === "chunk closed" &&
        t.service.logs.filter((m) => m.msg === "chunk closed").length > closed + 1,
      "chunks after the stall",
    );
    assert.equal((await t.health()).status, "ok");
    const metrics = await t.service.metrics();
    t.service.signal("SIGTERM");
    assert.equal((await t.service.exit()).code, 0);
    assert.equal(sumMetric(metrics, "storage_stream_connection_ends_total", { reason: "silent" }), 1);
    const { chunks } = indexRows(t.storage);
    assert.ok(chunks.length >= 3);
    for (const c of chunks) assert.equal(await decodeErrors(join(t.storage, c.path)), "", c.path);
  } finally {
    await t.close();
  }
});
