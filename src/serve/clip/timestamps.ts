/** What `from`/`to` accept, quoted in every timestamp error. */
export const ACCEPTED_FORMATS =
  "YYYY-MM-DD_HH-MM-SS (local time), YYYY-MM-DD_HH-MM-SSZ (UTC), or ISO 8601 such as 2026-11-21T14:02:10.500Z or 2026-11-21T16:02:10+02:00";

const COMPACT = /^(\d{4})-(\d{2})-(\d{2})_(\d{2})-(\d{2})-(\d{2})(Z?)$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * Parses a command timestamp to UTC epoch ms, or returns null if it is in none of the accepted
 * formats or names a time that does not exist (February 30th, a local time skipped by DST).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTimestamp } from "./timestamps.ts";
 * assert.equal(parseTimestamp("2026-11-21_14-02-10Z"), Date.UTC(2026, 10, 21, 14, 2, 10));
 * assert.equal(parseTimestamp("2026-11-21T14:02:10.5Z"), Date.UTC(2026, 10, 21, 14, 2, 10, 500));
 * ```
 */
export function parseTimestamp(text: string): number | null {
  const m = COMPACT.exec(text);
  if (m) {
    const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
    const date = m[7] ? new Date(Date.UTC(y, mo - 1, d, h, mi, s)) : new Date(y, mo - 1, d, h, mi, s);
    const parts = m[7]
      ? [
        date.getUTCFullYear(),
        date.getUTCMonth() + 1,
        date.getUTCDate(),
        date.getUTCHours(),
        date.getUTCMinutes(),
        date.getUTCSeconds(),
      ]
      : [
        date.getFullYear(),
        date.getMonth() + 1,
        date.getDate(),
        date.getHours(),
        date.getMinutes(),
        date.getSeconds(),
      ];
    return parts.every((p, i) => p === [y, mo, d, h, mi, s][i]) ? date.getTime() : null;
  }
  if (!ISO.test(text)) return null;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return null;
  // Date.parse rolls invalid days over (Feb 30 -> Mar 2): check the date part survived.
  const [y, mo, d] = text.slice(0, 10).split("-").map(Number);
  const probe = new Date(Date.UTC(y, mo - 1, d));
  return probe.getUTCMonth() === mo - 1 && probe.getUTCDate() === d ? ms : null;
}

/** `YYYY-MM-DD_HH-MM-SSZ`, the form responses give. */
export function formatCompact(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace("T", "_").replace(/:/g, "-") + "Z";
}

/** ISO 8601 with milliseconds, UTC. */
export function formatIso(ms: number): string {
  return new Date(ms).toISOString();
}
