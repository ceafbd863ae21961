/**
 * How long to wait before retry number `attempt` (1 for the first): `baseMs` doubled each attempt,
 * capped at `maxMs`, then "equal jitter": half of it fixed, half random, so that many clients that
 * failed together do not retry together. `random` (0 to 1) is the caller's to fix in tests; 1
 * gives the cap itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { backoffMs } from "./backoff.ts";
 * const wait = backoffMs(3, 250, 10_000);
 * assert.ok(wait >= 500 && wait <= 1000);
 * assert.equal(backoffMs(10, 250, 10_000, () => 1), 10_000);
 * ```
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + random() * cap / 2);
}
