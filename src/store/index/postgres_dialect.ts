import { PostgresDialect } from "kysely";
import pg from "pg";

/** PostgreSQL's type oids that come back as text by default: int8 (counts, ids, epoch ms) and numeric (sums). */
const INT8 = 20;
const NUMERIC = 1700;

/** Epoch milliseconds, byte counts and sums fit a double exactly (below 2^53), so they are read as numbers. */
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8 || oid === NUMERIC) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
};

/**
 * Kysely's PostgresDialect over npm:pg for a fleet's shared index (INDEX_URL=postgres://…).
 * Rows read the same as SQLite's: numbers, not the strings pg gives bigint and numeric by default.
 * The pool is small: one recorder's writes go through one indexer, and reads are the API's.
 *
 * @example
 * const db = new Kysely<Schema>({ dialect: postgresDialect("postgres://127.0.0.1:5432/test") });
 */
export function postgresDialect(url: string): PostgresDialect {
  return new PostgresDialect({
    pool: new pg.Pool({
      connectionString: url,
      types,
      max: 4,
      connectionTimeoutMillis: 10_000,
      // A pool that is told to stop must not wait for an idle client's timer.
      idleTimeoutMillis: 10_000,
      allowExitOnIdle: true,
    }),
  });
}
