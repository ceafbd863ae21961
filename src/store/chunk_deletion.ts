import { dirname, join } from "node:path";
import type { StorageEvent } from "../publish/envelope.ts";
import type { ChunkIndex } from "./index/chunk_index.ts";
import { fsyncDir } from "./layout.ts";

/**
 * Deletes a chunk so that a crash at any point leaves a state recovery can finish: the row becomes
 * `deleting`, the file is unlinked (already gone is fine) and its folder fsync'd, then the row
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
  await Deno.remove(join(root, path)).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await fsyncDir(dirname(join(root, path))).catch(() => {});
  await index.setStatus(path, "deleted", event);
}
