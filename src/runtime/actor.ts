/** The send side of an actor's mailbox. `send` returns false when the mailbox is full. */
export interface ActorRef<M> {
  send(msg: M): boolean;
}

const CONTROL_HEADROOM = 1024;

/**
 * A bounded FIFO mailbox, limited both in messages and in bytes (frames are large, ticks are not).
 * A refused message is the sender's to count: nothing is dropped silently here.
 *
 * @example
 * const box = new Mailbox<Msg>(256, 16 << 20, (m) => m.type === "frame" ? m.frame.data.length : 0);
 * if (!box.send(msg)) dropped++;
 * const next = await box.take();
 */
export class Mailbox<M> implements ActorRef<M> {
  #items: M[] = [];
  #head = 0;
  #bytes = 0;
  #waiter: ((m: M | undefined) => void) | null = null;
  #closed = false;

  constructor(
    readonly capacity: number,
    readonly maxBytes = Infinity,
    readonly sizeOf: (m: M) => number = () => 0,
  ) {}

  get size(): number {
    return this.#items.length - this.#head;
  }

  send(msg: M): boolean {
    if (this.#closed) return false;
    const cost = this.sizeOf(msg);
    // Control messages (no bytes) have headroom past a queue full of frames, so they still get through.
    const full = cost > 0
      ? this.size >= this.capacity || this.#bytes + cost > this.maxBytes
      : this.size >= this.capacity + CONTROL_HEADROOM;
    if (full) return false;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w(msg);
      return true;
    }
    this.#bytes += cost;
    this.#items.push(msg);
    return true;
  }

  /** The next message; undefined once the mailbox is closed and empty, or `signal` aborts. */
  take(signal?: AbortSignal): Promise<M | undefined> {
    if (this.size > 0) {
      const msg = this.#items[this.#head];
      this.#items[this.#head++] = undefined as M;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      this.#bytes -= this.sizeOf(msg);
      return Promise.resolve(msg);
    }
    if (this.#closed || signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const onAbort = () => {
        if (this.#waiter === wake) this.#waiter = null;
        resolve(undefined);
      };
      const wake = (m: M | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(m);
      };
      this.#waiter = wake;
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** No more messages are accepted; `take` drains what is queued, then returns undefined. */
  close(): void {
    this.#closed = true;
    const w = this.#waiter;
    this.#waiter = null;
    w?.(undefined);
  }
}

/** What an actor does with its messages; a thrown error or rejected `run` is a failure. */
export interface Behavior<M> {
  receive(msg: M): void | Promise<void>;
  /** Work beside the mailbox (a socket, a timer), until `signal` aborts. */
  run?(signal: AbortSignal): Promise<void>;
  /** Graceful stop, before the mailbox is drained (e.g. flush what is in progress). */
  stop?(): void | Promise<void>;
  /** Releases resources, after a stop or a failure. */
  close?(): void | Promise<void>;
}

/** How the supervisor starts an actor, and restarts it after a failure. */
export interface ActorSpec<M> {
  name: string;
  stream?: string;
  mailbox: Mailbox<M>;
  create(): Behavior<M> | Promise<Behavior<M>>;
  /** Runs after a restart, before the new instance takes messages (e.g. recovery). */
  afterRestart?(): void | Promise<void>;
}
