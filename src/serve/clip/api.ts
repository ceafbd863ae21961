import { Buffer } from "node:buffer";
import { timingSafeEqual } from "node:crypto";
import { statfsSync } from "node:fs";
import { join, relative } from "node:path";
import { type ChunkIndex, type ChunkRow, playable, RECORDER_NAME } from "../../store/index/chunk_index.ts";
import type { IndexChanges } from "../../store/index/index_changes.ts";
import { json } from "../http.ts";
import { storageEvent } from "../../publish/envelope.ts";
import { logger } from "../../runtime/log.ts";
import type { Leases } from "../../store/leases.ts";
import type { Thumbnails } from "../thumbnails.ts";
import type { Metrics } from "../../runtime/metrics.ts";
import { entriesOf, fsyncDir, TMP_DIR } from "../../store/layout.ts";
import { isCrossDevice } from "../../store/errors.ts";
import { type ClipSummary, faststartClip, fragmentedClip } from "./mux.ts";
import { type ClipPlan, planClip } from "./plan.ts";
import { mergeRanges, nearestRanges, type Range } from "./ranges.ts";
import { ApiError, clipRange, saveLabels } from "./request.ts";
import { SaveJobs } from "./save_jobs.ts";
import { archivedChunk, type ArchiveReader, chunkFile, type OpenChunk } from "./chunk_bytes.ts";
import { formatCompact, formatIso } from "./timestamps.ts";

/** The recorder and stream a request is about; `own`: this recorder's. */
interface Target {
  recorder: string;
  stream: string;
  own: boolean;
}

export interface ClipApiOptions {
  index: ChunkIndex;
  changes: IndexChanges;
  storagePath: string;
  uploadPath: string;
  /** This recorder's stream names; the first is the default (none: a node that only serves the fleet's history). */
  streams: string[];
  /** The archive's reader (ARCHIVE_URL): chunks not on this disk are read from there; null: none. */
  archive: ArchiveReader | null;
  fetchMaxBytes: number;
  /** Clips (`fetch`, `GET /api/clip`) read at once; more get 503 (CLIP_MAX_CONCURRENT). */
  clipMaxConcurrent: number;
  rangeGapMs: number;
  apiToken: string | null;
  storageBudgetBytes: number | null;
  leases: Leases;
  metrics: Metrics;
  /** Chunks' thumbnails; null when no ffmpeg runs (or THUMBNAILS=false). */
  thumbnails: Thumbnails | null;
}

/** Clips are written here, under STORAGE_PATH, out of the view of whatever syncs UPLOAD_PATH. */
/** At shutdown, how long a running save job may take to finish before it is left to the next start. */
const SAVE_STOP_GRACE_MS = 2000;

const MAX_BODY = 64 * 1024;
const GIB = 2 ** 30;

/**
 * The clip commands (`POST /command`: get-storage-state, fetch, save) and the streaming endpoints
 * (`GET /api/clip`, `/api/ranges`, `/api/jobs/<id>`). Everything is read from the index and the
 * chunk files; nothing here writes to the recording.
 */
export class ClipApi {
  #o: ClipApiOptions;
  #jobs: SaveJobs;
  /** Clips being read now: this object is its only writer. */
  #serving = 0;
  #log = logger("clips");

  constructor(o: ClipApiOptions) {
    this.#o = o;
    this.#jobs = new SaveJobs({
      index: o.index,
      metrics: o.metrics,
      save: async (request, onProgress, signal, placing) => {
        const target = await this.#target(request);
        const { from, to } = clipRange(request);
        if (target.own) await this.#waitForVideo(target.stream, to);
        const gaps = (plan: ClipPlan) => describe(plan, from, to).gaps;
        const { filename, plan } = await this.#writeClip(
          request,
          onProgress,
          signal,
          (filename, plan) => placing(filename, gaps(plan)),
        );
        return { filename, gaps: gaps(plan) };
      },
      exists: (filename) => Deno.stat(join(o.uploadPath, filename)).then(() => true, () => false),
      describe: (e) => this.redact(e instanceof Error ? e.message : String(e)),
    });
  }

  /** Removes temporary files a stop left, then resumes the save jobs it left. */
  async start(): Promise<void> {
    const removed = await cleanTemporaryFiles(join(this.#o.storagePath, TMP_DIR), this.#o.uploadPath);
    if (removed > 0) {
      this.#log.warn("temporary clip files of an interrupted save removed", { files: removed });
    }
    await this.#jobs.start();
  }

  /** Waits a little for a running save job; one that does not finish runs again at the next start. */
  stop(): Promise<void> {
    return this.#jobs.stop(SAVE_STOP_GRACE_MS);
  }

  /** `message` with STORAGE_PATH and UPLOAD_PATH named, not spelled out: a client may read it. */
  redact(message: string): string {
    return message.replaceAll(this.#o.uploadPath, "UPLOAD_PATH").replaceAll(
      this.#o.storagePath,
      "STORAGE_PATH",
    );
  }

  async handle(req: Request): Promise<Response> {
    try {
      await this.#authorize(req);
      const url = new URL(req.url);
      if (req.method === "POST" && url.pathname === "/command") return await this.#command(req);
      if (req.method === "GET" && url.pathname === "/api/clip") {
        return await this.#streamClip(url.searchParams);
      }
      if (req.method === "GET" && url.pathname === "/api/ranges") return await this.#ranges(url.searchParams);
      if (req.method === "GET" && url.pathname === "/api/chunks") return await this.#chunks(url.searchParams);
      if (req.method === "GET" && url.pathname === "/api/events") return await this.#events(url.searchParams);
      if (req.method === "GET" && url.pathname === "/api/thumbnail") {
        return await this.#thumbnail(url.searchParams);
      }
      const job = url.pathname.match(/^\/api\/jobs\/([\w-]+)$/);
      if (req.method === "GET" && job) {
        const found = await this.#jobs.get(job[1]);
        if (!found) throw new ApiError(404, `no job ${job[1]}`);
        return json(found);
      }
      throw new ApiError(404, `no route for ${req.method} ${url.pathname}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const res = json({ error: this.redact(e.message), ...e.details }, e.status);
      if (e.status === 429 || e.status === 503) {
        res.headers.set("retry-after", String(e.details.retry_after_seconds ?? 5));
      }
      // The rest of the body may never come: the connection cannot carry another request.
      if (e.status === 408) res.headers.set("connection", "close");
      return res;
    }
  }

  async #authorize(req: Request): Promise<void> {
    const token = this.#o.apiToken;
    if (!token) return;
    const given = req.headers.get("authorization")?.match(/^Bearer (.+)$/)?.[1] ?? "";
    // Compare digests: equal length, and the time does not depend on where the strings differ.
    const digest = async (s: string) =>
      Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
    if (!timingSafeEqual(await digest(given), await digest(token))) {
      throw new ApiError(401, "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)");
    }
  }

  async #command(req: Request): Promise<Response> {
    const body = await readJson(req);
    switch (body.command) {
      case "get-storage-state":
        return json(await this.#storageState(body));
      case "fetch":
        return await this.#fetch(body);
      case "save":
        return await this.#save(body);
      case undefined:
        throw new ApiError(400, `missing "command"`);
      default:
        throw new ApiError(
          400,
          `unknown "command": ${JSON.stringify(body.command)}; use get-storage-state, fetch or save`,
        );
    }
  }

  /** Keeps the janitor off the clip's chunks (this recorder's) until the returned release is called. */
  #lease(plan: ClipPlan, target: Target): () => void {
    return target.own ? this.#o.leases.take(plan.chunks.map((c) => c.path)) : () => {};
  }

  /**
   * Keeps the janitor off the clip's chunks, and counts the clip against CLIP_MAX_CONCURRENT,
   * until the returned release is called. Beyond that many clips being read, 503 and Retry-After:
   * each holds a read buffer and disk bandwidth that recording needs too.
   */
  #leaseRead(plan: ClipPlan, target: Target): () => void {
    if (this.#serving >= this.#o.clipMaxConcurrent) {
      this.#o.metrics.clipsRefused.inc();
      throw new ApiError(
        503,
        `${this.#serving} clips are being read, the most CLIP_MAX_CONCURRENT allows: retry shortly`,
        { retry_after_seconds: 1 },
      );
    }
    this.#serving++;
    const release = this.#lease(plan, target);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#serving--;
      release();
    };
  }

  /**
   * The recorder and stream a request names (`recorder`, `stream`): by default this recorder and
   * its first stream, or another recorder's only stream. A recorder or stream the index does not
   * know is refused by name.
   */
  async #target(fields: Record<string, unknown>): Promise<Target> {
    const own = this.#o.index.recorder;
    const recorder = fields.recorder ?? own;
    if (typeof recorder !== "string" || !RECORDER_NAME.test(recorder)) {
      throw new ApiError(400, `"recorder" must be a recorder's id, got ${JSON.stringify(recorder)}`);
    }
    if (recorder === own && this.#o.streams.length > 0) {
      const stream = fields.stream ?? this.#o.streams[0];
      if (typeof stream !== "string" || !this.#o.streams.includes(stream)) {
        throw new ApiError(
          400,
          `unknown "stream": ${JSON.stringify(stream)}; streams: ${this.#o.streams.join(", ")}`,
        );
      }
      return { recorder, stream, own: true };
    }
    const known = (await this.#o.index.streams()).filter((k) => k.recorder === recorder).map((k) => k.stream);
    if (known.length === 0) {
      throw new ApiError(400, `unknown "recorder": ${JSON.stringify(recorder)} has no chunks in the index`);
    }
    const stream = fields.stream ?? (known.length === 1 ? known[0] : undefined);
    if (typeof stream !== "string" || !known.includes(stream)) {
      throw new ApiError(
        400,
        `${fields.stream === undefined ? "missing" : "unknown"} "stream" of recorder ${recorder}: ${
          JSON.stringify(fields.stream ?? null)
        }; streams: ${known.join(", ")}`,
      );
    }
    return { recorder, stream, own: recorder === own };
  }

  /**
   * The chunks of `target` this node can serve: this recorder's on its disk, and any recorder's
   * archived ones (with ARCHIVE_URL).
   */
  async #rows(target: Target): Promise<ChunkRow[]> {
    const archived = (c: ChunkRow) => this.#o.archive !== null && c.archive_key !== null;
    return (await this.#o.index.chunks({ recorder: target.recorder, stream: target.stream }))
      .filter((c) => c.frames > 0 && ((target.own && playable(c)) || archived(c)));
  }

  /** Where each planned chunk's bytes are read: this recorder's file when it is here, else the archive. */
  #opener(target: Target): OpenChunk {
    const { archive, storagePath } = this.#o;
    return async (c) => {
      if (target.own) {
        try {
          return await chunkFile(storagePath, c.path);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound) || !c.archive_key || !archive) throw e;
        }
      }
      if (!c.archive_key || !archive) {
        throw new Error(`${target.recorder} ${c.path} is neither here nor archived`);
      }
      return archivedChunk(archive, c.archive_key, c.bytes);
    };
  }

  async #rangesOf(target: Target): Promise<Range[]> {
    return mergeRanges(await this.#rows(target), this.#o.rangeGapMs);
  }

  async #storageState(body: Record<string, unknown>) {
    const ranges = await this.#rangesOf(await this.#target(body));
    const all = (await this.#o.index.chunks()).filter(playable);
    const indexBytes = await this.#o.index.localBytes();
    const fs = statfsSync(this.#o.storagePath);
    const round = (n: number) => Math.round(n * 1000) / 1000;
    return {
      command: "get-storage-state",
      recorder: this.#o.index.recorder,
      stored_video: ranges.map((r) => ({ from: formatCompact(r.from), to: formatCompact(r.to) })),
      disk_usage: {
        storage_path: this.#o.storagePath,
        storage_used_gb: round((all.reduce((n, c) => n + c.bytes, 0) + indexBytes) / GIB),
        storage_limit_gb: this.#o.storageBudgetBytes === null ? null : this.#o.storageBudgetBytes / GIB,
        device_storage_remaining_gb: round(fs.bavail * fs.bsize / GIB),
      },
    };
  }

  /**
   * One stream's ranges (`recorder`, `stream`); with neither, also `streams`: every recorder's
   * streams with the ranges this node can serve of them.
   */
  async #ranges(params: URLSearchParams): Promise<Response> {
    const fields = Object.fromEntries(params);
    const listed = async (t: Target) => ({
      recorder: t.recorder,
      stream: t.stream,
      ranges: (await this.#rangesOf(t)).map((r) => ({
        from: formatIso(r.from),
        to: formatIso(r.to),
        from_compact: formatCompact(r.from),
        to_compact: formatCompact(r.to),
        frames: r.frames,
        bytes: r.bytes,
        chunks: r.chunks,
      })),
    });
    if (fields.recorder !== undefined || fields.stream !== undefined) {
      return json(await listed(await this.#target(fields)));
    }
    const own = this.#o.index.recorder;
    const keys = new Map<string, Target>();
    for (const stream of this.#o.streams) keys.set(`${own}\0${stream}`, { recorder: own, stream, own: true });
    for (const k of await this.#o.index.streams()) {
      const key = `${k.recorder}\0${k.stream}`;
      if (!keys.has(key)) keys.set(key, { ...k, own: k.recorder === own });
    }
    const streams = [];
    for (const t of keys.values()) streams.push(await listed(t));
    const first = this.#o.streams.length > 0 ? streams[0] : { recorder: own, stream: null, ranges: [] };
    return json({ ...first, streams });
  }

  /** A stream's servable chunks, each with what the timeline shows: partial, recovered, recording. */
  async #chunks(params: URLSearchParams): Promise<Response> {
    const target = await this.#target(Object.fromEntries(params));
    return json({
      recorder: target.recorder,
      stream: target.stream,
      chunks: (await this.#rows(target)).map((c) => ({
        path: c.path,
        from: formatIso(c.start_ms),
        to: formatIso(c.end_ms),
        frames: c.frames,
        bytes: c.bytes,
        status: c.status,
        partial: c.partial === 1,
        close_reason: c.close_reason,
        codec: c.codec,
        width: c.width,
        height: c.height,
      })),
    });
  }

  /** A chunk's thumbnail (`chunk`: its path as /api/chunks gives it), made on the first request; this recorder's chunks only. */
  async #thumbnail(params: URLSearchParams): Promise<Response> {
    const target = await this.#target(Object.fromEntries(params));
    const path = params.get("chunk");
    if (!path) throw new ApiError(400, "chunk: missing (a chunk's path, as /api/chunks gives it)");
    // Only a chunk of the index, never a path from the request, is read.
    const row = target.own
      ? (await this.#rows(target)).find((c) => c.path === path && playable(c))
      : undefined;
    if (!row) {
      throw new ApiError(404, `chunk: no chunk ${path} of stream ${target.stream} on this node's disk`);
    }
    if (!this.#o.thumbnails) {
      throw new ApiError(404, "thumbnails are off: no ffmpeg runs here (or THUMBNAILS=false)");
    }
    const release = this.#o.leases.take([path]);
    try {
      return new Response(await this.#o.thumbnails.get(path), {
        headers: { "content-type": "image/jpeg", "cache-control": "private, max-age=86400" },
      });
    } finally {
      release();
    }
  }

  /**
   * The storage events after `after` (a `seq`; by default the last 50), oldest first, as the
   * outbox holds them (EVENTS_RETENTION_HOURS): the console's live tail and recent deletions.
   */
  async #events(params: URLSearchParams): Promise<Response> {
    const raw = params.get("after");
    if (raw !== null && !/^\d+$/.test(raw)) {
      throw new ApiError(400, "after: expected a whole number (an event's seq)");
    }
    const after = raw === null ? Math.max(0, await this.#o.index.lastEventSeq() - 50) : Number(raw);
    const rows = await this.#o.index.eventsAfter(after, 200);
    return json({ events: rows.map((r) => ({ seq: r.seq, ...JSON.parse(r.body) })) });
  }

  /** The clip's plan, or a 404 naming the nearest recorded ranges. */
  async #plan(fields: Record<string, unknown>) {
    const target = await this.#target(fields);
    const { stream } = target;
    const { from, to } = clipRange(fields);
    const rows = await this.#rows(target);
    const plan = planClip(rows, from, to, this.#o.rangeGapMs);
    if (plan.chunks.length === 0) {
      const nearest = nearestRanges(mergeRanges(rows, this.#o.rangeGapMs), from, to);
      throw new ApiError(
        404,
        `no recorded video of "${stream}"${
          target.own ? "" : ` of recorder ${target.recorder}`
        } on this node or in its archive between ${formatCompact(from)} and ${formatCompact(to)}`,
        {
          nearest: nearest.map((r) => ({ from: formatCompact(r.from), to: formatCompact(r.to) })),
        },
      );
    }
    return { target, stream, from, to, plan };
  }

  async #fetch(body: Record<string, unknown>): Promise<Response> {
    const { target, from, to, plan } = await this.#plan(body);
    const release = this.#leaseRead(plan, target);
    try {
      return await this.#fetchLeased(body, target, from, to, plan);
    } finally {
      release();
    }
  }

  async #fetchLeased(
    body: Record<string, unknown>,
    target: Target,
    from: number,
    to: number,
    plan: ClipPlan,
  ): Promise<Response> {
    const clip = await fragmentedClip(this.#opener(target), plan, from, to);
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const part of clip.pieces) {
      size += part.length;
      if (size > this.#o.fetchMaxBytes) {
        const query = `from=${encodeURIComponent(String(body.from))}&to=${
          encodeURIComponent(String(body.to))
        }`;
        throw new ApiError(
          413,
          `the clip is over FETCH_MAX_BYTES (${this.#o.fetchMaxBytes} bytes): stream it with GET /api/clip?${query}`,
        );
      }
      parts.push(part);
    }
    return json({
      command: "fetch",
      video: Buffer.concat(parts).toString("base64"),
      ...describe(plan, clip.startMs, to),
    });
  }

  async #streamClip(params: URLSearchParams): Promise<Response> {
    const fields = Object.fromEntries(params);
    const { target, from, to, plan } = await this.#plan(fields);
    const release = this.#leaseRead(plan, target);
    let clip;
    try {
      clip = await fragmentedClip(this.#opener(target), plan, from, to);
    } catch (e) {
      release();
      throw e;
    }
    const info = describe(plan, clip.startMs, to);
    const pieces = clip.pieces;
    // The lease lasts until the last piece is sent or the client goes away (the stream is cancelled).
    async function* leased() {
      try {
        yield* pieces;
      } finally {
        release();
      }
    }
    return new Response(ReadableStream.from(leased()), {
      headers: {
        "content-type": "video/mp4",
        "x-clip-from": info.from_iso,
        "x-clip-to": info.to_iso,
        "x-clip-gaps": JSON.stringify(info.gaps),
        ...(info.stopped ? { "x-clip-stopped": JSON.stringify(info.stopped) } : {}),
      },
    });
  }

  async #save(body: Record<string, unknown>): Promise<Response> {
    const target = await this.#target(body);
    const { from, to } = clipRange(body);
    if (to > Date.now()) throw new ApiError(400, `"to" is in the future: ${formatCompact(to)}`);
    const { metadata, tags } = saveLabels(body);
    if (body.async !== undefined && typeof body.async !== "boolean") {
      throw new ApiError(400, `"async" must be true or false`);
    }
    if (body.async) {
      await this.#plan(body); // a range with no video at all is refused now, not later
      const job = await this.#jobs.submit({
        recorder: target.recorder,
        stream: target.stream,
        from: body.from,
        to: body.to,
        metadata,
        tags,
      });
      return json({ command: "save", status: "async", job_id: job.id, job_url: `/api/jobs/${job.id}` });
    }
    const { filename, plan } = await this.#writeClip(body, () => {});
    return json({ command: "save", filename, ...describe(plan, from, to) });
  }

  /** Resolves once the index holds `to` (its fragment written) or the stream stopped recording. */
  #waitForVideo(stream: string, to: number): Promise<void> {
    const ready = async () => {
      const rows = await this.#o.index.chunks({ stream });
      return rows.some((c) => c.end_ms >= to && playable(c)) ||
        !rows.some((c) => c.status === "recording");
    };
    return new Promise((resolve, reject) => {
      let checking = false;
      const check = () => {
        if (checking) return;
        checking = true;
        ready().then((ok) => {
          checking = false;
          if (ok) {
            off();
            resolve();
          }
        }, (e) => (off(), reject(e)));
      };
      const off = this.#o.changes.listen((s) => s === stream && check());
      check();
    });
  }

  /**
   * Plans and writes a faststart clip under STORAGE_PATH/tmp, then moves it into place under
   * UPLOAD_PATH (a rename; across filesystems a copy to a hidden name there, then a rename), so no
   * half-written clip is ever in UPLOAD_PATH's view. An aborted `signal` stops it before the move;
   * `placing` is awaited with the clip's name and plan just before it.
   */
  async #writeClip(
    body: Record<string, unknown>,
    onProgress: (p: number) => void,
    signal?: AbortSignal,
    placing?: (filename: string, plan: ClipPlan) => Promise<void>,
  ) {
    const { target, stream, from, to, plan } = await this.#plan(body);
    const { metadata, tags } = saveLabels(body);
    const dir = join(this.#o.uploadPath, ...tags.map((t) => `tag=${t}`));
    // Another recorder's clip is named by its recorder too: stream names are unique per recorder.
    const source = target.own ? stream : `${target.recorder}_${stream}`;
    const base = `${source}_${formatCompact(from).slice(0, -1)}${metadata ? `_${metadata}` : ""}`;
    const tmpDir = join(this.#o.storagePath, TMP_DIR);
    await Deno.mkdir(tmpDir, { recursive: true });
    await Deno.mkdir(dir, { recursive: true });
    const tmp = join(tmpDir, `${crypto.randomUUID()}.mp4.tmp`);
    let summary: ClipSummary;
    let name = `${base}.mp4`;
    try {
      const file = await Deno.open(tmp, { write: true, createNew: true });
      try {
        // Saves are bounded by their own queue (MAX_PENDING_JOBS), not CLIP_MAX_CONCURRENT.
        const release = this.#lease(plan, target);
        try {
          summary = await faststartClip(this.#opener(target), plan, from, to, file, onProgress);
        } finally {
          release();
        }
        await file.sync();
      } finally {
        file.close();
      }
      signal?.throwIfAborted();
      for (let n = 2; await Deno.stat(join(dir, name)).then(() => true, () => false); n++) {
        name = `${base}_${n}.mp4`;
      }
      await placing?.(relative(this.#o.uploadPath, join(dir, name)), plan);
      await moveInto(tmp, dir, name);
      await fsyncDir(dir);
    } finally {
      await Deno.remove(tmp).catch(() => {});
    }
    const filename = relative(this.#o.uploadPath, join(dir, name));
    this.#log.info("clip saved", { filename, frames: summary.frames, bytes: summary.bytes });
    await this.#o.index.clipSaved(
      filename,
      summary.bytes,
      storageEvent("clip_saved", stream, {
        filename,
        // Whose video it is: a fleet's node may save another recorder's stream.
        source_recorder: target.recorder,
        from: formatIso(summary.startMs),
        to: formatIso(summary.endMs),
        size_bytes: summary.bytes,
        metadata,
        tags,
      }),
    );
    this.#o.changes.changed(stream);
    return { filename, plan, summary };
  }
}

/** Where a clip starts (`from`: its first shown frame) and ends, its gaps and an early stop, in both time formats. */
function describe(plan: ClipPlan, from: number, to: number) {
  const start = Math.max(from, plan.chunks[0].start_ms);
  const end = Math.min(to, plan.stopped?.at ?? to, plan.chunks.at(-1)!.end_ms);
  return {
    from: formatCompact(start),
    to: formatCompact(end),
    from_iso: formatIso(start),
    to_iso: formatIso(end),
    gaps: plan.gaps.map((g) => ({ from: formatIso(g.from), to: formatIso(g.to) })),
    ...(plan.stopped ? { stopped: { at: formatIso(plan.stopped.at), reason: plan.stopped.reason } } : {}),
  };
}

/** Moves `tmp` to `dir/name`: a rename, or across filesystems a copy to a hidden name in `dir` and a rename. */
async function moveInto(tmp: string, dir: string, name: string): Promise<void> {
  try {
    await Deno.rename(tmp, join(dir, name));
  } catch (e) {
    if (!isCrossDevice(e)) throw e;
    const hidden = join(dir, `.${name}.${crypto.randomUUID().slice(0, 8)}.tmp`);
    try {
      await Deno.copyFile(tmp, hidden);
      const f = await Deno.open(hidden, { write: true });
      await f.sync().finally(() => f.close());
      await Deno.rename(hidden, join(dir, name));
    } finally {
      await Deno.remove(hidden).catch(() => {});
    }
  }
}

/**
 * Removes what interrupted saves left: everything in `tmpDir`, and hidden `.*.tmp` files of a
 * cross-filesystem move under `uploadPath`. Returns how many files went.
 */
export async function cleanTemporaryFiles(tmpDir: string, uploadPath: string): Promise<number> {
  let removed = 0;
  const walk = async (dir: string, all: boolean) => {
    for (const e of await entriesOf(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path, all);
      else if (all || (e.name.startsWith(".") && e.name.endsWith(".tmp"))) {
        await Deno.remove(path);
        removed++;
      }
    }
  };
  await walk(tmpDir, true);
  await walk(uploadPath, false);
  return removed;
}

/** A request body must be whole within this: a client that stops half-way is let go. */
export const BODY_TIMEOUT_MS = 10_000;

/** The request body as a JSON object, at most 64 KiB (413 beyond), whole within 10 s (408 otherwise). */
async function readJson(req: Request): Promise<Record<string, unknown>> {
  if (Number(req.headers.get("content-length") ?? 0) > MAX_BODY) throw new ApiError(413, "body over 64 KiB");
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = (req.body ?? ReadableStream.from<Uint8Array>([])).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ApiError(408, `body not received within ${BODY_TIMEOUT_MS / 1000} s`)),
      BODY_TIMEOUT_MS,
    );
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), late]);
      if (done) break;
      size += value.length;
      if (size > MAX_BODY) throw new ApiError(413, "body over 64 KiB");
      chunks.push(value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(Buffer.concat(chunks)));
  } catch {
    throw new ApiError(400, "body is not JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, "body must be a JSON object");
  }
  return body as Record<string, unknown>;
}
