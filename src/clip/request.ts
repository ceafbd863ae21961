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

const MAX_LABEL = 100;

/** A label that becomes part of a path: no separators, no "..", no NUL, at most 100 characters. */
export function pathLabel(field: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw new ApiError(400, `"${field}" must be a non-empty string`);
  }
  if (value.length > MAX_LABEL) throw new ApiError(400, `"${field}" is longer than ${MAX_LABEL} characters`);
  if (/[\/\\\0]/.test(value) || value.includes("..")) {
    throw new ApiError(400, `"${field}" must not contain path separators, ".." or NUL`);
  }
  return value;
}

/** Optional metadata and tags of a save, validated for use in file and folder names. */
export function saveLabels(fields: Record<string, unknown>): { metadata: string | null; tags: string[] } {
  const metadata = fields.metadata === undefined || fields.metadata === null
    ? null
    : pathLabel("metadata", fields.metadata);
  const raw = fields.tags ?? [];
  if (!Array.isArray(raw)) throw new ApiError(400, `"tags" must be an array of strings`);
  const tags = raw.map((t, i) => pathLabel(`tags[${i}]`, t)).sort();
  return { metadata, tags };
}
