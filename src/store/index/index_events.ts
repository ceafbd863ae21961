/**
 * Tells waiters that a stream's index rows changed (a fragment written, a chunk closed, a session
 * ended), so an async save waits for the video it needs instead of sleeping.
 *
 * @example
 * const off = events.listen((stream) => stream === "default" && check());
 * events.changed("default");
 */
export class IndexEvents {
  #listeners = new Set<(stream: string, kind: string) => void>();

  listen(listener: (stream: string, kind: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** `kind` is the indexer message that changed it (e.g. "chunk-closed"), or "event". */
  changed(stream: string, kind = "event"): void {
    for (const l of [...this.#listeners]) l(stream, kind);
  }
}
