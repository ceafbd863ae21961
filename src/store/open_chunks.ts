/**
 * Chunk files that live writers hold open. Recovery after an indexer restart must not cut the tail
 * of a chunk that is still being written; this is the one structure writers share with it.
 */
export class OpenChunks {
  #paths = new Set<string>();

  add(path: string): void {
    this.#paths.add(path);
  }

  delete(path: string): void {
    this.#paths.delete(path);
  }

  has(path: string): boolean {
    return this.#paths.has(path);
  }
}
