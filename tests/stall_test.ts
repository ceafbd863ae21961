import assert from "node:assert/strict";
import { Connection } from "../actors/connection.ts";
import { Mailbox } from "../src/runtime/actor.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import type { IndexerMsg, SegmenterMsg } from "../src/record/messages.ts";
import { streamStatus } from "../src/serve/health.ts";
import { FrameParser } from "../src/ingest/h264/frame_parser.ts";
import { concat } from "../src/runtime/bytes.ts";
import { frameMessages, sourceFrames } from "../src/tools/relay.ts";
import { FIXTURE, sumMetric } from "./helpers.ts";

/** Blocks this thread's event loop: no message, timer or I/O callback runs meanwhile. */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* busy */ }
}

Deno.test("an event loop blocked for 500 ms mid-picture splits nothing: every picture reaches the segmenter whole and in order", async () => {
  const worker = new Worker(new URL("./stall_relay_worker.ts", import.meta.url), { type: "module" });
  const said = (key: string) =>
    new Promise<Record<string, unknown>>((resolve) =>
      worker.addEventListener("message", (e) => key in e.data && resolve(e.data))
    );
  const done = said("done");
  const { url } = await said("url") as { url: string };
  const segmenter = new Mailbox<SegmenterMsg>(100_000);
  const metrics = new Metrics();
  const connection = new Connection({
    stream: { name: "default", url },
    segmenter,
    indexer: new Mailbox<IndexerMsg>(1000),
    metrics,
    status: streamStatus(Date.now()),
    timeoutMs: 10_000,
    reconnectMaxMs: 60_000,
  });
  const abort = new AbortController();
  const running = connection.run(abort.signal);
  try {
    // Three stalls while slices keep arriving: the socket's messages and the overdue timers all run
    // together afterwards, as after a GC pause or a blocked disk on a loaded ground station.
    for (const at of [300, 900, 1500]) {
      setTimeout(() => block(500), at);
    }
    await done;
    // What the same messages make without a stall (the upstream stack sends no SEI or AUD).
    const state = {};
    const messages = sourceFrames(await Deno.readFile(FIXTURE))
      .flatMap((f) => frameMessages(f, { upstream: true }, state));
    const parser = new FrameParser();
    const source = [...messages.flatMap((m) => parser.message(concat(m), 0)), ...parser.end()];
    const frames: Uint8Array[] = [];
    while (frames.length < source.length) {
      const msg = await segmenter.take(AbortSignal.timeout(10_000));
      assert.ok(msg, `${frames.length} of ${source.length} pictures arrived`);
      if (msg.type === "frame") frames.push(msg.frame.data);
    }
    assert.equal(frames.length, source.length);
    frames.forEach((data, i) => assert.deepEqual(data, source[i].data, `picture ${i} whole`));
    const text = await metrics.registry.metrics();
    for (const kind of ["lateSlices", "splitNals"]) {
      assert.equal(sumMetric(text, "storage_bad_input_total", { kind }), 0, kind);
    }
    assert.equal(sumMetric(text, "storage_frames_dropped_total"), 0);
  } finally {
    abort.abort();
    await running;
    worker.terminate();
  }
});
