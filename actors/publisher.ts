import { type Clock, systemClock } from "../src/runtime/clock.ts";
import { Buffer } from "node:buffer";
import { type ChannelModel, type ConfirmChannel, connect } from "amqplib";
import type { Behavior } from "../src/runtime/actor.ts";
import type { BrokerStatus } from "../src/serve/health.ts";
import type { ChunkIndex, EventRow } from "../src/store/index/chunk_index.ts";
import type { IndexChanges } from "../src/store/index/index_changes.ts";
import { logger } from "../src/runtime/log.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { backoffMs } from "../src/runtime/backoff.ts";
import { sleep } from "../src/runtime/sleep.ts";

export interface PublisherOptions {
  index: ChunkIndex;
  /** Index changes wake the publisher: a new event is usually waiting. */
  changes: IndexChanges;
  /** Empty: publishing is off; the outbox still records (and is pruned). */
  url: string;
  exchange: string;
  exchangeType: string;
  retentionMs: number;
  reconnectMaxMs: number;
  metrics: Metrics;
  status: BrokerStatus;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

const BATCH = 200;
const IDLE_CHECK_MS = 1000;
const PRUNE_EVERY_MS = 60_000;
const DRAIN_MS = 2000;
/**
 * Seconds between AMQP heartbeats, unless AMQP_URL sets `heartbeat`: a silent broker (a network
 * partition, a paused host) is noticed after two missed beats instead of RabbitMQ's 60 s default.
 */
const HEARTBEAT_S = 5;
/** TCP connect plus the AMQP handshake must finish within this. */
const CONNECT_TIMEOUT_MS = 10_000;

/** AMQP_URL with our heartbeat, unless it sets its own. */
export function withHeartbeat(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has("heartbeat")) u.searchParams.set("heartbeat", String(HEARTBEAT_S));
  return u.toString();
}

/**
 * Sends the outbox to RabbitMQ in order, on a confirm channel: an event is marked sent only after
 * the broker confirmed it, so a crash or a broker outage loses nothing (a resend after a crash, or
 * of a batch whose confirms a cut connection lost, may duplicate an event; its message_id lets
 * subscribers drop it). Reconnects with capped backoff on `close` as well as `error`. Recording
 * never waits on it.
 */
export class Publisher implements Behavior<never> {
  #clock: Clock;
  #o: PublisherOptions;
  #log = logger("publisher");
  #lastPrune = 0;
  /**
   * Events the broker confirmed that the index does not yet say were sent (its write failed: a
   * full disk). Kept across reconnects, so they are marked, not published again; only a crash
   * forgets them (and then a subscriber drops the repeat by its message_id).
   */
  #confirmed: number[] = [];
  /** Set while stop() waits for the outbox to empty. */
  #onDrained: (() => void) | null = null;

  constructor(o: PublisherOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
  }

  receive(): void {}

  /**
   * At shutdown, gives the publisher up to DRAIN_MS to send what the last chunk closes produced:
   * it resolves when the publish loop finds the outbox empty.
   */
  async stop(): Promise<void> {
    if (this.#o.status.state !== "connected") return;
    const timeout = new AbortController();
    const drained = new Promise<void>((resolve) => (this.#onDrained = resolve));
    this.#o.changes.changed(""); // wake the loop: the final events are waiting
    await Promise.race([drained, sleep(DRAIN_MS, timeout.signal)]);
    timeout.abort();
    this.#onDrained = null;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { status, metrics } = this.#o;
    if (!this.#o.url) {
      status.state = "off";
      this.#log.info("AMQP_URL is empty: events are recorded in the outbox, not published");
      while (!signal.aborted) {
        await this.#prune(false);
        await sleep(PRUNE_EVERY_MS, signal);
      }
      return;
    }
    let failures = 0;
    while (!signal.aborted) {
      status.state = "connecting";
      try {
        await this.#session(signal);
        failures = 0;
      } catch (e) {
        status.lastError = e instanceof Error ? e.message : String(e);
        metrics.publishFailures.inc();
        this.#log.warn("broker connection failed", { error: status.lastError });
      }
      status.state = "disconnected";
      if (signal.aborted) return;
      failures++;
      await sleep(backoffMs(failures, 250, this.#o.reconnectMaxMs), signal);
      metrics.brokerReconnects.inc();
    }
  }

  /** One broker connection: publish until it closes or `signal` aborts. */
  async #session(signal: AbortSignal): Promise<void> {
    const { index, exchange, status } = this.#o;
    const conn: ChannelModel = await connect(withHeartbeat(this.#o.url), {
      noDelay: true,
      timeout: CONNECT_TIMEOUT_MS,
    });
    let closed: Error | null = null;
    let wake = () => {};
    const onClose = (e?: Error) => {
      closed ??= e ?? new Error("connection closed");
      wake();
    };
    conn.on("close", onClose);
    conn.on("error", onClose);
    const onAbort = () => wake();
    signal.addEventListener("abort", onAbort);
    const off = this.#o.changes.listen(() => wake());
    try {
      const channel = await conn.createConfirmChannel();
      channel.on("close", () => onClose(new Error("channel closed")));
      channel.on("error", onClose);
      await channel.assertExchange(exchange, this.#o.exchangeType, { durable: true });
      status.state = "connected";
      status.lastError = null;
      this.#log.info("broker connected", { exchange, type: this.#o.exchangeType });
      while (!signal.aborted && !closed) {
        if (this.#confirmed.length > 0) {
          await this.#markConfirmed(signal);
          continue;
        }
        const rows = await index.unsentEvents(BATCH);
        if (rows.length > 0) {
          for (const row of rows) this.#publish(channel, row);
          await channel.waitForConfirms();
          for (const row of rows) this.#o.metrics.eventsPublished.inc({ type: row.type });
          this.#confirmed = rows.map((r) => r.seq);
          continue;
        }
        this.#onDrained?.();
        await this.#prune(true);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, IDLE_CHECK_MS);
          function done() {
            clearTimeout(timer);
            resolve();
          }
          wake = done;
          if (closed || signal.aborted) done();
        });
        wake = () => {};
      }
      if (closed && !signal.aborted) throw closed;
    } finally {
      off();
      signal.removeEventListener("abort", onAbort);
      await conn.close().catch(() => {});
    }
  }

  /**
   * Records the confirmed events as sent, retrying (with the connection kept) until the index
   * takes the write: a full disk must not make them unsent, to be published again.
   */
  async #markConfirmed(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        await this.#o.index.markSent(this.#confirmed, this.#clock.now());
        if (attempt > 0) {
          this.#log.info("confirmed events marked sent", {
            events: this.#confirmed.length,
            attempts: attempt + 1,
          });
        }
        this.#confirmed = [];
        return;
      } catch (e) {
        this.#o.metrics.publishFailures.inc();
        if (attempt === 0) {
          this.#log.warn("events the broker confirmed cannot be marked sent: retrying, not republishing", {
            events: this.#confirmed.length,
            error: e,
          });
        }
        await sleep(backoffMs(attempt + 1, 250, 5000), signal);
      }
    }
  }

  #publish(channel: ConfirmChannel, row: EventRow): void {
    const routingKey = this.#o.exchangeType === "topic" ? `storage.${row.stream}.${row.type}` : "";
    channel.publish(this.#o.exchange, routingKey, Buffer.from(row.body), {
      persistent: true,
      contentType: "application/json",
      messageId: row.id,
      timestamp: Math.floor(row.created_ms / 1000),
      type: row.type,
    });
  }

  async #prune(sentOnly: boolean): Promise<void> {
    if (this.#clock.now() - this.#lastPrune < PRUNE_EVERY_MS) return;
    this.#lastPrune = this.#clock.now();
    try {
      const deleted = await this.#o.index.pruneEvents(this.#clock.now() - this.#o.retentionMs, sentOnly);
      if (deleted > 0) this.#log.info("outbox pruned", { deleted, sentOnly });
    } catch (e) {
      // Pruning can wait for the next round (a full disk); it must not cost the broker connection.
      this.#log.warn("outbox not pruned", { error: e });
    }
  }
}
