/**
 * Chunks that clip code is reading: the janitor leaves them until the lease ends. Counted, so
 * overlapping clips of the same chunk each hold it.
 *
 * @example
 * const release = leases.take(plan.chunks.map((c) => c.path));
 * try { await writeClip(); } finally { release(); }
 */
export class Leases {
  #held = new Map<string, number>();

  take(paths: string[]): () => void {
    for (const p of paths) this.#held.set(p, (this.#held.get(p) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const p of paths) {
        const n = (this.#held.get(p) ?? 1) - 1;
        if (n > 0) this.#held.set(p, n);
        else this.#held.delete(p);
      }
    };
  }

  has(path: string): boolean {
    return this.#held.has(path);
  }
}
