/** A chunk as the retention plan sees it. */
export interface RetainedChunk {
  path: string;
  start_ms: number;
  end_ms: number;
  bytes: number;
  status: string;
}

export type DeletionReason = "age" | "disk-floor" | "size";

export interface RetentionPolicy {
  /** Budget for chunks plus the index, in bytes; null: no size limit. */
  budgetBytes: number | null;
  /** Chunks that ended longer ago than this go; null: no age limit. */
  maxAgeMs: number | null;
  /** Below this much free space on the device, the oldest chunks go whatever the budget. */
  minFreeBytes: number;
}

export interface RetentionState {
  now: number;
  /** Bytes of the index files, counted against the budget. */
  indexBytes: number;
  /** Free bytes on the storage device. */
  freeBytes: number;
  /** Chunks a clip is reading: they stay until the lease ends. */
  leased: (path: string) => boolean;
}

/** Chunks that count against the budget: everything still on disk. */
const ON_DISK = new Set(["recording", "complete", "recovered", "deleting"]);
/** Chunks that may be deleted: closed ones. An open chunk is never deleted. */
const DELETABLE = new Set(["complete", "recovered"]);

/**
 * Chooses the chunks to delete, oldest first across streams: those past the age limit, then as many
 * as bring free space back over the floor, then as many as bring usage under the budget. Pure.
 *
 * @example
 * const doomed = planDeletions(rows, { budgetBytes: 20 * 2 ** 30, maxAgeMs: null, minFreeBytes: 2 ** 30 }, state);
 */
export function planDeletions(
  chunks: RetainedChunk[],
  policy: RetentionPolicy,
  state: RetentionState,
): { path: string; reason: DeletionReason; bytes: number }[] {
  const onDisk = chunks.filter((c) => ON_DISK.has(c.status)).sort((a, b) => a.start_ms - b.start_ms);
  let usage = state.indexBytes + onDisk.reduce((n, c) => n + c.bytes, 0);
  let free = state.freeBytes;
  const out: { path: string; reason: DeletionReason; bytes: number }[] = [];
  for (const c of onDisk) {
    if (!DELETABLE.has(c.status) || state.leased(c.path)) continue;
    const reason: DeletionReason | null = policy.maxAgeMs !== null && c.end_ms < state.now - policy.maxAgeMs
      ? "age"
      : free < policy.minFreeBytes
      ? "disk-floor"
      : policy.budgetBytes !== null && usage > policy.budgetBytes
      ? "size"
      : null;
    if (!reason) {
      // Oldest first: once a chunk survives every rule, so do the newer ones but for age.
      if (policy.maxAgeMs === null) break;
      continue;
    }
    out.push({ path: c.path, reason, bytes: c.bytes });
    usage -= c.bytes;
    free += c.bytes;
  }
  return out;
}
