/** A chunk as the retention plan sees it. */
export interface RetainedChunk {
  path: string;
  start_ms: number;
  end_ms: number;
  bytes: number;
  status: string;
  /** Where the archive holds its copy; null: not archived (yet). */
  archive_key: string | null;
}

export type DeletionReason = "age" | "disk-floor" | "size";

export interface RetentionPolicy {
  /** Budget for chunks plus the index, in bytes; null: no size limit. */
  budgetBytes: number | null;
  /** Chunks that ended longer ago than this go; null: no age limit. */
  maxAgeMs: number | null;
  /** Below this much free space on the device, the oldest chunks go whatever the budget. */
  minFreeBytes: number;
  /** KEEP_LOCAL_UNTIL_ARCHIVED: size and age delete only archived chunks; the disk floor any. */
  keepUntilArchived: boolean;
}

export interface RetentionState {
  now: number;
  /** Bytes on disk counted against the budget: chunk files (open ones included) and the index. */
  usageBytes: number;
  /** Free bytes on the storage device. */
  freeBytes: number;
  /** Chunks a clip is reading: they stay until the lease ends. */
  leased: (path: string) => boolean;
}

/** Chunks that may be deleted: closed ones. An open chunk is never deleted. */
const DELETABLE = new Set(["complete", "recovered"]);

/**
 * Chooses the chunks to delete from `oldest` (chunks sorted oldest first across streams): those past
 * the age limit, then as many as bring free space back over the floor, then as many as bring usage
 * under the budget; with `keepUntilArchived`, only archived ones but for the disk floor (each result
 * says whether it was archived: one that was not is a loss). Pure; the caller sums usage and
 * fetches the oldest chunks (the index does both).
 *
 * @example
 * const doomed = planDeletions(oldest, { budgetBytes: 20 * 2 ** 30, maxAgeMs: null, minFreeBytes: 2 ** 30, keepUntilArchived: false }, state);
 */
export function planDeletions(
  oldest: RetainedChunk[],
  policy: RetentionPolicy,
  state: RetentionState,
): { path: string; reason: DeletionReason; bytes: number; archived: boolean }[] {
  const sorted = [...oldest].sort((a, b) => a.start_ms - b.start_ms);
  let usage = state.usageBytes;
  let free = state.freeBytes;
  const out: { path: string; reason: DeletionReason; bytes: number; archived: boolean }[] = [];
  for (const c of sorted) {
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
    const archived = c.archive_key !== null;
    if (policy.keepUntilArchived && !archived && reason !== "disk-floor") continue;
    out.push({ path: c.path, reason, bytes: c.bytes, archived });
    usage -= c.bytes;
    free += c.bytes;
  }
  return out;
}
