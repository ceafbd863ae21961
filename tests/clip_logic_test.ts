import assert from "node:assert/strict";
import { mergeRanges, nearestRanges } from "../src/serve/clip/ranges.ts";
import { formatCompact, formatIso, parseTimestamp } from "../src/serve/clip/timestamps.ts";

Deno.test("timestamps: compact local and UTC forms, ISO 8601 with fractions and offsets", () => {
  const utc = Date.UTC(2026, 10, 21, 14, 2, 10);
  assert.equal(parseTimestamp("2026-11-21_14-02-10Z"), utc);
  assert.equal(parseTimestamp("2026-11-21_14-02-10"), new Date(2026, 10, 21, 14, 2, 10).getTime());
  assert.equal(parseTimestamp("2026-11-21T14:02:10Z"), utc);
  assert.equal(parseTimestamp("2026-11-21T14:02:10.5Z"), utc + 500);
  assert.equal(parseTimestamp("2026-11-21T16:02:10.250+02:00"), utc + 250);
  assert.equal(parseTimestamp("2026-11-21T09:02:10-0500"), utc);
  for (
    const bad of [
      "",
      "yesterday",
      "2026-02-30_10-00-00Z",
      "2026-02-30T10:00:00Z",
      "2026-11-21 14:02:10",
      "2026-11-21_25-00-00Z",
      "1700000000",
    ]
  ) {
    assert.equal(parseTimestamp(bad), null, bad);
  }
  assert.equal(formatCompact(utc + 999), "2026-11-21_14-02-10Z");
  assert.equal(formatIso(utc + 5), "2026-11-21T14:02:10.005Z");
});

Deno.test("ranges: sorted, merged across gaps up to the tolerance, empty chunks ignored", () => {
  const c = (start_ms: number, end_ms: number, frames = 10) => ({ start_ms, end_ms, frames, bytes: 100 });
  // Gaps: 0, 1100 (too long), 1000 (exactly the tolerance: joins), 2000.
  const ranges = mergeRanges([
    c(5100, 6000),
    c(0, 2000),
    c(2000, 4000),
    c(4900, 5000, 0),
    c(7000, 7500),
    c(9500, 9900),
  ], 1000);
  assert.deepEqual(ranges.map((r) => [r.from, r.to, r.chunks, r.frames]), [[0, 4000, 2, 20], [
    5100,
    7500,
    2,
    20,
  ], [9500, 9900, 1, 10]]);
  assert.deepEqual(nearestRanges(ranges, 8000, 8500).map((r) => r.from), [5100, 9500]);
  assert.deepEqual(nearestRanges(ranges, -100, -50).map((r) => r.from), [0]);
});

Deno.test("request fields: missing, unparseable, reversed ranges and unsafe labels are refused by name", async () => {
  const { ApiError, clipRange, saveLabels } = await import("../src/serve/clip/request.ts");
  const refused = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof ApiError && e.status === 400 && pattern.test(e.message));
  refused(() => clipRange({ to: "2026-11-21_14-02-10Z" }), /missing "from"/);
  refused(() => clipRange({ from: "2026-11-21_14-02-10Z" }), /missing "to"/);
  refused(
    () => clipRange({ from: "noon", to: "2026-11-21_14-02-10Z" }),
    /"from" is not a timestamp.*YYYY-MM-DD_HH-MM-SS/,
  );
  refused(
    () => clipRange({ from: "2026-11-21_14-02-10Z", to: "2026-11-21_14-02-10Z" }),
    /"from" must be before "to"/,
  );
  assert.deepEqual(clipRange({ from: "2026-11-21_14-02-10Z", to: "2026-11-21T14:02:11Z" }), {
    from: Date.UTC(2026, 10, 21, 14, 2, 10),
    to: Date.UTC(2026, 10, 21, 14, 2, 11),
  });
  for (const bad of ["../x", "a/b", "a\\b", "a\0b", "x".repeat(101), ""]) {
    refused(() => saveLabels({ metadata: bad }), /"metadata"/);
    refused(() => saveLabels({ tags: ["ok", bad] }), /"tags\[1\]"/);
  }
  refused(() => saveLabels({ tags: "flight" }), /"tags" must be an array/);
  assert.deepEqual(saveLabels({ metadata: "survey", tags: ["zeta", "alpha"] }), {
    metadata: "survey",
    tags: ["alpha", "zeta"],
  });
});

Deno.test("clip plan: overlapping chunks in order, gaps inside the range, a stop at a resolution change", async () => {
  const { planClip } = await import("../src/serve/clip/plan.ts");
  const c = (path: string, start_ms: number, end_ms: number, width = 1280) => ({
    path,
    start_ms,
    end_ms,
    frames: 10,
    codec: "avc1.42c01f",
    width,
    height: 720,
    bytes: 1000,
  });
  const rows = [
    c("c3", 20_000, 30_000, 640),
    c("c1", 0, 10_000),
    c("c2", 12_000, 20_000),
    c("c0", -10_000, -5_000),
  ];
  const plan = planClip(rows, 5000, 25_000, 1000);
  assert.deepEqual(plan.chunks.map((x) => x.path), ["c1", "c2"]);
  assert.deepEqual(plan.gaps, [{ from: 10_000, to: 12_000 }]);
  assert.equal(plan.stopped?.at, 20_000);
  assert.match(plan.stopped!.reason, /1280x720 to avc1\.42c01f 640x720/);
  const tail = planClip(rows.slice(1, 3), 15_000, 23_000, 1000);
  assert.deepEqual(tail.gaps, [{ from: 20_000, to: 23_000 }]);
  assert.deepEqual(planClip(rows, 40_000, 50_000, 1000).chunks, []);
});
