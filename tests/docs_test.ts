/** The contracts in docs/ against the code that fulfils them. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CAMERA_FAULTS } from "../actors/camera.ts";
import { loadConfig } from "../src/app/config.ts";
import { chunkInfo } from "../src/publish/envelope.ts";
import { Metrics } from "../src/runtime/metrics.ts";
import type { ChunkRow, SessionRow } from "../src/store/index/chunk_index.ts";
import { buildMetadata } from "../src/store/metadata.ts";
import { ROOT } from "./helpers.ts";

/** The JSON examples (```json blocks) of a doc. */
function examples(doc: string): Record<string, any>[] {
  const text = Deno.readTextFileSync(join(ROOT, "docs", doc));
  return [...text.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]));
}

/** Keys and the type of each value, so an example and the code's output can be compared. */
const shape = (o: Record<string, unknown>) =>
  Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k, v === null ? "null" : Array.isArray(v) ? "array" : typeof v]),
  );

/** Every `x` beside an `x_iso` names the same instant: epoch seconds and ISO 8601. */
function assertIsoCopies(o: Record<string, any>, where: string) {
  for (const [key, value] of Object.entries(o)) {
    if (key.endsWith("_iso")) {
      assert.equal(o[key.slice(0, -4)] * 1000, Date.parse(value), `${where}: ${key}`);
    } else if (value && typeof value === "object" && !Array.isArray(value)) assertIsoCopies(value, where);
  }
}

const session: SessionRow = {
  id: 1,
  recorder: "groundstation-1",
  stream: "default",
  session_id: "20261121_140210",
  dir: "20261121_140210",
  start_ms: Date.parse("2026-11-21T14:02:10.377Z"),
  end_ms: Date.parse("2026-11-21T14:03:10.410Z"),
  video_url: "ws://127.0.0.1:5001/ws/video/consume",
  status: "ended",
};
const chunk: ChunkRow = {
  id: 1,
  recorder: "groundstation-1",
  stream: "default",
  session_id: session.session_id,
  idx: 1,
  path: "20261121_140210/video_segments/chunk_0001.mp4",
  start_ms: session.start_ms,
  end_ms: session.end_ms!,
  frames: 1801,
  bytes: 30712044,
  partial: 0,
  codec: "avc1.42c01e",
  width: 1280,
  height: 720,
  status: "complete",
  close_reason: "duration",
  archive_key: null,
};

Deno.test("docs/storage.md: the metadata.json example is what the recorder writes, in the seed's schema", () => {
  const [example] = examples("storage.md");
  const meta = buildMetadata(session, [chunk], { chunkMs: 60_000, idleMs: 10_000 }, Date.now());
  assert.deepEqual(shape(example), shape(meta));
  assert.deepEqual(shape(example.chunks[0]), shape((meta.chunks as Record<string, unknown>[])[0]));
  assert.deepEqual(
    [example.start_time, example.chunks[0].start_time, example.codec],
    [meta.start_time, (meta.chunks as { start_time: number }[])[0].start_time, meta.codec],
  );
  assertIsoCopies(example, "storage.md");
});

Deno.test("docs/events.md: chunk_info is the chunk as metadata.json gives it; times agree with their ISO copies", () => {
  const all = examples("events.md");
  for (const e of all.filter((e) => e.chunk_info)) {
    assert.deepEqual(shape(e.chunk_info), shape(chunkInfo(chunk)));
  }
  all.forEach((e) => assertIsoCopies(e, "events.md"));
  assert.ok(all.filter((e) => e.chunk_info).length >= 2);
});

Deno.test("docs/cameras.md: every camera fault reason and the encoding defaults are the code's", () => {
  const text = Deno.readTextFileSync(join(ROOT, "docs/cameras.md"));
  const faults = text.slice(text.indexOf("## Camera faults"), text.indexOf("## RTSP"));
  const rows = [...faults.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual(rows, [...CAMERA_FAULTS]);
  const help = new Metrics().registry.getSingleMetric("storage_camera_errors_total") as unknown as {
    help: string;
  };
  for (const reason of CAMERA_FAULTS) assert.ok(help.help.includes(reason), `${reason} in the metric's help`);
  const { encode } = loadConfig({ VIDEO_STREAM_URL: "http://cam/" }).streams[0];
  const defaults = Object.fromEntries(
    [...text.matchAll(/^\| [^|]*\| `([A-Z_]+)` \| (\w+)/gm)].map((m) => [m[1], m[2]]),
  );
  assert.deepEqual(defaults, {
    CAMERA_FRAMERATE: String(encode!.fps),
    VIDEO_BITRATE: String(encode!.bitrateKbps * 1000),
    VIDEO_PRESET: encode!.preset,
  });
});
