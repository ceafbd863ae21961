import { join } from "node:path";
import pg from "pg";
import type { Engine } from "../src/store/index/schema.ts";

/** The test PostgreSQL (trust auth, database `test`); .ci/run starts it where it is not running. */
export const PG_URL = Deno.env.get("TEST_PG_URL") ?? "postgres://postgres@127.0.0.1:5432/test";

/** Both engines the index runs on: every index test runs on each. */
export const ENGINES: readonly Engine[] = ["sqlite", "postgres"];

async function admin<T>(run: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** A schema of its own in the test database, as an INDEX_URL whose every connection uses it. */
export async function freshSchema(): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  const schema = `skyreel_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  await admin((c) => c.query(`CREATE SCHEMA ${schema}`));
  const url = `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return { url, schema, drop: () => admin((c) => c.query(`DROP SCHEMA ${schema} CASCADE`)).then(() => {}) };
}

/** Runs SQL against a schema made by freshSchema: how a test sets up an earlier version or looks behind the code. */
export function pgQuery<T = Record<string, unknown>>(schema: string, text: string): Promise<T[]> {
  return admin(async (c) => {
    await c.query(`SET search_path = ${schema}`);
    return (await c.query(text)).rows as T[];
  });
}

/**
 * Where an index on `engine` lives for one test: `index.db` in `dir`, or a fresh PostgreSQL schema.
 * `drop` removes the schema (the caller removes `dir`).
 */
export async function indexLocation(
  engine: Engine,
  dir: string,
): Promise<{ location: string; drop(): Promise<void> }> {
  if (engine === "sqlite") return { location: join(dir, "index.db"), drop: () => Promise.resolve() };
  const { url, drop } = await freshSchema();
  return { location: url, drop };
}
