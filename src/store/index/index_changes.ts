import type { IndexerMsg } from "../../record/messages.ts";

/** What changed a stream's rows: the indexer message applied, or "event" (an event appended alone). */
export type ChangeKind = IndexerMsg["type"] | "event";

/**
 * The index's change bus: tells listeners that a stream's rows changed (a fragment written, a
 * chunk closed, a session ended), so an async save waits for the video it needs, the janitor
 * runs after a close and the publisher wakes for a new event, instead of polling. Not to be
 * confused with the storage events of the outbox (`src/publish/envelope.ts`).
 *
 * @example
 * const off = changes.listen((stream) => stream === "default" && check());
 * changes.changed("default", "chunk-closed");
 */
export class IndexChanges {
  #listeners = new Set<(stream: string, kind: ChangeKind) => void>();

  listen(listener: (stream: string, kind: ChangeKind) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  changed(stream: string, kind: ChangeKind = "event"): void {
    for (const l of [...this.#listeners]) l(stream, kind);
  }
}
