import { ACCEPTED_FORMATS, parseTimestamp } from "./timestamps.ts";

/** A refused request: the HTTP status and a message naming the field. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly details: Record<string, unknown> = {}) {
    super(message);
  }
}

/** The time range of a clip request, validated: `from` before `to`, both in an accepted format. */
export function clipRange(fields: Record<string, unknown>): { from: number; to: number } {
  const time = (name: "from" | "to") => {
    const value = fields[name];
    if (value === undefined || value === null || value === "") throw new ApiError(400, `missing "${name}"`);
    const ms = typeof value === "string" ? parseTimestamp(value) : null;
    if (ms === null) {
      throw new ApiError(
        400,
        `"${name}" is not a timestamp: ${JSON.stringify(value)}; use ${ACCEPTED_FORMATS}`,
      );
    }
    return ms;
  };
  const from = time("from"), to = time("to");
  if (from >= to) throw new ApiError(400, `"from" must be before "to"`);
  return { from, to };
}

/** Bytes (UTF-8) of `metadata`, which ends the clip's file name. */
const MAX_METADATA_BYTES = 100;
/** Bytes (UTF-8) of one tag, a folder name `tag=<tag>`. */
const MAX_TAG_BYTES = 64;
/** Tags of one save: each is a folder level, so this bounds the depth under UPLOAD_PATH. */
export const MAX_TAGS = 3;

/**
 * A label that becomes part of a path: no separators, no "..", no NUL or other control
 * character, at most `maxBytes` bytes of UTF-8 (a file name component holds 255).
 */
export function pathLabel(field: string, value: unknown, maxBytes: number): string {
  if (typeof value !== "string" || value === "") {
    throw new ApiError(400, `"${field}" must be a non-empty string`);
  }
  const bytes = new TextEncoder().encode(value).length;
  if (bytes > maxBytes) throw new ApiError(400, `"${field}" is ${bytes} bytes of UTF-8; at most ${maxBytes}`);
  // deno-lint-ignore no-control-regex
  if (/[\/\\\x00-\x1f\x7f]/.test(value) || value.includes("..")) {
    throw new ApiError(400, `"${field}" must not contain path separators, "..", or control characters`);
  }
  return value;
}

/** Optional metadata and tags of a save, validated for use in file and folder names. */
export function saveLabels(fields: Record<string, unknown>): { metadata: string | null; tags: string[] } {
  const metadata = fields.metadata === undefined || fields.metadata === null
    ? null
    : pathLabel("metadata", fields.metadata, MAX_METADATA_BYTES);
  const raw = fields.tags ?? [];
  if (!Array.isArray(raw)) throw new ApiError(400, `"tags" must be an array of strings`);
  if (raw.length > MAX_TAGS) {
    throw new ApiError(400, `"tags" has ${raw.length} entries; at most ${MAX_TAGS} (each is a folder level)`);
  }
  const tags = raw.map((t, i) => pathLabel(`tags[${i}]`, t, MAX_TAG_BYTES)).sort();
  return { metadata, tags };
}
