import type { ChunkIndex, SaveJobRow } from "../../store/index/chunk_index.ts";
import { logger } from "../../runtime/log.ts";
import type { Metrics } from "../../runtime/metrics.ts";
import { ApiError } from "./request.ts";

/** Async saves queued or running at most; more are refused with 429. */
export const MAX_PENDING_JOBS = 16;
/** A settled job stays readable at /api/jobs/<id> this long; start-up removes older ones. */
export const JOB_HISTORY_MS = 7 * 24 * 3600_000;

export interface SaveJobsOptions {
  index: ChunkIndex;
  metrics: Metrics;
  /**
   * Writes the clip a job asks for; resolves with its file (relative to UPLOAD_PATH) and gaps.
   * `placing` is awaited with both just before the file is renamed into place.
   */
  save(
    request: Record<string, unknown>,
    onProgress: (p: number) => void,
    signal: AbortSignal,
    placing: (filename: string, gaps: unknown[]) => Promise<void>,
  ): Promise<{ filename: string; gaps: unknown[] }>;
  /** Whether a file (relative to UPLOAD_PATH) exists. */
  exists(filename: string): Promise<boolean>;
  /** What an error becomes in a job's `error`: a client may read it (no absolute paths). */
  describe(e: unknown): string;
}

/**
 * The async saves: persisted in the index when accepted, run one at a time, and settled there as
 * done or failed. A job running when the process stopped (a crash, or a shutdown that could not
 * wait for it) is run again from the start at the next start-up: its temporary file is gone by
 * then (`cleanTemporaryFiles`), and nothing was renamed into UPLOAD_PATH; one whose clip is in
 * place (its name is recorded just before the rename) is done.
 *
 * @example
 * const jobs = new SaveJobs({ index, metrics, save, describe });
 * await jobs.start();
 * const row = await jobs.submit({ stream, from, to, metadata, tags });
 */
export class SaveJobs {
  #o: SaveJobsOptions;
  #log = logger("save-jobs");
  #wake = () => {};
  #stopping = new AbortController();
  #loop: Promise<void> | null = null;
  /** The admission in progress: the next waits for it. */
  #admissions: Promise<unknown> = Promise.resolve();
  /** The running job's progress, 0-1 (not persisted). */
  #progress = new Map<string, number>();

  constructor(o: SaveJobsOptions) {
    this.#o = o;
  }

  /**
   * Forgets jobs settled over JOB_HISTORY_MS ago, resumes what a previous process left queued or
   * running, then runs jobs as they come.
   */
  async start(): Promise<void> {
    const pruned = await this.#o.index.pruneJobs(Date.now() - JOB_HISTORY_MS);
    if (pruned > 0) this.#log.info("settled save jobs over 7 days old removed", { jobs: pruned });
    const pending = await this.#o.index.pendingJobs();
    for (const job of pending.filter((j) => j.state === "running")) {
      // Stopped between the rename into place and "done": the clip is whole (a rename is atomic).
      if (job.filename && await this.#o.exists(job.filename)) {
        await this.#o.index.updateJob(job.id, { state: "done" });
        this.#o.metrics.saveJobs.inc({ outcome: "done" });
        this.#log.warn("save job interrupted after its clip was in place: done", { job: job.id });
        continue;
      }
      await this.#o.index.updateJob(job.id, { state: "queued" });
      this.#o.metrics.saveJobs.inc({ outcome: "resumed" });
      this.#log.warn("save job interrupted by a stop: it runs again", { job: job.id });
    }
    if (pending.length > 0) this.#log.info("save jobs resumed", { jobs: pending.length });
    this.#o.metrics.saveJobsPending.set(pending.length);
    this.#loop = this.#run();
  }

  /**
   * Accepts a job, or refuses it with 429 when MAX_PENDING_JOBS are queued or running. Admissions
   * run one at a time: concurrent requests would otherwise all count the same pending jobs.
   */
  submit(request: Record<string, unknown>): Promise<SaveJobRow> {
    const admitted = this.#admissions.then(() => this.#admit(request));
    this.#admissions = admitted.catch(() => {});
    return admitted;
  }

  async #admit(request: Record<string, unknown>): Promise<SaveJobRow> {
    const pending = (await this.#o.index.pendingJobs()).length;
    if (pending >= MAX_PENDING_JOBS) {
      this.#o.metrics.saveJobs.inc({ outcome: "refused" });
      throw new ApiError(
        429,
        `${pending} async saves are queued or running, the most accepted at once; retry when one has finished`,
        { retry_after_seconds: 5 },
      );
    }
    const now = Date.now();
    const row: SaveJobRow = {
      recorder: this.#o.index.recorder,
      id: crypto.randomUUID(),
      request: JSON.stringify(request),
      state: "queued",
      created_ms: now,
      updated_ms: now,
      filename: null,
      error: null,
      gaps: null,
    };
    await this.#o.index.insertJob(row);
    this.#o.metrics.saveJobs.inc({ outcome: "accepted" });
    this.#o.metrics.saveJobsPending.set(pending + 1);
    this.#log.info("save job accepted", { job: row.id, queued: pending + 1 });
    this.#wake();
    return row;
  }

  /** A job as the API shows it, or null. */
  async get(id: string): Promise<Record<string, unknown> | null> {
    const row = await this.#o.index.job(id);
    if (!row) return null;
    return {
      id: row.id,
      state: row.state,
      progress: row.state === "done" ? 1 : this.#progress.get(row.id) ?? 0,
      filename: row.filename ?? "",
      created: new Date(row.created_ms).toISOString(),
      ...(row.error ? { error: row.error } : {}),
      ...(row.gaps ? { gaps: JSON.parse(row.gaps) } : {}),
    };
  }

  /**
   * Stops taking jobs and waits up to `graceMs` for the running one; one still running stays
   * `running` in the index, and the next start runs it again.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    this.#wake();
    if (!this.#loop) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#loop, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }

  async #run(): Promise<void> {
    while (!this.#stopping.signal.aborted) {
      const job = (await this.#o.index.pendingJobs())[0];
      if (!job) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      await this.#o.index.updateJob(job.id, { state: "running" });
      this.#progress.set(job.id, 0);
      try {
        const { filename, gaps } = await this.#o.save(
          JSON.parse(job.request),
          (p) => this.#progress.set(job.id, p),
          this.#stopping.signal,
          (filename, gaps) => this.#o.index.updateJob(job.id, { filename, gaps: JSON.stringify(gaps) }),
        );
        await this.#o.index.updateJob(job.id, { state: "done", filename, gaps: JSON.stringify(gaps) });
        this.#o.metrics.saveJobs.inc({ outcome: "done" });
        this.#log.info("save job done", { job: job.id, filename });
      } catch (e) {
        if (this.#stopping.signal.aborted) return; // left `running`: the next start runs it again
        const error = this.#o.describe(e);
        await this.#o.index.updateJob(job.id, { state: "failed", error });
        this.#o.metrics.saveJobs.inc({ outcome: "failed" });
        this.#log.warn("save job failed", { job: job.id, error: e });
      } finally {
        this.#progress.delete(job.id);
      }
      this.#o.metrics.saveJobsPending.set((await this.#o.index.pendingJobs()).length);
    }
  }
}
