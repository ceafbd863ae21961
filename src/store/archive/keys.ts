import type { ArchiveKeys } from "../index/chunk_index.ts";

/** ARCHIVE_URL's parts: `s3://bucket/prefix`. */
export interface ArchiveLocation {
  bucket: string;
  /** Empty, or ends with "/". */
  prefix: string;
}

/** An S3-compatible bucket that completed chunks and saved clips are uploaded to (docs/fleet.md). */
export interface ArchiveConfig extends ArchiveLocation {
  /** AWS_ENDPOINT_URL (an S3-compatible server); null: AWS itself. */
  endpoint: string | null;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string | null;
  /** AWS_S3_FORCE_PATH_STYLE: `host/bucket/key` rather than `bucket.host/key` (local servers). */
  forcePathStyle: boolean;
  /** ARCHIVE_BANDWIDTH_KBPS in bytes a second; null: unlimited. */
  bytesPerSecond: number | null;
}

/**
 * Reads `s3://bucket[/prefix]`; null when it is not one (the caller names the variable).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseArchiveUrl("s3://fleet/skyreel"), { bucket: "fleet", prefix: "skyreel/" });
 * assert.equal(parseArchiveUrl("https://fleet"), null);
 * ```
 */
export function parseArchiveUrl(raw: string): ArchiveLocation | null {
  const m = raw.match(/^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/);
  if (!m) return null;
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket: m[1], prefix: prefix ? `${prefix}/` : "" };
}

/**
 * Where each file goes in the bucket: `<prefix><recorder>/<chunk path>` (the chunk's path under
 * STORAGE_PATH, session and stream folders included) and `<prefix><recorder>/clips/<clip>` (its
 * path under UPLOAD_PATH). A recorder's objects are under its own name, as its rows are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const keys = archiveKeys({ bucket: "fleet", prefix: "skyreel/" });
 * assert.equal(keys.keyOf("gs-1", "chunk", "20261121_140210/video_segments/chunk_0001.mp4"),
 *   "skyreel/gs-1/20261121_140210/video_segments/chunk_0001.mp4");
 * assert.equal(keys.keyOf("gs-1", "clip", "tag=a/default_2026-11-21_14-02-10.mp4"),
 *   "skyreel/gs-1/clips/tag=a/default_2026-11-21_14-02-10.mp4");
 * ```
 */
export function archiveKeys(at: ArchiveLocation): ArchiveKeys {
  return {
    keyOf: (recorder, kind, path) => `${at.prefix}${recorder}/${kind === "clip" ? "clips/" : ""}${path}`,
  };
}
