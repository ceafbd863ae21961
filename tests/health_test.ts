import assert from "node:assert/strict";
import {
  type BrokerStatus,
  Conditions,
  type HealthInput,
  healthReport,
  streamStatus,
} from "../src/serve/health.ts";

const NOW = 1_800_000_000_000;

function input(o: Partial<HealthInput> = {}): HealthInput {
  return {
    now: NOW,
    recorder: "gs-1",
    index: "sqlite",
    actors: [{ actor: "indexer", state: "running", restarts: 0, lastError: null }],
    broker: { state: "connected", lastError: null },
    outbox: { depth: 0, oldestMs: null },
    archive: { state: "off", lastError: null, depth: 0, oldestMs: null },
    streams: new Map([["default", { ...streamStatus(NOW - 60_000), state: "connected", downSince: null }]]),
    conditions: new Conditions(),
    streamTimeoutMs: 15_000,
    ...o,
  };
}

const verdict = (o: Partial<HealthInput>) => {
  const { status, body } = healthReport(input(o));
  return { status, verdict: body.status, reasons: body.reasons };
};

Deno.test("healthz: ok when everything runs", () => {
  assert.deepEqual(verdict({}), { status: 200, verdict: "ok", reasons: [] });
});

Deno.test("healthz: publishing off is not a fault, however old the outbox", () => {
  const off: BrokerStatus = { state: "off", lastError: null };
  assert.deepEqual(verdict({ broker: off, outbox: { depth: 500, oldestMs: NOW - 86_400_000 } }), {
    status: 200,
    verdict: "ok",
    reasons: [],
  });
});

Deno.test("healthz: a broker not connected, or an event unsent over 60 s, degrades", () => {
  assert.deepEqual(verdict({ broker: { state: "connecting", lastError: "x" } }).reasons, [
    "broker connecting",
  ]);
  assert.deepEqual(verdict({ outbox: { depth: 3, oldestMs: NOW - 61_000 } }).reasons, [
    "oldest unsent event is 61 s old",
  ]);
  assert.equal(verdict({ outbox: { depth: 3, oldestMs: NOW - 59_000 } }).verdict, "ok");
});

Deno.test("healthz: a stream down longer than the stream timeout degrades; a quick reconnect does not", () => {
  const down = (ms: number) =>
    new Map([["cam", {
      state: "connecting" as const,
      since: NOW - 100,
      downSince: NOW - ms,
      reason: "no WebSocket handshake within 15000 ms",
      lastDataMs: null,
    }]]);
  assert.equal(verdict({ streams: down(14_000) }).verdict, "ok");
  assert.deepEqual(verdict({ streams: down(16_000) }).reasons, [
    "stream cam not connected for 16 s: no WebSocket handshake within 15000 ms",
  ]);
});

Deno.test("healthz: a held condition degrades until its owner clears it", () => {
  const conditions = new Conditions();
  conditions.set("index_disk_full", "disk full: the index cannot be written", NOW - 5000);
  conditions.set("index_disk_full", "disk full: the index cannot be written", NOW);
  const { body } = healthReport(input({ conditions }));
  assert.equal(body.status, "degraded");
  assert.deepEqual(body.conditions, [{
    name: "index_disk_full",
    since_seconds: 5,
    detail: "disk full: the index cannot be written",
  }]);
  assert.equal(conditions.clear("index_disk_full"), true);
  assert.equal(verdict({ conditions }).verdict, "ok");
});

Deno.test("healthz: an actor not running is down (503), whatever else holds", () => {
  const actors = [{
    actor: "writer",
    stream: "cam",
    state: "failed" as const,
    restarts: 6,
    lastError: "boom",
  }];
  assert.deepEqual(verdict({ actors, broker: { state: "disconnected", lastError: null } }), {
    status: 503,
    verdict: "down",
    reasons: ["actor writer (cam) is failed", "broker disconnected"],
  });
});
