/**
 * The store's failures told apart by their codes, never their text: the errno Deno and Node put
 * on `code`, and the SQLite result code node:sqlite puts on `errcode`.
 */

/** SQLite's primary result code for "database or disk is full" (the low byte of an extended code). */
const SQLITE_FULL = 13;

/**
 * No space left: ENOSPC from a file write, or SQLITE_FULL from the index (its own pages or its WAL).
 *
 * @example
 * try { await writeAll(file, bytes); } catch (e) { if (!isDiskFull(e)) throw e; }
 */
export function isDiskFull(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const { code, errcode } = e as { code?: unknown; errcode?: unknown };
  return code === "ENOSPC" || (typeof errcode === "number" && (errcode & 0xff) === SQLITE_FULL);
}

/**
 * A rename across filesystems (EXDEV): the file must be copied instead.
 *
 * @example
 * try { await Deno.rename(from, to); } catch (e) { if (!isCrossDevice(e)) throw e; await copy(from, to); }
 */
export function isCrossDevice(e: unknown): boolean {
  return e instanceof Error && (e as { code?: unknown }).code === "EXDEV";
}
