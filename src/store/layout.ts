import { dirname, join } from "node:path";

/** Where a stream's sessions live: directly under STORAGE_PATH with one stream, else under its name. */
export interface Layout {
  root: string;
  multiStream: boolean;
}

/**
 * A session id: the UTC time of its first frame, `YYYYMMDD_HHMMSS`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkPath, parseChunkPath, sessionIdFor } from "./layout.ts";
 * const id = sessionIdFor(Date.UTC(2026, 10, 21, 14, 2, 10));
 * assert.equal(id, "20261121_140210");
 * assert.deepEqual(parseChunkPath(chunkPath(id, 7)), { stream: undefined, sessionId: id, index: 7 });
 * ```
 */
export function sessionIdFor(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace(/-|:/g, "").replace("T", "_");
}

/** STORAGE_PATH/tmp: clips being written by save, emptied at every start; no stream may take the name. */
export const TMP_DIR = "tmp";

/** The entries of `dir`, none if it does not exist. */
export async function entriesOf(dir: string): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(dir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** A session's folder, relative to the storage root. */
export function sessionDir(layout: Layout, stream: string, sessionId: string): string {
  return layout.multiStream ? join(stream, sessionId) : sessionId;
}

/** A session's chunks folder, relative to the storage root: `<session>/video_segments`. */
export function chunksDir(sessionDir: string): string {
  return join(sessionDir, "video_segments");
}

/** A chunk's file, relative to the storage root: `<session>/video_segments/chunk_0001.mp4`. */
export function chunkPath(sessionDir: string, index: number): string {
  return join(chunksDir(sessionDir), `chunk_${String(index).padStart(4, "0")}.mp4`);
}

/**
 * A chunk's thumbnail (a JPEG of its first keyframe), beside it: `chunk_0001.mp4` → `chunk_0001.jpg`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { thumbnailPath } from "./layout.ts";
 * assert.equal(thumbnailPath("s/video_segments/chunk_0001.mp4"), "s/video_segments/chunk_0001.jpg");
 * ```
 */
export function thumbnailPath(chunk: string): string {
  return chunk.replace(/\.mp4$/, ".jpg");
}

const CHUNK_NAME = /^chunk_(?<index>\d+)\.mp4$/;
const CHUNK_FILE = /^(?:(?<stream>[^/]+)\/)?(?<session>[^/]+)\/video_segments\/(?<name>[^/]+)$/;

/** The number of a chunk file's name written by `chunkPath` (`chunk_0001.mp4`: 1), or null. */
export function parseChunkName(name: string): number | null {
  const m = CHUNK_NAME.exec(name);
  return m?.groups ? Number(m.groups.index) : null;
}

/** The parts of a chunk path written by `chunkPath`, or null for any other file. */
export function parseChunkPath(rel: string): { stream?: string; sessionId: string; index: number } | null {
  const m = CHUNK_FILE.exec(rel);
  const index = m?.groups ? parseChunkName(m.groups.name) : null;
  if (index === null) return null;
  return { stream: m!.groups!.stream, sessionId: m!.groups!.session, index };
}

/** One past the highest chunk number in a session's chunks folder (absolute), 1 if it has none. */
export async function nextChunkIndex(dir: string): Promise<number> {
  let max = 0;
  for (const entry of await entriesOf(dir)) max = Math.max(max, parseChunkName(entry.name) ?? 0);
  return max + 1;
}

/** fsync a directory, so that names created or renamed in it survive a power cut. */
export async function fsyncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/**
 * Replaces a file atomically: readers see the old or the new content, never a part.
 *
 * @example
 * await writeFileAtomic("rec/20261121_140210/metadata.json", JSON.stringify(meta));
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      await writeAll(file, new TextEncoder().encode(text));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Writes all of `bytes` to a file or a socket (a single write may be short). */
export async function writeAll(
  file: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await file.write(bytes.subarray(at));
}
