import { FORMATS, type Level, LEVELS } from "../runtime/log.ts";
import type { ChunkCut } from "../record/segment_machine.ts";
import { TMP_DIR } from "../store/layout.ts";
import { type EncodeSettings, PRESETS } from "../ingest/ffmpeg/args.ts";
import { type ArchiveConfig, parseArchiveUrl } from "../store/archive/keys.ts";
import { RECORDER_NAME } from "../store/index/chunk_index.ts";

/** What reads a stream, by its URL's scheme (docs/cameras.md). */
export type SourceKind = "relay" | "camera" | "rtsp";

export interface StreamConfig {
  name: string;
  url: string;
  /** `url` without its password: what logs, events and the index show. */
  shownUrl: string;
  source: SourceKind;
  /** How a camera's JPEGs are encoded (and snapshots polled); null for the other sources. */
  encode: EncodeSettings | null;
}

/** The streams whose source needs ffmpeg: cameras (encoded) and RTSP (copied). Thumbnails use it where it runs. */
export function needsFfmpeg(config: Config): StreamConfig[] {
  return config.streams.filter((s) => s.source !== "relay");
}

export interface Config {
  streams: StreamConfig[];
  /** The streams came from CONFIG_FILE rather than VIDEO_STREAM_URL. */
  streamsFromFile: boolean;
  /** CONFIG_FILE's path; null: none. */
  configFile: string | null;
  /** The ffmpeg binary (FFMPEG_PATH, or as found at start: src/app/ffmpeg.ts); null: none, or not yet resolved. */
  ffmpegPath: string | null;
  /** Chunks' thumbnails for the console (they need ffmpeg: off when none runs). */
  thumbnails: boolean;
  storagePath: string;
  /** This recorder's name in a shared index (RECORDER_ID); null: the host name, read at start. */
  recorderId: string | null;
  /** A fleet's PostgreSQL index (INDEX_URL); null: SQLite in STORAGE_PATH. */
  indexUrl: string | null;
  /** ARCHIVE_URL and the AWS variables; null: no archive. */
  archive: ArchiveConfig | null;
  /** The janitor deletes only archived chunks, but for the disk floor. */
  keepLocalUntilArchived: boolean;
  chunkMs: number;
  /** Roll over at the keyframe nearest the chunk duration, or exactly at it (a GOP carried, decode-only). */
  chunkCut: ChunkCut;
  idleMs: number;
  minChunkFrames: number;
  sessionIdleMs: number;
  fragmentMs: number;
  httpHost: string;
  httpPort: number;
  metricsPort: number;
  logLevel: Level;
  /** auto: readable lines on a terminal, JSON otherwise. */
  logFormat: typeof FORMATS[number];
  /** No message (not even a pong) for this long means the relay is dead: reconnect. */
  streamTimeoutMs: number;
  reconnectMaxMs: number;
  supervisorMaxRestarts: number;
  supervisorWindowMs: number;
  /** Frames one stream may have queued between actors before new ones are dropped (and counted). */
  queueFrames: number;
  /** Bound on the frames since the last keyframe kept per stream, to start a chunk mid-GOP. */
  gopCacheBytes: number;
  /** fdatasync after every fragment, so a power cut loses at most the fragment in progress. */
  fsyncFragments: boolean;
  /** Where saved clips go (outside retention). */
  uploadPath: string;
  /** Budget for chunks plus the index; null: no size limit. */
  storageBudgetBytes: number | null;
  retentionMaxAgeMs: number | null;
  /** Below this much free space the oldest chunks go, whatever the budget. */
  minFreeDiskBytes: number;
  janitorIntervalMs: number;
  /** Largest clip `fetch` returns inline (base64); larger ones are streamed from /api/clip. */
  fetchMaxBytes: number;
  clipMaxConcurrent: number;
  /** Bearer token required by every endpoint but /healthz and /metrics; null: none. */
  apiToken: string | null;
  /** Chunks this close in time form one recorded range. */
  rangeGapMs: number;
  /** RabbitMQ for storage events; empty: publishing off (the outbox still records). */
  amqpUrl: string;
  eventsExchange: string;
  eventsExchangeType: "fanout" | "topic" | "direct";
  eventsRetentionMs: number;
}

/**
 * Units: the variables are in the units people write (seconds, hours, GB); the Config carries
 * milliseconds and bytes, so nothing past loading converts.
 */
const SECOND = 1000;
const HOUR = 3600 * SECOND;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
const scaled = (unit: number, n: number | null) => n === null ? null : Math.round(n * unit);

/** A configuration value that is refused: the message names the variable and what it accepts. */
export class ConfigError extends Error {
  readonly exitCode: number = 2;
  readonly summary: string = "invalid configuration";
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
  }
}

/** A valid configuration names something that cannot be had now (a port in use): exit 69. */
export class StartupError extends ConfigError {
  override readonly exitCode = 69;
  override readonly summary = "cannot start";
}

/** Refuses to start: one line naming the variable, exit code 2 (or 69 for a StartupError). */
export function refuse(e: ConfigError): never {
  console.error(`skyreel: ${e.summary}: ${e.message}`);
  Deno.exit(e.exitCode);
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const v = Number(raw.trim());
  if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(name, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function decimal(env: Env, name: string, def: number | null, min: number, max: number): number | null {
  const raw = env[name];
  if (raw === undefined || raw === "") return def;
  const v = Number(raw.trim());
  if (!/^\s*\d+(\.\d+)?\s*$/.test(raw) || !(v >= min && v <= max)) {
    throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return def;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(env[name])}`);
}

const SOURCES: Record<string, SourceKind> = {
  "ws:": "relay",
  "wss:": "relay",
  "http:": "camera",
  "https:": "camera",
  "rtsp:": "rtsp",
  "rtsps:": "rtsp",
};

/** A stream URL and the source its scheme selects. */
function sourceUrl(name: string, raw: string): { url: string; shownUrl: string; source: SourceKind } {
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch { /* refused below */ }
  const source = url && SOURCES[url.protocol];
  if (!url || !source || !url.hostname) {
    throw new ConfigError(
      name,
      `expected a ws(s):// relay, http(s):// camera or rtsp(s):// camera URL, got ${JSON.stringify(raw)}`,
    );
  }
  if (url.password) url.password = "***";
  return { url: raw, shownUrl: url.href, source };
}

/**
 * A camera's encoding: `over` (a stream's own `framerate` and `video`) over `base` (the video-store
 * attributes, or CAMERA_FRAMERATE, VIDEO_BITRATE and VIDEO_PRESET).
 */
function encodeSettings(where: string, over: Record<string, unknown>, base: EncodeSettings): EncodeSettings {
  const { framerate, video } = over;
  if (framerate !== undefined && !(typeof framerate === "number" && framerate > 0 && framerate <= 120)) {
    throw new ConfigError(
      where,
      `framerate must be a number from 0 to 120, got ${JSON.stringify(framerate)}`,
    );
  }
  if (video !== undefined && (typeof video !== "object" || video === null || Array.isArray(video))) {
    throw new ConfigError(
      where,
      `video must be an object {codec?, bitrate?, preset?}, got ${JSON.stringify(video)}`,
    );
  }
  const { codec, bitrate, preset } = (video ?? {}) as Record<string, unknown>;
  if (codec !== undefined && codec !== "h264") {
    throw new ConfigError(
      where,
      `video.codec must be "h264" (the only one recorded), got ${JSON.stringify(codec)}`,
    );
  }
  if (bitrate !== undefined && !(Number.isInteger(bitrate) && (bitrate as number) >= 10_000)) {
    throw new ConfigError(
      where,
      `video.bitrate must be whole bits a second, at least 10000, got ${JSON.stringify(bitrate)}`,
    );
  }
  if (preset !== undefined && !(PRESETS as readonly unknown[]).includes(preset)) {
    throw new ConfigError(
      where,
      `video.preset must be one of ${PRESETS.join(", ")}, got ${JSON.stringify(preset)}`,
    );
  }
  return {
    fps: (framerate as number | undefined) ?? base.fps,
    bitrateKbps: bitrate === undefined ? base.bitrateKbps : Math.round(bitrate as number / 1000),
    preset: (preset as string | undefined) ?? base.preset,
  };
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], def: T): T {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return def;
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${values.join(", ")}, got ${JSON.stringify(env[name])}`);
  }
  return raw as T;
}

function amqpUrl(raw: string | undefined): string {
  if (raw === undefined) return "amqp://guest:guest@127.0.0.1:5672";
  if (raw === "") return "";
  if (!/^amqps?:\/\/[^\s]+$/.test(raw)) {
    throw new ConfigError(
      "AMQP_URL",
      `expected amqp:// or amqps:// (or empty to turn publishing off), got ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

/**
 * The video-store camera's defaults (framerate 20, bitrate 1 Mbps), with x264's "veryfast": on a
 * 2-core ground station it encodes 640x480 several times faster than "medium" for a little more
 * size at the same bitrate cap (`deno task bench`, section 9).
 */
const DEFAULT_ENCODE: EncodeSettings = { fps: 20, bitrateKbps: 1000, preset: "veryfast" };

const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

function recorderId(raw: string | undefined): string | null {
  if (raw === undefined || raw === "") return null;
  if (!RECORDER_NAME.test(raw)) {
    throw new ConfigError(
      "RECORDER_ID",
      `expected 1-64 letters, digits, ., _ or -, starting with a letter or digit, got ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

function archiveConfig(env: Env): ArchiveConfig | null {
  const raw = env.ARCHIVE_URL;
  if (raw === undefined || raw === "") return null;
  const at = parseArchiveUrl(raw);
  if (!at) {
    throw new ConfigError(
      "ARCHIVE_URL",
      `expected s3://bucket[/prefix] (a valid bucket name), got ${JSON.stringify(raw)}`,
    );
  }
  let endpoint: string | null = null;
  if (env.AWS_ENDPOINT_URL) {
    try {
      const u = new URL(env.AWS_ENDPOINT_URL);
      if (!["http:", "https:"].includes(u.protocol)) throw new Error();
      endpoint = u.href.replace(/\/$/, "");
    } catch {
      throw new ConfigError(
        "AWS_ENDPOINT_URL",
        `expected an http(s):// URL, got ${JSON.stringify(env.AWS_ENDPOINT_URL)}`,
      );
    }
  }
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1";
  if (!/^[a-z0-9-]{1,32}$/.test(region)) {
    throw new ConfigError(
      "AWS_REGION",
      `expected a region name such as eu-west-1, got ${JSON.stringify(region)}`,
    );
  }
  // Keys from the environment only: the SDK's other sources read files and hosts not granted.
  for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
    if (!env[name]) throw new ConfigError(name, "must be set with ARCHIVE_URL");
  }
  const kbps = decimal(env, "ARCHIVE_BANDWIDTH_KBPS", null, 8, 100_000_000);
  return {
    ...at,
    endpoint,
    region,
    accessKeyId: env.AWS_ACCESS_KEY_ID!,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
    sessionToken: env.AWS_SESSION_TOKEN || null,
    forcePathStyle: bool(env, "AWS_S3_FORCE_PATH_STYLE", false),
    bytesPerSecond: kbps === null ? null : Math.round(kbps * 1000 / 8),
  };
}

function indexUrl(raw: string | undefined): string | null {
  if (raw === undefined || raw === "") return null;
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch { /* refused below */ }
  if (!url || !["postgres:", "postgresql:"].includes(url.protocol) || !url.hostname) {
    throw new ConfigError(
      "INDEX_URL",
      `expected postgres://[user[:password]@]host[:port]/database (or unset for SQLite in STORAGE_PATH), got ${
        JSON.stringify(raw.replace(/:[^:@/]*@/, ":***@"))
      }`,
    );
  }
  return raw;
}

function readConfigFile(path: string, readTextFile: (p: string) => string): Record<string, unknown> {
  let text: string;
  try {
    text = readTextFile(path);
  } catch (e) {
    throw new ConfigError("CONFIG_FILE", `cannot read ${path}: ${e instanceof Error ? e.message : e}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ConfigError("CONFIG_FILE", `${path} is not JSON: ${e instanceof Error ? e.message : e}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ConfigError("CONFIG_FILE", `${path} must hold a JSON object`);
  }
  return doc as Record<string, unknown>;
}

/**
 * The video-store module's attributes (`{"storage": {"size_gb", "storage_path"?, "upload_path"?},
 * "camera"?, "video"?, "framerate"?}`) as the variables they set; the environment wins over them.
 */
function storageSettings(doc: Record<string, unknown>): Env {
  const storage = doc.storage;
  if (storage === undefined) return {};
  if (typeof storage !== "object" || storage === null || Array.isArray(storage)) {
    throw new ConfigError("CONFIG_FILE", "storage must be an object {size_gb, storage_path?, upload_path?}");
  }
  const { size_gb, storage_path, upload_path } = storage as Record<string, unknown>;
  if (typeof size_gb !== "number" || !(size_gb > 0)) {
    throw new ConfigError(
      "CONFIG_FILE",
      `storage.size_gb is missing or not a positive number (got ${JSON.stringify(size_gb)})`,
    );
  }
  for (const [name, value] of [["storage_path", storage_path], ["upload_path", upload_path]] as const) {
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new ConfigError("CONFIG_FILE", `storage.${name} must be a non-empty string`);
    }
  }
  // `framerate` and `video` are read as the cameras' encoding (encodeSettings).
  if (doc.camera !== undefined && typeof doc.camera !== "string") {
    throw new ConfigError("CONFIG_FILE", `camera has the wrong type (got ${JSON.stringify(doc.camera)})`);
  }
  return {
    STORAGE_SIZE_GB: String(size_gb),
    ...(storage_path ? { STORAGE_PATH: storage_path as string } : {}),
    ...(upload_path ? { UPLOAD_PATH: upload_path as string } : {}),
  };
}

function streamsOf(doc: Record<string, unknown>, base: EncodeSettings): StreamConfig[] | null {
  const streams = doc.streams;
  if (streams === undefined) return null;
  // Empty: a node that records nothing and serves the fleet's history (docs/fleet.md).
  if (!Array.isArray(streams)) {
    throw new ConfigError("CONFIG_FILE", `streams must be an array of {name, url}`);
  }
  const seen = new Set<string>();
  return streams.map((s, i) => {
    const where = `streams[${i}]`;
    if (typeof s !== "object" || s === null) {
      throw new ConfigError("CONFIG_FILE", `${where} must be {name, url}`);
    }
    const { name, url, ...rest } = s as Record<string, unknown>;
    if (typeof name !== "string" || !STREAM_NAME.test(name)) {
      throw new ConfigError(
        "CONFIG_FILE",
        `${where}.name must be 1-64 letters, digits, _ or - (got ${JSON.stringify(name)})`,
      );
    }
    if (name === TMP_DIR) {
      // STORAGE_PATH/tmp is where clips are staged, emptied at every start (docs/storage.md).
      throw new ConfigError(
        "CONFIG_FILE",
        `${where}.name "${TMP_DIR}" is reserved for STORAGE_PATH/${TMP_DIR}`,
      );
    }
    if (seen.has(name)) {
      throw new ConfigError("CONFIG_FILE", `${where}.name ${JSON.stringify(name)} is used twice`);
    }
    seen.add(name);
    if (typeof url !== "string") {
      throw new ConfigError("CONFIG_FILE", `${where}.url must be a ws(s)://, http(s):// or rtsp(s):// URL`);
    }
    return stream(
      name,
      sourceUrl(`CONFIG_FILE ${where}.url`, url),
      encodeSettings(`CONFIG_FILE ${where}`, rest, base),
    );
  });
}

function stream(
  name: string,
  u: { url: string; shownUrl: string; source: SourceKind },
  encode: EncodeSettings,
): StreamConfig {
  return { name, ...u, encode: u.source === "camera" ? encode : null };
}

/**
 * Reads and validates the configuration from environment variables (and CONFIG_FILE for several
 * streams). Throws ConfigError naming the first bad variable.
 *
 * @example
 * const config = loadConfig(Deno.env.toObject());
 */
export function loadConfig(env: Env, readTextFile: (p: string) => string = Deno.readTextFileSync): Config {
  const level = (env.LOG_LEVEL ?? "info").trim().toLowerCase() || "info";
  if (!LEVELS.includes(level as Level)) {
    throw new ConfigError(
      "LOG_LEVEL",
      `expected one of ${LEVELS.join(", ")}, got ${JSON.stringify(env.LOG_LEVEL)}`,
    );
  }
  const file = env.CONFIG_FILE ? readConfigFile(env.CONFIG_FILE, readTextFile) : null;
  if (file) {
    // The file's settings apply where the environment leaves them unset or empty; every other
    // variable keeps its meaning (AMQP_URL="" still turns publishing off).
    const fromFile = Object.entries(storageSettings(file)).filter(([k]) => !env[k]);
    env = { ...env, ...Object.fromEntries(fromFile) };
  }
  // The video-store attributes in the file are every camera's defaults; the environment wins over them.
  const base = file
    ? encodeSettings("CONFIG_FILE", { framerate: file.framerate, video: file.video }, DEFAULT_ENCODE)
    : DEFAULT_ENCODE;
  const encode: EncodeSettings = {
    fps: decimal(env, "CAMERA_FRAMERATE", base.fps, 0.1, 120)!,
    bitrateKbps: Math.round(int(env, "VIDEO_BITRATE", base.bitrateKbps * 1000, 10_000, 100_000_000) / 1000),
    preset: oneOf(env, "VIDEO_PRESET", PRESETS, base.preset as typeof PRESETS[number]),
  };
  const fileStreams = file ? streamsOf(file, encode) : null;
  const url = env.VIDEO_STREAM_URL || "ws://127.0.0.1:5001/ws/video/consume";
  const storagePath = env.STORAGE_PATH ?? "./recordings";
  if (storagePath.trim() === "") throw new ConfigError("STORAGE_PATH", "must not be empty");
  const httpHost = env.HTTP_HOST ?? "127.0.0.1";
  if (!/^[A-Za-z0-9.:\-\[\]]+$/.test(httpHost)) {
    throw new ConfigError("HTTP_HOST", `expected a host name or IP address, got ${JSON.stringify(httpHost)}`);
  }
  const config: Config = {
    streams: fileStreams ?? [stream("default", sourceUrl("VIDEO_STREAM_URL", url), encode)],
    streamsFromFile: fileStreams !== null,
    configFile: env.CONFIG_FILE || null,
    ffmpegPath: env.FFMPEG_PATH || null,
    thumbnails: bool(env, "THUMBNAILS", true),
    storagePath,
    recorderId: recorderId(env.RECORDER_ID),
    indexUrl: indexUrl(env.INDEX_URL),
    archive: archiveConfig(env),
    keepLocalUntilArchived: bool(env, "KEEP_LOCAL_UNTIL_ARCHIVED", false),
    chunkMs: SECOND * int(env, "VIDEO_CHUNK_DURATION_SECONDS", 60, 1, 86_400),
    chunkCut: oneOf(env, "VIDEO_CHUNK_CUT", ["keyframe", "exact"] as const, "keyframe"),
    idleMs: SECOND * int(env, "VIDEO_IDLE_TIMEOUT_SECONDS", 10, 1, 86_400),
    minChunkFrames: int(env, "MIN_CHUNK_FRAMES", 30, 1, 1_000_000),
    sessionIdleMs: SECOND * int(env, "SESSION_IDLE_TIMEOUT_SECONDS", 300, 1, 7 * 86_400),
    fragmentMs: int(env, "FRAGMENT_DURATION_MS", 1000, 100, 60_000),
    httpHost,
    httpPort: int(env, "HTTP_PORT", 8080, 0, 65_535),
    metricsPort: int(env, "METRICS_PORT", 8005, 0, 65_535),
    logLevel: level as Level,
    logFormat: oneOf(env, "LOG_FORMAT", FORMATS, "auto"),
    streamTimeoutMs: SECOND * int(env, "STREAM_TIMEOUT_SECONDS", 15, 1, 3600),
    reconnectMaxMs: SECOND * int(env, "RECONNECT_MAX_SECONDS", 30, 1, 3600),
    supervisorMaxRestarts: int(env, "SUPERVISOR_MAX_RESTARTS", 5, 0, 1000),
    supervisorWindowMs: SECOND * int(env, "SUPERVISOR_WINDOW_SECONDS", 60, 1, 86_400),
    queueFrames: int(env, "QUEUE_FRAMES", 600, 10, 100_000),
    gopCacheBytes: MIB * int(env, "GOP_CACHE_MB", 32, 0, 4096),
    fsyncFragments: bool(env, "FSYNC_FRAGMENTS", true),
    uploadPath: env.UPLOAD_PATH || "./uploads",
    storageBudgetBytes: scaled(GIB, decimal(env, "STORAGE_SIZE_GB", null, 0.001, 1_000_000)),
    retentionMaxAgeMs: scaled(HOUR, decimal(env, "RETENTION_MAX_AGE_HOURS", null, 0.001, 1_000_000)),
    minFreeDiskBytes: scaled(GIB, decimal(env, "MIN_FREE_DISK_GB", 1, 0, 1_000_000))!,
    janitorIntervalMs: SECOND * int(env, "JANITOR_INTERVAL_SECONDS", 30, 1, 86_400),
    fetchMaxBytes: int(env, "FETCH_MAX_BYTES", 32 * 1024 * 1024, 1024, 2 ** 31),
    clipMaxConcurrent: int(env, "CLIP_MAX_CONCURRENT", 16, 1, 10_000),
    apiToken: env.API_TOKEN || null,
    rangeGapMs: int(env, "RANGE_MERGE_GAP_MS", 1000, 0, 3_600_000),
    amqpUrl: amqpUrl(env.AMQP_URL),
    eventsExchange: env.EVENTS_EXCHANGE || "storage_events_exchange",
    eventsExchangeType: oneOf(env, "EVENTS_EXCHANGE_TYPE", ["fanout", "topic", "direct"] as const, "fanout"),
    eventsRetentionMs: HOUR * int(env, "EVENTS_RETENTION_HOURS", 24, 1, 24 * 365),
  };
  if (config.keepLocalUntilArchived && !config.archive) {
    throw new ConfigError("KEEP_LOCAL_UNTIL_ARCHIVED", "needs ARCHIVE_URL (there is no archive to wait for)");
  }
  if (config.idleMs >= config.sessionIdleMs) {
    throw new ConfigError(
      "VIDEO_IDLE_TIMEOUT_SECONDS",
      `must be less than SESSION_IDLE_TIMEOUT_SECONDS (${config.sessionIdleMs / SECOND}), got ${
        config.idleMs / SECOND
      }`,
    );
  }
  return config;
}
