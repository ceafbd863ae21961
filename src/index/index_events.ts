/**
 * Tells waiters that a stream's index rows changed (a fragment written, a chunk closed, a session
 * ended), so an async save waits for the video it needs instead of sleeping.
 *
 * @example
 * const off = events.listen((stream) => stream === "default" && check());
 * events.changed("default");
 */
export class IndexEvents {
  #listeners = new Set<(stream: string) => void>();

  listen(listener: (stream: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  changed(stream: string): void {
    for (const l of [...this.#listeners]) l(stream);
  }
}
