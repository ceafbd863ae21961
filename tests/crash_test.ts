import assert from "node:assert/strict";
import { join } from "node:path";
import { scanChunk } from "../src/store/mp4/fragment_reader.ts";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  decodeErrors,
  gridStep,
  indexRows,
  jitter,
  nowMs,
  pattern,
  probeFrames,
  ServiceProcess,
} from "./helpers.ts";

const FRAGMENT_MS = 500;

Deno.test("SIGKILL mid-chunk: the torn chunk is recovered with every frame up to one fragment before the kill", async () => {
  const h264 = await pattern({ width: 1280, height: 720, fps: 30, seconds: 10, gop: 30, bitrateKbps: 4000 });
  const sent: number[] = [];
  let reached: () => void;
  const enough = new Promise<void>((r) => (reached = r));
  let onSent = () => {};
  const relay = await startRelay({
    frames: sourceFrames(h264),
    intervalMs: jitter(9, 1000 / 30, 1000 / 25),
    loops: Infinity,
    startAfterClients: 1,
    onFrame: (i, at) => {
      sent.push(at);
      if (i === 100) reached();
      onSent();
    },
  });
  const storage = await Deno.makeTempDir();
  const env = {
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    VIDEO_CHUNK_DURATION_SECONDS: "60",
    FRAGMENT_DURATION_MS: String(FRAGMENT_MS),
  };
  const first = new ServiceProcess(env);
  let second: ServiceProcess | null = null;
  try {
    await enough;
    const killAt = nowMs();
    first.signal("SIGKILL");
    assert.equal((await first.exit()).signal, "SIGKILL");
    const mustHave = sent.filter((at) => at <= killAt - FRAGMENT_MS).length;

    second = new ServiceProcess(env);
    await second.waitForLog((l) => l.msg === "chunk recovered", "recovery");
    await second.waitForLog(
      (l) => l.msg === "chunk opened" && String(l.path).endsWith("chunk_0002.mp4"),
      "chunk 2",
    );
    const target = sent.length + 15;
    await new Promise<void>((r) => (onSent = () => sent.length >= target && r()));
    second.signal("SIGTERM");
    assert.equal((await second.exit()).code, 0);

    const { sessions, chunks } = indexRows(storage);
    assert.equal(sessions.length, 1, "the restart continued the session");
    assert.deepEqual(chunks.map((c) => [c.idx, c.status, c.partial]), [[1, "recovered", 1], [
      2,
      "complete",
      1,
    ]]);
    const torn = join(storage, chunks[0].path);
    assert.equal(await decodeErrors(torn), "");
    const probed = await probeFrames(torn);
    assert.equal(probed.length, chunks[0].frames);
    assert.ok(
      probed.length >= mustHave,
      `recovered ${probed.length} frames, ${mustHave} were sent by kill - ${FRAGMENT_MS} ms`,
    );
    const bytes = await Deno.readFile(torn);
    assert.equal(scanChunk(bytes).validBytes, bytes.length, "the torn tail was cut");
    assert.equal(chunks[0].bytes, bytes.length);
    const startMs = scanChunk(bytes).startMs!;
    const step = gridStep(probed.map((p) => p.ptsMs));
    probed.forEach((p, i) => assert.ok(Math.abs(startMs + p.ptsMs - sent[i]) <= step, `frame ${i}`));
    console.log(
      `  recovered ${probed.length} frames (${mustHave} required), kill at frame ${
        sent.filter((t) => t <= killAt).length
      }`,
    );

    const next = join(storage, chunks[1].path);
    assert.equal(await decodeErrors(next), "");
    assert.equal((await probeFrames(next))[0].key, true);
    const meta = JSON.parse(await Deno.readTextFile(join(storage, sessions[0].dir, "metadata.json")));
    assert.deepEqual(meta.chunks.map((c: { status: string }) => c.status), ["recovered", "complete"]);
  } finally {
    first.signal("SIGKILL");
    second?.signal("SIGKILL");
    await first.exit();
    await second?.exit();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});
