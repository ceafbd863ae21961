import { join } from "node:path";
import { type Clock, systemClock } from "../src/runtime/clock.ts";
import type { Behavior } from "../src/runtime/actor.ts";
import { backoffMs } from "../src/runtime/backoff.ts";
import { logger } from "../src/runtime/log.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { ArchiveError } from "../src/store/archive/s3.ts";
import type { ChunkIndex, UploadRow } from "../src/store/index/chunk_index.ts";
import type { IndexChanges } from "../src/store/index/index_changes.ts";
import type { Leases } from "../src/store/leases.ts";

/** The archive as /healthz shows it. Owner: the uploader. */
export interface ArchiveStatus {
  /** "off": no ARCHIVE_URL; "failing": the last attempt failed. */
  state: "off" | "ok" | "failing";
  lastError: string | null;
}

/** What the uploader needs of the S3 client (src/store/archive/s3.ts). */
export interface ArchiveTarget {
  upload(
    key: string,
    path: string,
    signal: AbortSignal,
    onBytes: (n: number) => void,
  ): Promise<{ etag: string; bytes: number }>;
}

export interface UploaderOptions {
  index: ChunkIndex;
  /** A chunk closed or a clip saved: an upload is usually waiting. */
  changes: IndexChanges;
  leases: Leases;
  archive: ArchiveTarget;
  storagePath: string;
  uploadPath: string;
  /** Cap of the retry backoff (RECONNECT_MAX_SECONDS). */
  retryMaxMs: number;
  metrics: Metrics;
  status: ArchiveStatus;
  clock?: Clock;
}

/** With nothing due, the queue is looked at again after this (a retry's time may come meanwhile). */
const IDLE_CHECK_MS = 1000;

/**
 * Uploads what the index queued (every completed chunk, every saved clip) to the archive, oldest
 * first, one at a time: each is verified in the bucket before its row says it is archived, in one
 * transaction with the chunk's `archive_key`. A failure is retried with capped backoff and jitter,
 * and counted by reason; a file gone before its upload is counted as a loss, never retried.
 * Recording never waits on it: it only reads closed files, under a lease so the janitor leaves them
 * until the upload ends.
 */
export class Uploader implements Behavior<never> {
  #o: UploaderOptions;
  #clock: Clock;
  #log = logger("uploader");
  /** Failed attempts in a row: one warning an episode, one line when uploads pass again. */
  #failing = 0;

  constructor(o: UploaderOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
  }

  receive(): void {}

  async run(signal: AbortSignal): Promise<void> {
    let wake = () => {};
    const off = this.#o.changes.listen(() => wake());
    try {
      while (!signal.aborted) {
        const u = await this.#o.index.nextUpload(this.#clock.now());
        if (u) {
          // After a failure the whole queue waits out its backoff: an outage fails every file alike.
          await sleep(await this.#attempt(u, signal), signal);
          continue;
        }
        const due = await this.#o.index.nextUploadDue();
        const wait = due === null
          ? IDLE_CHECK_MS
          : Math.min(IDLE_CHECK_MS, Math.max(0, due - this.#clock.now()));
        const stop = new AbortController();
        wake = () => stop.abort();
        const onAbort = () => stop.abort();
        signal.addEventListener("abort", onAbort, { once: true });
        await sleep(wait, stop.signal);
        signal.removeEventListener("abort", onAbort);
        wake = () => {};
      }
    } finally {
      off();
    }
  }

  /** Uploads `u`; returns how long to wait before the next attempt (0 unless it failed). */
  async #attempt(u: UploadRow, signal: AbortSignal): Promise<number> {
    const { index, metrics, status } = this.#o;
    const path = join(u.kind === "chunk" ? this.#o.storagePath : this.#o.uploadPath, u.path);
    const release = u.kind === "chunk" ? this.#o.leases.take([u.path]) : () => {};
    try {
      const size = await Deno.stat(path).then((s) => s.size, (e) => {
        if (e instanceof Deno.errors.NotFound) return null;
        throw e;
      });
      if (size === null) {
        await index.uploadLost(u.kind, u.path, "the file was gone before it was uploaded");
        metrics.archiveLosses.inc({ kind: u.kind });
        this.#log.warn("not archived: the file was gone before its upload", { kind: u.kind, path: u.path });
        return 0;
      }
      const started = this.#clock.monotonic();
      const { etag, bytes } = await this.#o.archive.upload(
        u.key,
        path,
        signal,
        (n) => metrics.archiveBytes.inc(n),
      );
      await index.uploadDone(u, this.#clock.now());
      metrics.archiveObjects.inc({ kind: u.kind });
      if (this.#failing > 0) {
        this.#log.info("uploads pass again", { failedAttempts: this.#failing });
        this.#failing = 0;
      }
      status.state = "ok";
      status.lastError = null;
      this.#log.info("archived", {
        kind: u.kind,
        path: u.path,
        key: u.key,
        bytes,
        etag,
        ms: Math.round(this.#clock.monotonic() - started),
      });
      return 0;
    } catch (e) {
      if (signal.aborted) return 0; // stopping: the row stays queued for the next start
      const message = e instanceof Error ? e.message : String(e);
      const reason = failureReason(e);
      metrics.archiveFailures.inc({ reason });
      status.state = "failing";
      status.lastError = `${reason}: ${message}`;
      const waitMs = backoffMs(u.attempts + 1, 1000, this.#o.retryMaxMs);
      if (this.#failing++ === 0) {
        this.#log.warn("upload failed: retrying with backoff", {
          key: u.key,
          reason,
          error: message,
          waitMs,
        });
      } else {
        this.#log.debug("upload failed again", { key: u.key, reason, error: message, waitMs });
      }
      await index.uploadFailed(u, status.lastError, this.#clock.now() + waitMs);
      return waitMs;
    } finally {
      release();
    }
  }
}

/** A failure's reason for `storage_archive_failures_total`. */
export function failureReason(e: unknown): string {
  if (e instanceof ArchiveError) return e.reason;
  const err = e as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = err?.$metadata?.httpStatusCode;
  if (status) return `http_${status}`;
  // The SDK names a reset connection a TimeoutError too: the code says which it was.
  if (["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH", "ENOTFOUND"].includes(err?.code ?? "")) {
    return "unreachable";
  }
  if (err?.name === "TimeoutError" || err?.code === "ETIMEDOUT") return "timeout";
  return "other";
}
