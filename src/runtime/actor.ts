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
  /** The signal the waiter may be woken by; the signals a listener is on. */
  #waiterSignal: AbortSignal | undefined;
  #listening = new WeakSet<AbortSignal>();
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

  /** The next message if one is queued, without waiting. */
  poll(): M | undefined {
    if (this.size === 0) return undefined;
    const msg = this.#items[this.#head];
    this.#items[this.#head++] = undefined as M;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    this.#bytes -= this.sizeOf(msg);
    return msg;
  }

  /** The next message; undefined once the mailbox is closed and empty, or `signal` aborts. */
  take(signal?: AbortSignal): Promise<M | undefined> {
    if (this.size > 0) return Promise.resolve(this.poll());
    if (this.#closed || signal?.aborted) return Promise.resolve(undefined);
    // One abort listener per signal (an actor's life), not one per wait.
    if (signal && !this.#listening.has(signal)) {
      this.#listening.add(signal);
      signal.addEventListener("abort", () => {
        if (this.#waiterSignal !== signal) return;
        const w = this.#waiter;
        this.#waiter = null;
        w?.(undefined);
      }, { once: true });
    }
    this.#waiterSignal = signal;
    return new Promise((resolve) => (this.#waiter = resolve));
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
