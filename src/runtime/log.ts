/** Log levels in increasing severity; LOG_LEVEL picks the lowest one printed. */
export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = typeof LEVELS[number];

let threshold = 1;

/** "json": one JSON object a line (for journald, Loki, `jq`); "text": a readable line, for a person. */
export const FORMATS = ["auto", "json", "text"] as const;
let text = false;

export function setLogLevel(level: Level): void {
  threshold = LEVELS.indexOf(level);
}

/** `auto` (the default) is text when stdout is a terminal and JSON otherwise. */
export function setLogFormat(format: typeof FORMATS[number]): void {
  text = format === "text" || (format === "auto" && Deno.stdout.isTerminal());
}

const replacer = (_k: string, v: unknown) =>
  v instanceof Error ? v.message : typeof v === "bigint" ? Number(v) : v;

/** `09:24:16.377 warn  connection/drone1  disconnected reason="..."`: the fields as key=JSON. */
function textLine(level: Level, actor: string, stream: string | undefined, msg: string, fields = {}): string {
  const time = new Date().toISOString().slice(11, 23);
  const rest = Object.entries(fields).map(([k, v]) => `${k}=${JSON.stringify(v, replacer)}`).join(" ");
  return `${time} ${level.padEnd(5)} ${stream ? `${actor}/${stream}` : actor}  ${msg}${
    rest ? `  ${rest}` : ""
  }`;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A structured logger: one JSON object a line on stdout (a readable line on a terminal, or as
 * LOG_FORMAT says), with the actor and stream it speaks for.
 *
 * @example
 * const log = logger("writer", "drone1");
 * log.info("chunk opened", { path }); // {"ts":"…","level":"info","actor":"writer","stream":"drone1","msg":"chunk opened","path":"…"}
 */
export function logger(actor: string, stream?: string): Logger {
  const write = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS.indexOf(level) < threshold) return;
    if (text) return console.log(textLine(level, actor, stream, msg, fields));
    const line = {
      ts: new Date().toISOString(),
      level,
      actor,
      ...(stream ? { stream } : {}),
      msg,
      ...fields,
    };
    console.log(JSON.stringify(line, replacer));
  };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}
