import { dirname, join } from "node:path";
import type { StorageEvent } from "../publish/envelope.ts";
import type { ChunkIndex } from "./index/chunk_index.ts";
import { fsyncDir, thumbnailPath } from "./layout.ts";

/**
 * Deletes a chunk so that a crash at any point leaves a state recovery can finish: the row becomes
 * `deleting`, its thumbnail and then its file are unlinked (already gone is fine) and its folder fsync'd, then the row
 * becomes `deleted` (kept, with its times) in one transaction with its chunk_deleted event.
 *
 * @example
 * await deleteChunk(index, root, row.path, storageEvent("chunk_deleted", row.stream, data));
 */
export async function deleteChunk(
  index: ChunkIndex,
  root: string,
  path: string,
  event: StorageEvent,
): Promise<void> {
  await index.setStatus(path, "deleting");
  // Its thumbnail first: a crash between the two leaves the chunk, which a retry deletes again.
  for (const file of [thumbnailPath(path), path]) {
    await Deno.remove(join(root, file)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  await fsyncDir(dirname(join(root, path))).catch(() => {});
  await index.setStatus(path, "deleted", event);
}
