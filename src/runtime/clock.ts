/**
 * Time as an actor reads it, passed in so tests can set it: `now()` is wall-clock epoch ms (what
 * recordings and rows are stamped with), `monotonic()` ms that never jump (what intervals and
 * timeouts are measured with).
 *
 * @example
 * const clock: Clock = { now: () => 1_795_350_130_000, monotonic: () => 0 }; // a test's fixed time
 * systemClock.now() - clock.now();
 */
export interface Clock {
  now(): number;
  monotonic(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};
