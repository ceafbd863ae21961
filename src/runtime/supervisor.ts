import { backoffMs } from "./backoff.ts";
import type { ActorSpec, Behavior } from "./actor.ts";
import { logger } from "./log.ts";
import { sleep } from "./sleep.ts";

export type ActorState = "starting" | "running" | "restarting" | "stopped" | "failed";

export interface ActorHealth {
  actor: string;
  stream?: string;
  state: ActorState;
  restarts: number;
  lastError: string | null;
}

export interface SupervisorOptions {
  /** More restarts than this within `windowMs` escalate to a shutdown with exit code 70. */
  maxRestarts: number;
  windowMs: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  onRestart?(actor: string, stream: string | undefined, error: unknown): void;
}

/** Exit code after an escalation: the process manager restarts the whole service. */
export const ESCALATION_EXIT_CODE = 70;

interface Cell {
  spec: ActorSpec<any>;
  behavior: Behavior<any> | null;
  state: ActorState;
  restarts: number;
  recent: number[];
  lastError: string | null;
  abort: AbortController;
  loop: Promise<void>;
  stopping: boolean;
}

/**
 * Runs actors one-for-one: a failed actor alone is restarted, after an exponential backoff, and
 * keeps its mailbox, so what was queued for it is not lost. Too many restarts in the window
 * escalate to a clean shutdown of everything and `exitCode` 70.
 *
 * @example
 * const sup = new Supervisor({ maxRestarts: 5, windowMs: 60_000 });
 * sup.register(writerSpec);
 * await sup.start();
 * const code = await sup.done;
 */
export class Supervisor {
  #cells: Cell[] = [];
  #opts: Required<Omit<SupervisorOptions, "onRestart">> & Pick<SupervisorOptions, "onRestart">;
  #log = logger("supervisor");
  #shutdown: Promise<void> | null = null;
  #life = new AbortController();
  #resolveDone!: (code: number) => void;
  exitCode = 0;
  /** Resolves with the exit code once every actor has stopped. */
  readonly done = new Promise<number>((r) => (this.#resolveDone = r));

  constructor(opts: SupervisorOptions) {
    this.#opts = { backoffBaseMs: 100, backoffMaxMs: 10_000, ...opts };
  }

  /** Adds an actor; actors start in registration order and stop in reverse order. */
  register<M>(spec: ActorSpec<M>): void {
    this.#cells.push({
      spec,
      behavior: null,
      state: "starting",
      restarts: 0,
      recent: [],
      lastError: null,
      abort: new AbortController(),
      loop: Promise.resolve(),
      stopping: false,
    });
  }

  async start(): Promise<void> {
    for (const cell of this.#cells) await this.#launch(cell);
  }

  health(): ActorHealth[] {
    return this.#cells.map((c) => ({
      actor: c.spec.name,
      stream: c.spec.stream,
      state: c.state,
      restarts: c.restarts,
      lastError: c.lastError,
    }));
  }

  /** Stops actors in reverse order, each after draining its mailbox. Idempotent. */
  shutdown(): Promise<void> {
    this.#shutdown ??= this.#stopAll();
    return this.#shutdown;
  }

  async #launch(cell: Cell): Promise<void> {
    cell.abort = new AbortController();
    cell.behavior = await cell.spec.create();
    cell.state = "running";
    const signal = cell.abort.signal;
    const behavior = cell.behavior;
    behavior.run?.(signal).catch((e) => this.#fail(cell, behavior, e));
    cell.loop = this.#receiveLoop(cell, behavior, signal);
  }

  async #receiveLoop(cell: Cell, behavior: Behavior<any>, signal: AbortSignal): Promise<void> {
    for (;;) {
      // A stopping actor ignores the abort: it drains its mailbox until closed and empty.
      const box = cell.spec.mailbox;
      const msg = box.poll() ?? await box.take(cell.stopping ? undefined : signal);
      if (msg === undefined) {
        if (cell.stopping || signal.aborted) return;
        continue;
      }
      try {
        // Awaited only when it is async: a queue of frames is drained without a promise each.
        const done = behavior.receive(msg);
        if (done) await done;
      } catch (e) {
        this.#fail(cell, behavior, e);
        return;
      }
    }
  }

  async #fail(cell: Cell, behavior: Behavior<any>, error: unknown): Promise<void> {
    if (cell.behavior !== behavior || cell.state !== "running") return; // already handled
    cell.state = "restarting";
    cell.abort.abort();
    await this.#closeQuietly(behavior);
    const name = cell.spec.name, stream = cell.spec.stream;
    for (;;) {
      cell.lastError = error instanceof Error ? error.message : String(error);
      if (cell.stopping || this.#shutdown) {
        cell.state = "failed";
        return;
      }
      const now = Date.now();
      cell.recent = cell.recent.filter((t) => now - t < this.#opts.windowMs);
      cell.recent.push(now);
      cell.restarts++;
      this.#opts.onRestart?.(name, stream, error);
      if (cell.recent.length > this.#opts.maxRestarts) {
        cell.state = "failed";
        this.#log.error("restart limit reached, shutting down", {
          failed: name,
          failedStream: stream,
          restarts: cell.recent.length,
          windowMs: this.#opts.windowMs,
          error: cell.lastError,
        });
        this.exitCode = ESCALATION_EXIT_CODE;
        this.shutdown();
        return;
      }
      // No jitter: one process's actors do not stampede a shared peer.
      const backoff = backoffMs(
        cell.recent.length,
        this.#opts.backoffBaseMs,
        this.#opts.backoffMaxMs,
        () => 1,
      );
      this.#log.warn("actor failed, restarting", {
        failed: name,
        failedStream: stream,
        error: cell.lastError,
        backoffMs: backoff,
        restarts: cell.restarts,
      });
      await sleep(backoff, this.#life.signal);
      if (this.#shutdown) {
        cell.state = "failed";
        return;
      }
      try {
        await cell.spec.afterRestart?.();
        await this.#launch(cell);
        this.#log.info("actor restarted", { restarted: name, restartedStream: stream });
        return;
      } catch (e) {
        error = e;
      }
    }
  }

  async #stopAll(): Promise<void> {
    this.#life.abort(); // wakes actors waiting out a restart backoff: they stay down
    for (const cell of [...this.#cells].reverse()) {
      cell.stopping = true;
      if (cell.state === "running" && cell.behavior) {
        try {
          await cell.behavior.stop?.();
        } catch (e) {
          this.#log.error("actor stop failed", {
            failed: cell.spec.name,
            failedStream: cell.spec.stream,
            error: e,
          });
        }
      }
      cell.spec.mailbox.close();
      await cell.loop;
      cell.abort.abort();
      if (cell.behavior) await this.#closeQuietly(cell.behavior);
      if (cell.state !== "failed") cell.state = "stopped";
    }
    this.#resolveDone(this.exitCode);
  }

  async #closeQuietly(behavior: Behavior<any>): Promise<void> {
    try {
      await behavior.close?.();
    } catch (e) {
      this.#log.warn("actor close failed", { error: e });
    }
  }
}
