import { setPriority } from "node:os";
import type { Logger } from "./log.ts";

/** How long a child is given to exit after its input closes, and then after SIGTERM, before SIGKILL. */
const GRACE_MS = 2000;

/**
 * A child process an actor owns (ffmpeg), in a session of its own so that only its actor signals it:
 * its stdout is the actor's to read, its stderr goes to
 * the log at debug level line by line (the last line is kept to say why it exited), and `stop`
 * always ends it and reaps it, so no zombie outlives its actor: input closed, then SIGTERM, then
 * SIGKILL, each after a grace period.
 *
 * @example
 * const child = new Child(ffmpeg, args, logger("encoder", "cam1"));
 * for await (const piece of child.stdout) handle(piece);
 * const status = await child.stop();
 */
export class Child {
  readonly #process: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array> | null;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly status: Promise<Deno.CommandStatus>;
  /** The last line it wrote to stderr. */
  lastError = "";
  #exited = false;

  /** `nice`: how much lower than the recorder's its CPU priority is (its threads inherit it). */
  constructor(command: string, args: string[], log: Logger, o: { stdin: boolean; nice?: number }) {
    this.#process = new Deno.Command(command, {
      args,
      stdin: o.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      // Its own session: a terminal's Ctrl-C goes to the whole foreground group, and would stop
      // ffmpeg before the recorder has taken what it holds. The recorder ends it (`stop`).
      detached: true,
    }).spawn();
    if (o.nice) this.#lower(o.nice, log);
    this.#stdin = o.stdin ? this.#process.stdin.getWriter() : null;
    this.stdout = this.#process.stdout;
    this.status = this.#process.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#stderr(log);
  }

  /**
   * Lowered at once, before the child starts its threads (they inherit it). Without the grant
   * (`--allow-sys=setPriority`) or the right, it runs at the recorder's priority, and says so.
   */
  #lower(nice: number, log: Logger): void {
    try {
      setPriority(this.#process.pid, nice);
    } catch (e) {
      log.warn("could not lower the child's CPU priority: it competes with the recorder as an equal", {
        nice,
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  get pid(): number {
    return this.#process.pid;
  }

  /** Writes to its stdin; rejects when it has exited. */
  write(bytes: Uint8Array): Promise<void> {
    return this.#stdin!.write(bytes);
  }

  /**
   * Ends it (see the class) and resolves with its exit status. A child with no input is sent
   * SIGTERM at once (ffmpeg then finishes what it was writing).
   */
  async stop(): Promise<Deno.CommandStatus> {
    if (this.#stdin) await this.#stdin.close().catch(() => {});
    else this.kill("SIGTERM");
    for (const signal of this.#stdin ? ["SIGTERM", "SIGKILL"] as const : ["SIGKILL"] as const) {
      if (await this.#exitsWithin(GRACE_MS)) break;
      this.kill(signal);
    }
    return await this.status;
  }

  /** Sends `signal` unless it has exited. */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    if (this.#exited) return;
    try {
      this.#process.kill(signal);
    } catch { /* exited meanwhile */ }
  }

  async #exitsWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
    const exited = await Promise.race([this.status.then(() => true), timeout]);
    clearTimeout(timer);
    return exited;
  }

  async #stderr(log: Logger): Promise<void> {
    let rest = "";
    for await (const text of this.#process.stderr.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + text).split(/\r?\n|\r/);
      rest = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        this.lastError = line.trim();
        log.debug("child stderr", { pid: this.#process.pid, line: this.lastError });
      }
    }
    if (rest.trim()) this.lastError = rest.trim();
  }
}
