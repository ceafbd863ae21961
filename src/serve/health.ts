import type { ActorHealth } from "../runtime/supervisor.ts";

/** The publisher's view of the broker. Owner: the publisher. */
export interface BrokerStatus {
  /** "off" when AMQP_URL is empty: events are recorded in the outbox, not published. */
  state: "off" | "connecting" | "connected" | "disconnected";
  lastError: string | null;
}

/** One stream's source: its relay connection, camera or RTSP session. Owner: the actor that reads it. */
export interface StreamStatus {
  state: "connecting" | "connected" | "disconnected";
  /** Wall-clock ms of the last state change. */
  since: number;
  /** When it was last connected or first tried, while it is not connected; null while connected. */
  downSince: number | null;
  /** Why it is in this state (the close, the timeout, the URL connected to). */
  reason: string;
  /** Wall-clock ms of the last video message, if any came. */
  lastDataMs: number | null;
}

/** The stream's source is now in `state`, for `reason` (its owner's only way to change it). */
export function setStreamState(
  s: StreamStatus,
  state: StreamStatus["state"],
  reason: string,
  now: number,
): void {
  s.state = state;
  s.since = now;
  s.reason = reason;
  s.downSince = state === "connected" ? null : s.downSince ?? now;
}

/** A new stream's status: not yet connected, down since `now`. */
export function streamStatus(now: number): StreamStatus {
  return { state: "connecting", since: now, downSince: now, reason: "starting", lastDataMs: null };
}

/**
 * Faults an actor has seen begin and not yet seen end (a full disk), by name. Each name has one
 * owner, the actor that sets and clears it.
 */
export class Conditions {
  #faults = new Map<string, { since: number; detail: string }>();

  /** The fault `name` holds (its start is kept if it already did). */
  set(name: string, detail: string, now = Date.now()): void {
    const held = this.#faults.get(name);
    this.#faults.set(name, { since: held?.since ?? now, detail });
  }

  /** True if the fault held. */
  clear(name: string): boolean {
    return this.#faults.delete(name);
  }

  list(): { name: string; since: number; detail: string }[] {
    return [...this.#faults].map(([name, f]) => ({ name, ...f }));
  }
}

export interface HealthInput {
  now: number;
  /** RECORDER_ID, and the index's engine: which recorder of a fleet answers, and where its index is. */
  recorder: string;
  index: "sqlite" | "postgres";
  actors: ActorHealth[];
  broker: BrokerStatus;
  outbox: { depth: number; oldestMs: number | null };
  /** The archive's state and upload queue (state "off": no ARCHIVE_URL). */
  archive: {
    state: "off" | "ok" | "failing";
    lastError: string | null;
    depth: number;
    oldestMs: number | null;
  };
  streams: Map<string, StreamStatus>;
  conditions: Conditions;
  /** A stream down longer than this is a fault (STREAM_TIMEOUT_SECONDS): shorter is a reconnect. */
  streamTimeoutMs: number;
}

/** An event unsent for this long is a fault, while a broker is configured. */
export const OUTBOX_AGE_DEGRADED_S = 60;
/** A file waiting this long for the archive is a fault (a small uplink takes minutes, not this). */
export const ARCHIVE_AGE_DEGRADED_S = 900;

/**
 * The /healthz answer: "down" (503) when an actor is not running; "degraded" (200) with every
 * reason when recording or publishing is impaired; "ok" otherwise. Pure: the caller gathers the
 * facts and the clock.
 */
export function healthReport(h: HealthInput): { status: number; body: Record<string, unknown> } {
  const age = (ms: number | null) => ms === null ? null : Math.round((h.now - ms) / 100) / 10;
  const reasons: string[] = [];
  for (const a of h.actors) {
    if (a.state !== "running") {
      reasons.push(`actor ${a.actor}${a.stream ? ` (${a.stream})` : ""} is ${a.state}`);
    }
  }
  const down = reasons.length > 0;
  const outboxAge = age(h.outbox.oldestMs) ?? 0;
  if (h.broker.state !== "off") {
    if (h.broker.state !== "connected") reasons.push(`broker ${h.broker.state}`);
    if (outboxAge > OUTBOX_AGE_DEGRADED_S) {
      reasons.push(`oldest unsent event is ${Math.round(outboxAge)} s old`);
    }
  }
  const archiveAge = age(h.archive.oldestMs) ?? 0;
  if (h.archive.state !== "off" && archiveAge > ARCHIVE_AGE_DEGRADED_S) {
    reasons.push(
      `oldest file waiting for the archive is ${Math.round(archiveAge)} s old${
        h.archive.lastError ? ` (last error: ${h.archive.lastError})` : ""
      }`,
    );
  }
  const streams = [...h.streams].map(([stream, s]) => {
    if (s.downSince !== null && h.now - s.downSince > h.streamTimeoutMs) {
      reasons.push(
        `stream ${stream} not connected for ${Math.round((h.now - s.downSince) / 1000)} s: ${s.reason}`,
      );
    }
    return {
      stream,
      state: s.state,
      since_seconds: age(s.since),
      reason: s.reason,
      last_data_age_seconds: age(s.lastDataMs),
    };
  });
  const conditions = h.conditions.list().map((c) => {
    reasons.push(c.detail);
    return { name: c.name, since_seconds: age(c.since), detail: c.detail };
  });
  return {
    status: down ? 503 : 200,
    body: {
      status: down ? "down" : reasons.length > 0 ? "degraded" : "ok",
      recorder: h.recorder,
      index: h.index,
      reasons,
      actors: h.actors,
      streams,
      conditions,
      broker: h.broker,
      outbox: { depth: h.outbox.depth, oldest_age_seconds: outboxAge },
      archive: {
        state: h.archive.state,
        last_error: h.archive.lastError,
        queue: { depth: h.archive.depth, oldest_age_seconds: archiveAge },
      },
    },
  };
}
