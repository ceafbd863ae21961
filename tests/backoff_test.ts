import assert from "node:assert/strict";
import { backoffMs } from "../src/runtime/backoff.ts";

Deno.test("backoff doubles from its base to its cap, half of each wait random", () => {
  const fixed = (r: number) => [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffMs(n, 250, 10_000, () => r));
  assert.deepEqual(fixed(1), [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
  assert.deepEqual(fixed(0), [125, 250, 500, 1000, 2000, 4000, 5000, 5000]);
  const waits = Array.from({ length: 200 }, () => backoffMs(3, 250, 10_000));
  assert.ok(waits.every((w) => w >= 500 && w <= 1000), "within half and all of the cap");
  assert.ok(new Set(waits).size > 50, "spread, not in step");
});
