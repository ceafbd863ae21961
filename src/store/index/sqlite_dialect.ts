import { DatabaseSync } from "node:sqlite";
import { SqliteDialect } from "kysely";

/** What a ROLLBACK outside a transaction runs. */
const NO_OP = {
  reader: false,
  all: () => [],
  run: () => ({ changes: 0, lastInsertRowid: 0 }),
  iterate: () => [][Symbol.iterator](),
};

/**
 * Kysely's SqliteDialect over Deno's built-in node:sqlite, so the index needs no native addon.
 * Kysely passes parameters as one array (node:sqlite wants them spread) and asks whether a
 * statement returns rows (`reader`). SQLite rolls a transaction back by itself on some errors
 * (SQLITE_FULL): kysely's ROLLBACK then finds none, and its "no transaction is active" would hide
 * the error that matters, so a ROLLBACK outside a transaction does nothing.
 *
 * @example
 * const db = new Kysely<Schema>({ dialect: nodeSqliteDialect("index.db") });
 */
export function nodeSqliteDialect(path: string): SqliteDialect {
  return new SqliteDialect({
    database: () => {
      const db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
      return Promise.resolve({
        close: () => db.close(),
        prepare(sql: string) {
          if (/^\s*rollback\s*$/i.test(sql) && !db.isTransaction) return NO_OP;
          const stmt = db.prepare(sql);
          return {
            reader: stmt.columns().length > 0,
            all: (params: ReadonlyArray<unknown>) => stmt.all(...(params as any[])),
            run: (params: ReadonlyArray<unknown>) => {
              const r = stmt.run(...(params as any[]));
              return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
            },
            iterate: (params: ReadonlyArray<unknown>) => stmt.iterate(...(params as any[])),
          };
        },
      });
    },
  });
}
