/**
 * A token bucket for upload bandwidth (ARCHIVE_BANDWIDTH_KBPS): `take(n)` answers how long to wait
 * before sending `n` bytes so that the rate stays at `bytesPerSecond`, with at most `burst` bytes
 * (a quarter second's worth, at least 16 KiB) sent ahead. Pure: the caller passes the monotonic
 * time and does the waiting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const t = new Throttle(100_000); // 100 kB/s: a 25 kB burst
 * assert.equal(t.take(25_000, 0), 0);
 * assert.equal(t.take(50_000, 0), 500); // half a second's bytes: half a second
 * assert.equal(t.take(10_000, 1000), 0); // a second on: the debt is paid, the bucket full again
 * ```
 */
export class Throttle {
  readonly burst: number;
  /** Bytes that may go now without waiting (negative: owed). */
  #tokens: number;
  #at: number | null = null;

  constructor(readonly bytesPerSecond: number) {
    this.burst = Math.max(16 * 1024, bytesPerSecond / 4);
    this.#tokens = this.burst;
  }

  /** Takes `n` bytes at monotonic time `nowMs`; returns the ms to wait before sending them. */
  take(n: number, nowMs: number): number {
    if (this.#at !== null) {
      this.#tokens = Math.min(this.burst, this.#tokens + (nowMs - this.#at) * this.bytesPerSecond / 1000);
    }
    this.#at = nowMs;
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : Math.ceil(-this.#tokens * 1000 / this.bytesPerSecond);
  }
}
