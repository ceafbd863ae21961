import assert from "node:assert/strict";
import { basename } from "node:path";
import { Publisher } from "../actors/publisher.ts";
import { chunkInfo, storageEvent } from "../src/publish/envelope.ts";
import type { BrokerStatus } from "../src/serve/health.ts";
import { ChunkIndex } from "../src/store/index/chunk_index.ts";
import { IndexChanges } from "../src/store/index/index_changes.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { BROKER, brokerUrl, subscribe } from "./broker_helpers.ts";
import { tcpProxy } from "./tcp_proxy.ts";
import { indexRows, pattern, recordPattern, ServiceProcess, SMALL_PATTERN, until } from "./helpers.ts";
import { ENGINES, indexLocation } from "./postgres_helpers.ts";

const exchangeName = () => `skyreel_test_${crypto.randomUUID().slice(0, 8)}`;

/** chunk_saved events, one per chunk id, in arrival order (duplicates from resends removed). */
function chunkSaved(received: { body: Record<string, any> }[]) {
  const seen = new Set<string>();
  return received.filter((r) => r.body.type === "chunk_saved" && !seen.has(r.body.id) && seen.add(r.body.id));
}

Deno.test("every chunk has exactly one chunk_saved event, in order, with the fields subscribers know", async () => {
  const exchange = exchangeName();
  const sub = await subscribe(exchange);
  try {
    const { storage } = await recordPattern({
      ...SMALL_PATTERN,
      intervalMs: 25,
      env: { EVENTS_EXCHANGE: exchange, VIDEO_CHUNK_DURATION_SECONDS: "1" },
    });
    try {
      const { chunks, sessions } = indexRows(storage);
      assert.ok(chunks.length >= 3);
      await until(() => sub.of("session_complete").length === 1, "session_complete");
      const saved = sub.of("chunk_saved");
      assert.equal(saved.length, chunks.length, "exactly one each");
      assert.deepEqual(saved.map((e) => e.body.data.chunk_info), chunks.map((c) => chunkInfo(c as any)));
      for (const e of saved) {
        assert.deepEqual(Object.keys(e.body).sort(), [
          "data",
          "id",
          "recorder",
          "stream",
          "timestamp",
          "type",
        ]);
        assert.equal(e.body.recorder, Deno.hostname(), "RECORDER_ID unset: the host name");
        assert.equal(e.body.stream, "default");
        assert.equal(e.body.data.session_id, sessions[0].session_id);
        assert.equal(typeof e.body.timestamp, "number");
        assert.ok(Math.abs(e.body.timestamp * 1000 - Date.now()) < 60_000, "epoch seconds");
        assert.equal(e.properties.messageId, e.body.id);
        assert.equal(e.properties.contentType, "application/json");
        assert.equal(e.properties.deliveryMode, 2, "persistent");
        assert.equal(typeof e.properties.timestamp, "number");
      }
      const order = sub.received.map((r) => r.body.type);
      assert.equal(order[0], "stream_state");
      assert.equal(order.indexOf("session_started") < order.indexOf("chunk_saved"), true);
      assert.equal(sub.of("session_started")[0].body.data.session_id, sessions[0].session_id);
      const complete = sub.of("session_complete")[0].body.data;
      assert.equal(complete.total_chunks, chunks.length);
      assert.equal(complete.total_frames, chunks.reduce((n, c) => n + c.frames, 0));
      assert.deepEqual(sub.of("stream_state").map((e) => e.body.data.state), ["connected", "disconnected"]);
    } finally {
      await Deno.remove(storage, { recursive: true });
    }
  } finally {
    await sub.close();
  }
});

for (const fault of ["refused", "silent"] as const) {
  Deno.test(`a broker outage (${fault}): events wait in the outbox, /healthz says degraded, all arrive in order when it returns; no frame lost`, async () => {
    const exchange = exchangeName();
    const sub = await subscribe(exchange);
    const proxy = tcpProxy(5672);
    const h264 = await pattern({ width: 640, height: 360, fps: 30, seconds: 4, gop: 15, bitrateKbps: 600 });
    let sent = 0;
    const relay = await startRelay({
      frames: sourceFrames(h264),
      intervalMs: () => 1000 / 30,
      loops: 3,
      startAfterClients: 1,
      onFrame: () => sent++,
    });
    const storage = await Deno.makeTempDir();
    const service = new ServiceProcess({
      VIDEO_STREAM_URL: relay.url,
      STORAGE_PATH: storage,
      AMQP_URL: brokerUrl(proxy.port),
      EVENTS_EXCHANGE: exchange,
      VIDEO_CHUNK_DURATION_SECONDS: "1",
      RECONNECT_MAX_SECONDS: "1",
    });
    const health = async () => (await fetch(`http://127.0.0.1:${await service.port("http")}/healthz`)).json();
    try {
      await until(() => sub.of("chunk_saved").length >= 1, "first chunk_saved");
      // Silent: a partition that sends no reset; only the AMQP heartbeat (5 s) can notice it.
      if (fault === "refused") proxy.refuse();
      else proxy.pause();
      await until(async () => (await health()).outbox.depth >= 3, "events piling up", 20_000);
      await until(async () => (await health()).status === "degraded", "degraded", 20_000);
      assert.notEqual((await health()).broker.state, "connected");
      proxy.resume();
      await relay.finished;
      await until(async () => (await health()).outbox.depth === 0, "the outbox drained", 30_000);
      await relay.close();
      await service.waitForLog((l) => l.msg === "disconnected");
      service.signal("SIGTERM");
      assert.equal((await service.exit()).code, 0);
      const { chunks } = indexRows(storage);
      await until(() => chunkSaved(sub.received).length === chunks.length, "every chunk_saved", 20_000);
      assert.deepEqual(
        chunkSaved(sub.received).map((e) => e.body.data.chunk_info.index),
        chunks.map((c) => c.idx),
      );
      assert.equal(chunks.reduce((n, c) => n + c.frames, 0), sent, "recording lost no frame");
      assert.ok(service.logs.some((l) => l.actor === "publisher" && l.msg === "broker connection failed"));
    } finally {
      service.signal("SIGKILL");
      await service.exit();
      await relay.close();
      proxy.close();
      await sub.close();
      await Deno.remove(storage, { recursive: true });
    }
  });
}

Deno.test("SIGKILL between commit and confirm: the event is delivered after the restart", async () => {
  const exchange = exchangeName();
  const sub = await subscribe(exchange);
  const proxy = tcpProxy(5672);
  proxy.refuse(); // the broker is unreachable: chunk_saved is committed, never confirmed
  const h264 = await pattern({ width: 640, height: 360, fps: 30, seconds: 4, gop: 15, bitrateKbps: 600 });
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
    startAfterClients: 1,
  });
  const storage = await Deno.makeTempDir();
  const env = {
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    AMQP_URL: brokerUrl(proxy.port),
    EVENTS_EXCHANGE: exchange,
    VIDEO_CHUNK_DURATION_SECONDS: "1",
    RECONNECT_MAX_SECONDS: "1",
  };
  const first = new ServiceProcess(env);
  let second: ServiceProcess | null = null;
  try {
    const closed = await first.waitForLog((l) => l.msg === "chunk closed", "a chunk closed");
    // The chunk's row turns complete in the same transaction as its chunk_saved event.
    await until(
      () => indexRows(storage).chunks.some((c) => c.path === closed.path && c.status === "complete"),
      "the close committed",
    );
    first.signal("SIGKILL");
    await first.exit();
    proxy.resume();
    second = new ServiceProcess(env);
    const filename = basename(String(closed.path));
    await until(
      () => chunkSaved(sub.received).some((e) => e.body.data.chunk_info.filename === filename),
      "the chunk_saved of the killed run",
      20_000,
    );
    second.signal("SIGTERM");
    assert.equal((await second.exit()).code, 0);
  } finally {
    first.signal("SIGKILL");
    second?.signal("SIGKILL");
    await first.exit();
    await second?.exit();
    await relay.close();
    proxy.close();
    await sub.close();
    await Deno.remove(storage, { recursive: true });
  }
});

Deno.test("a topic exchange routes each event as storage.<stream>.<type>", async () => {
  const exchange = exchangeName();
  const sub = await subscribe(exchange, "topic");
  try {
    const { storage } = await recordPattern({
      width: 320,
      height: 240,
      fps: 30,
      seconds: 2,
      gop: 30,
      bitrateKbps: 300,
      intervalMs: 10,
      env: { EVENTS_EXCHANGE: exchange, EVENTS_EXCHANGE_TYPE: "topic" },
    });
    await Deno.remove(storage, { recursive: true });
    await until(() => sub.of("session_complete").length === 1, "session_complete");
    assert.ok(sub.received.length >= 4);
    for (const r of sub.received) assert.equal(r.routingKey, `storage.default.${r.body.type}`);
  } finally {
    await sub.close();
  }
});

for (const engine of ENGINES) {
  Deno.test(`events the broker confirmed while the index cannot record it are marked later, not published again (${engine})`, async () => {
    const dir = await Deno.makeTempDir();
    const where = await indexLocation(engine, dir);
    const index = await ChunkIndex.open(where.location, "test");
    const exchange = exchangeName();
    const sub = await subscribe(exchange);
    const stopping = new AbortController();
    // The real index, whose write of "sent" fails as on a full disk for its first three attempts.
    const markSent = index.markSent.bind(index);
    let refusals = 3;
    index.markSent = (seqs, at) =>
      refusals-- > 0 ? Promise.reject(new Error("database or disk is full")) : markSent(seqs, at);
    const status: BrokerStatus = { state: "connecting", lastError: null };
    const publisher = new Publisher({
      index,
      changes: new IndexChanges(),
      url: BROKER,
      exchange,
      exchangeType: "fanout",
      retentionMs: 3600_000,
      reconnectMaxMs: 1000,
      metrics: new Metrics(),
      status,
    });
    const running = publisher.run(stopping.signal);
    try {
      for (let i = 0; i < 5; i++) {
        await index.appendEvent(
          storageEvent("stream_state", "default", { state: "connected", reason: `r${i}` }),
        );
      }
      await until(async () => (await index.outbox()).depth === 0, "the outbox marked sent");
      assert.ok(refusals < 0, "the write was refused, then taken");
      // The publisher sends in order: a repeat would arrive before a later event.
      await index.appendEvent(storageEvent("stream_state", "default", { state: "connected", reason: "end" }));
      await until(() => sub.received.some((r) => r.body.data.reason === "end"), "a later event");
      assert.deepEqual(sub.received.map((r) => r.body.data.reason), ["r0", "r1", "r2", "r3", "r4", "end"]);
      assert.equal(status.state, "connected", "the connection was kept");
      assert.ok(sub.received.every((r) => r.body.recorder === "test"), "each envelope names its recorder");
    } finally {
      stopping.abort();
      await running;
      await sub.close();
      await index.close();
      await where.drop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
