/** Log levels in increasing severity; LOG_LEVEL picks the lowest one printed. */
export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = typeof LEVELS[number];

let threshold = 1;

export function setLogLevel(level: Level): void {
  threshold = LEVELS.indexOf(level);
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A structured logger: one JSON object a line on stdout, with the actor and stream it speaks for.
 *
 * @example
 * const log = logger("writer", "drone1");
 * log.info("chunk opened", { path }); // {"ts":"…","level":"info","actor":"writer","stream":"drone1","msg":"chunk opened","path":"…"}
 */
export function logger(actor: string, stream?: string): Logger {
  const write = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(level) < threshold) return;
    const line = {
      ts: new Date().toISOString(),
      level,
      actor,
      ...(stream ? { stream } : {}),
      msg,
      ...fields,
    };
    console.log(
      JSON.stringify(line, (_k, v) => v instanceof Error ? v.message : typeof v === "bigint" ? Number(v) : v),
    );
  };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}
