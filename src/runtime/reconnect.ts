import { backoffMs } from "./backoff.ts";
import type { Logger } from "./log.ts";
import { sleep } from "./sleep.ts";

/** The wait after a session that got data, doubled after each one that got none. */
const BASE_MS = 250;

/**
 * Runs `session` until `signal` aborts, waiting a capped exponential backoff with jitter between
 * sessions (each wait logged as "reconnecting"). The count starts again after a session that got
 * data: a source that drops now and then is back within 250 ms, one that is down is asked less and
 * less often, up to every `maxMs`. Every source actor (relay, camera, RTSP) reconnects this way.
 *
 * @example
 * await reconnecting(signal, config.reconnectMaxMs, log, async () => (await readOnce()) > 0);
 */
export async function reconnecting(
  signal: AbortSignal,
  maxMs: number,
  log: Logger,
  session: () => Promise<boolean>,
): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    const gotData = await session();
    if (signal.aborted) return;
    failures = gotData ? 1 : failures + 1;
    const delay = backoffMs(failures, BASE_MS, maxMs);
    log.info("reconnecting", { delayMs: delay, failures });
    await sleep(delay, signal);
  }
}
