/**
 * The invariants a chaos round must leave true, checked on the files, the index and the broker,
 * never on the service's logs. Each check is recorded, passed or failed, with what it saw.
 */
import { DatabaseSync } from "node:sqlite";
import { join, relative } from "node:path";
import { decodeErrors, until } from "../helpers.ts";
import type { World } from "./world.ts";

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** The checks of one round. */
export class Checks {
  readonly list: Check[] = [];

  check(name: string, ok: boolean, detail = ""): boolean {
    this.list.push({ name, ok, detail });
    return ok;
  }

  /** Runs `wait`; a timeout is a failed check named `name`. */
  async eventually(name: string, wait: () => Promise<unknown>): Promise<boolean> {
    try {
      await wait();
      return this.check(name, true);
    } catch (e) {
      return this.check(name, false, e instanceof Error ? e.message : String(e));
    }
  }

  get failures(): Check[] {
    return this.list.filter((c) => !c.ok);
  }
}

function walk(dir: string, out: string[] = []): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw e;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory) walk(p, out);
    else out.push(p);
  }
  return out;
}

function rows<T>(db: DatabaseSync, query: string): T[] {
  return db.prepare(query).all().map((r) => ({ ...(r as object) }) as T);
}

/**
 * With the service stopped: the index is sound and matches the files, nothing temporary is left,
 * every chunk decodes on its own, and the broker got every sent event in order.
 */
export async function storageInvariants(world: World, checks: Checks): Promise<void> {
  const db = new DatabaseSync(join(world.storage, "index.db"), { readOnly: true });
  let chunks: { path: string; status: string; frames: number }[];
  let events: { seq: number; id: string; sent_ms: number | null }[];
  try {
    const integrity = rows<{ integrity_check: string }>(db, "PRAGMA integrity_check");
    checks.check("index integrity_check", integrity[0]?.integrity_check === "ok", JSON.stringify(integrity));
    chunks = rows(db, "SELECT path, status, frames FROM chunks");
    events = rows(db, "SELECT seq, id, sent_ms FROM events ORDER BY seq");
  } finally {
    db.close();
  }
  const unfinished = chunks.filter((c) => c.status === "recording" || c.status === "deleting");
  checks.check("no row left recording or deleting", unfinished.length === 0, JSON.stringify(unfinished));

  const files = new Set(
    walk(world.storage).map((f) => relative(world.storage, f)).filter((f) => f.endsWith(".mp4")),
  );
  const live = chunks.filter((c) => c.status === "complete" || c.status === "recovered");
  const indexed = new Set(chunks.filter((c) => c.status !== "deleted").map((c) => c.path));
  const orphans = [...files].filter((f) => !indexed.has(f));
  const missing = live.filter((c) => !files.has(c.path)).map((c) => c.path);
  const undead = chunks.filter((c) => c.status === "deleted" && files.has(c.path)).map((c) => c.path);
  checks.check("no file without a row", orphans.length === 0, orphans.join(", "));
  checks.check("no row without its file", missing.length === 0, missing.join(", "));
  checks.check("no deleted chunk left on disk", undead.length === 0, undead.join(", "));

  const temporary = [world.storage, world.uploads].flatMap((root) =>
    walk(root).map((f) => relative(root, f)).filter((f) => /\.tmp$|^tmp\//.test(f))
  );
  checks.check("no temporary file left", temporary.length === 0, temporary.join(", "));

  for (const c of live) {
    const errors = await decodeErrors(join(world.storage, c.path));
    checks.check(`chunk decodes on its own`, errors === "", `${c.path}: ${errors.slice(0, 300)}`);
  }

  const sent = events.filter((e) => e.sent_ms !== null);
  const seqOf = new Map(events.map((e) => [e.id, e.seq]));
  await checks.eventually("every confirmed event delivered", () =>
    until(
      () => {
        const got = new Set(world.received.map((r) => r.properties.messageId));
        return sent.every((e) => got.has(e.id));
      },
      "confirmed events at the subscriber",
      10_000,
    ));
  const firsts: number[] = [];
  const seen = new Set<string>();
  let repeats = 0;
  for (const r of world.received) {
    const id = r.properties.messageId as string;
    if (seen.has(id)) repeats++;
    else firsts.push(seqOf.get(id) ?? -1), seen.add(id);
  }
  const ordered = firsts.every((s, i) => s > 0 && (i === 0 || s > firsts[i - 1]));
  checks.check("events delivered in order, each an event of the index", ordered, `seqs ${firsts.join(",")}`);
  checks.check(
    "events repeated only after a kill or a cut broker connection",
    repeats === 0 || world.killed || world.brokerCut,
    `${repeats} repeats without a kill`,
  );
}

/** Every save job the service accepted is done or failed, as the (possibly restarted) service says. */
export async function jobsSettled(world: World, checks: Checks): Promise<void> {
  for (const id of world.jobs) {
    let last = "";
    await checks.eventually(`accepted save job settles (done or failed)`, () =>
      until(
        async () => {
          const res = await world.api(`/api/jobs/${id}`);
          const body = await res.json().catch(() => ({}));
          last = `${res.status} ${JSON.stringify(body).slice(0, 200)}`;
          if (res.status === 404) throw new Error(`job ${id} lost: ${last}`);
          return body.state === "done" || body.state === "failed";
        },
        `job ${id} (${last})`,
        30_000,
      ));
  }
}

/** /healthz reaches `want` (a status, or a reason matching) within `ms`. */
export async function healthWithin(
  world: World,
  checks: Checks,
  what: string,
  pred: (h: Record<string, any>) => boolean,
  ms: number,
): Promise<boolean> {
  let last: Record<string, any> = {};
  return await checks.eventually(
    `/healthz ${what} within ${ms / 1000} s`,
    () =>
      until(
        async () => pred(last = await world.health()),
        `${what}; last: ${JSON.stringify(last.reasons)}`,
        ms,
      ),
  );
}
