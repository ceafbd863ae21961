import { type Clock, systemClock } from "../src/runtime/clock.ts";
import { statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ActorRef, Behavior } from "../src/runtime/actor.ts";
import { storageEvent } from "../src/publish/envelope.ts";
import { type ChunkIndex, playable } from "../src/store/index/chunk_index.ts";
import type { IndexChanges } from "../src/store/index/index_changes.ts";
import type { Leases } from "../src/store/leases.ts";
import { logger } from "../src/runtime/log.ts";
import { type MetadataSettings, writeSessionMetadata } from "../src/store/metadata.ts";
import type { Metrics } from "../src/runtime/metrics.ts";
import { planDeletions, type RetentionPolicy } from "../src/store/retention.ts";
import { sleep } from "../src/runtime/sleep.ts";
import { fsyncDir } from "../src/store/layout.ts";
import { deleteChunk } from "../src/store/chunk_deletion.ts";
import { audit } from "../src/store/recovery.ts";
import type { IndexerMsg } from "../src/record/messages.ts";

export type JanitorMsg = { type: "check" };

/** Chunks considered per pass when something must go; a pass that uses them all asks for another. */
const BATCH = 1000;
/** How often the janitor walks the storage folder to check the index against the files (first: its first pass). */
const WALK_EVERY_MS = 10 * 60_000;

export interface JanitorOptions {
  index: ChunkIndex;
  changes: IndexChanges;
  leases: Leases;
  root: string;
  policy: RetentionPolicy;
  intervalMs: number;
  settings: MetadataSettings;
  metrics: Metrics;
  self: ActorRef<JanitorMsg>;
  /** Where the walk's findings go. */
  indexer: ActorRef<IndexerMsg>;
  /** Wall-clock and monotonic time; the system's unless a test sets it. */
  clock?: Clock;
}

/**
 * Keeps storage within its budget, age limit and free-disk floor by deleting the oldest closed
 * chunks, never an open or leased one and never a saved clip (clips live outside STORAGE_PATH).
 * Runs after every chunk close and on a timer. A deletion is crash-safe: the row becomes `deleting`,
 * the file is unlinked and its folder fsync'd, then the row becomes `deleted` (kept, with its times)
 * together with its chunk_deleted event; recovery finishes a deletion a crash interrupted.
 */
export class Janitor implements Behavior<JanitorMsg> {
  #clock: Clock;
  #o: JanitorOptions;
  #log = logger("janitor");
  #off: () => void;
  #queued = false;
  #lastWalk = -Infinity;

  constructor(o: JanitorOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#off = o.changes.listen((_stream, kind) => kind === "chunk-closed" && this.#request());
  }

  async receive(): Promise<void> {
    this.#queued = false;
    await this.pass();
  }

  async run(signal: AbortSignal): Promise<void> {
    this.#request();
    while (!signal.aborted) {
      await sleep(this.#o.intervalMs, signal);
      this.#request();
    }
  }

  close(): void {
    this.#off();
  }

  #request(): void {
    if (!this.#queued) this.#queued = this.#o.self.send({ type: "check" });
  }

  /** One pass: plan from the index, delete, tidy folders and metadata. Returns the deleted paths. */
  async pass(): Promise<string[]> {
    const { index, root, metrics, policy } = this.#o;
    let usage = await index.usage() + await index.localBytes();
    const fs = statfsSync(root);
    const free = fs.bavail * fs.bsize;
    const pressure = (policy.budgetBytes !== null && usage > policy.budgetBytes) ||
      free < policy.minFreeBytes ||
      policy.maxAgeMs !== null;
    // The common case reads no row: the database summed the usage.
    const oldest = pressure ? await index.oldestClosed(BATCH) : [];
    const plan = planDeletions(oldest, policy, {
      now: this.#clock.now(),
      usageBytes: usage,
      freeBytes: free,
      leased: (p) => this.#o.leases.has(p),
    });
    const byPath = new Map(oldest.map((r) => [r.path, r]));
    const sessions = new Set<string>();
    for (const d of plan) {
      const row = byPath.get(d.path)!;
      await deleteChunk(
        index,
        root,
        d.path,
        storageEvent("chunk_deleted", row.stream, {
          session_id: row.session_id,
          index: row.idx,
          filename: d.path.split("/").at(-1),
          reason: d.reason,
        }),
      );
      if (index.archive && !d.archived) {
        // Its upload can never happen now: counted, and the queue told.
        await index.uploadLost("chunk", d.path, `deleted (${d.reason}) before it was archived`);
        metrics.archiveLosses.inc({ kind: "chunk" });
        this.#log.warn("chunk deleted before it was archived", { path: d.path, reason: d.reason });
      }
      metrics.chunksDeleted.inc({ reason: d.reason });
      metrics.bytesDeleted.inc({ reason: d.reason }, d.bytes);
      usage -= d.bytes;
      sessions.add(`${row.stream}\0${row.session_id}`);
      this.#log.info("chunk deleted", { path: d.path, reason: d.reason, bytes: d.bytes });
    }
    for (const key of sessions) {
      const [stream, sessionId] = key.split("\0");
      await this.#tidy(stream, sessionId);
    }
    metrics.storageUsed.set(usage);
    metrics.storageLimit.set(policy.budgetBytes ?? 0);
    if (plan.length === BATCH) this.#request(); // more than one batch to delete: go on
    if (this.#clock.now() - this.#lastWalk >= WALK_EVERY_MS) await this.#audit(usage);
    return plan.map((d) => d.path);
  }

  /**
   * Walks the files (in the background, never before recording starts): reports how far the
   * index's count of bytes is from what is on disk, and sends what the index does not say (files
   * gone, files without a row) to the indexer, which checks each again and applies it.
   */
  async #audit(indexed: number): Promise<void> {
    this.#lastWalk = this.#clock.now();
    const findings = await audit(this.#o.index, this.#o.root);
    if (findings.missing.length > 0 || findings.orphans.length > 0) {
      this.#log.warn("the files differ from the index: the indexer will check and apply", {
        missing: findings.missing.length,
        orphans: findings.orphans.length,
      });
      this.#o.indexer.send({ type: "audit", findings });
    }
    const onDisk = findings.onDiskBytes;
    const drift = onDisk - indexed;
    this.#o.metrics.usageDrift.set(drift);
    if (Math.abs(drift) > Math.max(100 * 2 ** 20, indexed / 100)) {
      this.#log.warn("the index's usage differs from the files", {
        indexedBytes: indexed,
        onDiskBytes: onDisk,
        drift,
      });
    }
  }

  /** Removes a session's folder once no chunk file is left in it, else rewrites its metadata.json. */
  async #tidy(stream: string, sessionId: string): Promise<void> {
    const { index, root } = this.#o;
    const session = await index.getSession(stream, sessionId);
    if (!session) return;
    const left = (await index.chunks({ stream, sessionId })).some(playable);
    if (!left && session.status === "ended") {
      await Deno.remove(join(root, session.dir), { recursive: true }).catch(() => {});
      await fsyncDir(dirname(join(root, session.dir))).catch(() => {});
      this.#log.info("empty session folder removed", { dir: session.dir });
    } else {
      await writeSessionMetadata(index, root, stream, sessionId, this.#o.settings, this.#clock.now());
    }
  }
}
