import assert from "node:assert/strict";
import { planDeletions, type RetainedChunk } from "../src/store/retention.ts";

const MB = 1024 * 1024;
const chunk = (
  path: string,
  start: number,
  bytes: number,
  status = "complete",
  archive_key: string | null = null,
): RetainedChunk => ({
  path,
  start_ms: start,
  end_ms: start + 60_000,
  bytes,
  status,
  archive_key,
});
const state = (o: Partial<Parameters<typeof planDeletions>[2]> = {}) => ({
  now: 10_000_000,
  usageBytes: 0,
  freeBytes: 100 * 1024 * MB,
  leased: () => false,
  ...o,
});
const noLimits = { budgetBytes: null, maxAgeMs: null, minFreeBytes: 0, keepUntilArchived: false };

Deno.test("size: the oldest closed chunks go until usage (index included) is under the budget", () => {
  const rows = [
    chunk("c3", 3000, 10 * MB),
    chunk("c1", 1000, 10 * MB),
    chunk("c2", 2000, 10 * MB),
    chunk("c4", 4000, 10 * MB, "recording"),
  ];
  // On disk: four chunks of 10 MB (the open one counts) and a 1 MB index.
  const plan = planDeletions(rows, { ...noLimits, budgetBytes: 25 * MB }, state({ usageBytes: 41 * MB }));
  assert.deepEqual(plan.map((d) => [d.path, d.reason]), [["c1", "size"], ["c2", "size"]]);
  assert.deepEqual(
    planDeletions(rows, { ...noLimits, budgetBytes: 41 * MB }, state({ usageBytes: 41 * MB })),
    [],
  );
});

Deno.test("an open, leased, deleting or deleted chunk is never chosen; deleting and open ones still count", () => {
  const rows = [
    chunk("open", 1000, 10 * MB, "recording"),
    chunk("leased", 2000, 10 * MB),
    chunk("going", 3000, 10 * MB, "deleting"),
    chunk("gone", 3500, 10 * MB, "deleted"),
    chunk("old", 4000, 10 * MB, "recovered"),
    chunk("new", 5000, 10 * MB),
  ];
  // 50 MB on disk (the deleted one is gone), budget 40: one chunk must go, and only "old" may.
  const plan = planDeletions(
    rows,
    { ...noLimits, budgetBytes: 40 * MB },
    state({ usageBytes: 50 * MB, leased: (p) => p === "leased" }),
  );
  assert.deepEqual(plan.map((d) => d.path), ["old"]);
});

Deno.test("age: chunks that ended before the limit go, whatever the budget", () => {
  // Cutoff: 10,000,000 - 4,000,000 = 6,000,000; "mid" ends at 7,060,000.
  const rows = [chunk("old", 1000, MB), chunk("mid", 7_000_000, MB), chunk("new", 9_000_000, MB)];
  const plan = planDeletions(rows, { ...noLimits, maxAgeMs: 4_000_000 }, state());
  assert.deepEqual(plan.map((d) => [d.path, d.reason]), [["old", "age"]]);
});

Deno.test("disk floor: below the free-space floor the oldest go first, even under the budget", () => {
  const rows = [chunk("c1", 1000, 10 * MB), chunk("c2", 2000, 10 * MB), chunk("c3", 3000, 10 * MB)];
  const plan = planDeletions(
    rows,
    { ...noLimits, budgetBytes: 1024 * MB, minFreeBytes: 15 * MB },
    state({ usageBytes: 30 * MB, freeBytes: 1 * MB }),
  );
  assert.deepEqual(plan.map((d) => [d.path, d.reason]), [["c1", "disk-floor"], ["c2", "disk-floor"]]);
});

Deno.test("a pass over 100,000 chunks over twice the budget picks exactly the oldest half (its speed: deno task bench)", () => {
  const rows = Array.from({ length: 100_000 }, (_, i) => chunk(`c${i}`, i * 60_000, 5 * MB));
  const plan = planDeletions(
    rows,
    { ...noLimits, budgetBytes: 250_000 * MB },
    state({ usageBytes: 500_000 * MB }),
  );
  assert.equal(plan.length, 50_000);
  assert.equal(plan[0].path, "c0");
  assert.equal(plan.at(-1)!.path, "c49999");
});

Deno.test("keep until archived: size and age delete only archived chunks, newer ones if need be; the disk floor deletes any, and says it was not archived", () => {
  const rows = [
    chunk("c1", 1000, 10 * MB),
    chunk("c2", 2000, 10 * MB, "complete", "a/c2"),
    chunk("c3", 3000, 10 * MB, "complete", "a/c3"),
    chunk("c4", 4000, 10 * MB),
  ];
  const keep = { ...noLimits, keepUntilArchived: true };
  const size = planDeletions(rows, { ...keep, budgetBytes: 25 * MB }, state({ usageBytes: 40 * MB }));
  assert.deepEqual(size.map((d) => [d.path, d.reason, d.archived]), [["c2", "size", true], [
    "c3",
    "size",
    true,
  ]]);
  const age = planDeletions(rows, { ...keep, maxAgeMs: 1 }, state());
  assert.deepEqual(age.map((d) => d.path), ["c2", "c3"]);
  const floor = planDeletions(rows, { ...keep, minFreeBytes: 15 * MB }, state({ freeBytes: 0 }));
  assert.deepEqual(floor.map((d) => [d.path, d.reason, d.archived]), [
    ["c1", "disk-floor", false],
    ["c2", "disk-floor", true],
  ]);
  // Without the option, the oldest go whether archived or not.
  const plain = planDeletions(rows, { ...noLimits, budgetBytes: 25 * MB }, state({ usageBytes: 40 * MB }));
  assert.deepEqual(plain.map((d) => [d.path, d.archived]), [["c1", false], ["c2", true]]);
});
