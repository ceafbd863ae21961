/**
 * What the recorder must be allowed to do, derived from its configuration: `deno task start` and
 * `deno task compile` grant exactly this (src/app/launch.ts), and start-up refuses to run without it.
 */
import type { Config } from "./config.ts";
import type { ArchiveConfig } from "../store/archive/keys.ts";

/** One permission, and the variable that asks for it (named when it is missing). */
export interface Need {
  variable: string;
  descriptor:
    | { name: "net"; host: string }
    | { name: "read" | "write"; path: string }
    | { name: "sys"; kind: "statfs" | "setPriority" | "hostname" | "osRelease" }
    | { name: "run"; command: string };
}

const DEFAULT_PORTS: Record<string, string> = {
  "ws:": "80",
  "wss:": "443",
  "http:": "80",
  "https:": "443",
  "amqp:": "5672",
  "amqps:": "5671",
  "postgres:": "5432",
  "postgresql:": "5432",
};

function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || DEFAULT_PORTS[url.protocol]}`;
}

/** The host the S3 client connects to: AWS_ENDPOINT_URL's, or AWS's for the region (the bucket's own name unless path style). */
function archiveHost(a: ArchiveConfig): string {
  if (a.endpoint) return hostPort(new URL(a.endpoint));
  return `${a.forcePathStyle ? "" : `${a.bucket}.`}s3.${a.region}.amazonaws.com:443`;
}

function listenAddress(host: string, port: number): string {
  return `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`;
}

/**
 * Everything the configuration needs: the relays, HTTP cameras and the broker it connects to, the
 * addresses it listens on, a fleet's PostgreSQL index, its storage and upload folders (read and
 * write), CONFIG_FILE (read), statfs for the free-space figures, the host name when it names the
 * recorder (no RECORDER_ID), and ffmpeg (run) only when a camera or RTSP stream needs it
 * (and setPriority, to lower the encoder's, only for a camera)
 * (ffmpeg, not the recorder, connects to an RTSP camera). Nothing else: no other subprocess, no
 * other files. Paths go through `path`
 * (the launcher makes them absolute so a compiled binary does not depend on its working folder).
 *
 * @example
 * permissionsNeeded(loadConfig({}))[0]; // {variable: "VIDEO_STREAM_URL", descriptor: {name: "net", host: "127.0.0.1:5001"}}
 */
export function permissionsNeeded(config: Config, path: (p: string) => string = (p) => p): Need[] {
  const needs: Need[] = [];
  config.streams.forEach((s, i) => {
    const variable = config.streamsFromFile ? `CONFIG_FILE streams[${i}].url` : "VIDEO_STREAM_URL";
    if (s.source !== "rtsp") {
      needs.push({ variable, descriptor: { name: "net", host: hostPort(new URL(s.url)) } });
    }
    if (s.source !== "relay") {
      needs.push({
        variable: "FFMPEG_PATH",
        descriptor: { name: "run", command: config.ffmpegPath ?? "ffmpeg" },
      });
      if (s.source === "camera") {
        // To run the encoder below the recorder's priority (actors/encoder.ts); RTSP is copied, not encoded.
        needs.push({ variable: "FFMPEG_PATH", descriptor: { name: "sys", kind: "setPriority" } });
      }
    }
  });
  if (config.thumbnails && config.ffmpegPath) {
    needs.push({ variable: "THUMBNAILS", descriptor: { name: "run", command: config.ffmpegPath } });
  }
  if (config.amqpUrl) {
    needs.push({
      variable: "AMQP_URL",
      descriptor: { name: "net", host: hostPort(new URL(config.amqpUrl)) },
    });
  }
  for (
    const [variable, port] of [["HTTP_PORT", config.httpPort], ["METRICS_PORT", config.metricsPort]] as const
  ) {
    needs.push({ variable, descriptor: { name: "net", host: listenAddress(config.httpHost, port) } });
  }
  for (const [variable, p] of [["STORAGE_PATH", config.storagePath], ["UPLOAD_PATH", config.uploadPath]]) {
    needs.push(
      { variable, descriptor: { name: "read", path: path(p) } },
      { variable, descriptor: { name: "write", path: path(p) } },
    );
  }
  if (config.configFile) {
    needs.push({ variable: "CONFIG_FILE", descriptor: { name: "read", path: path(config.configFile) } });
  }
  if (config.indexUrl) {
    needs.push({
      variable: "INDEX_URL",
      descriptor: { name: "net", host: hostPort(new URL(config.indexUrl)) },
    });
  }
  if (config.archive) {
    needs.push({ variable: "ARCHIVE_URL", descriptor: { name: "net", host: archiveHost(config.archive) } });
    // The AWS SDK names the OS release in its User-Agent.
    needs.push({ variable: "ARCHIVE_URL", descriptor: { name: "sys", kind: "osRelease" } });
  }
  if (config.recorderId === null) {
    needs.push({ variable: "RECORDER_ID", descriptor: { name: "sys", kind: "hostname" } });
  }
  needs.push({ variable: "MIN_FREE_DISK_GB", descriptor: { name: "sys", kind: "statfs" } });
  return needs;
}

/**
 * The `deno run`/`deno compile` flags that grant `needs` and nothing more, plus `--allow-env` (the
 * configuration is the environment). Commas in paths are doubled, as Deno's flag lists escape them.
 *
 * @example
 * permissionFlags(permissionsNeeded(loadConfig({}))); // ["--allow-net=127.0.0.1:5001,...", "--allow-read=./recordings,./uploads", ...]
 */
export function permissionFlags(needs: Need[]): string[] {
  const flags = (["net", "read", "write", "sys", "run"] as const).map((name) => {
    const values = new Set(needs.filter((n) => n.descriptor.name === name).map((n) => value(n.descriptor)));
    return values.size > 0 ? `--allow-${name}=${[...values].join(",")}` : null;
  });
  return [...flags.filter((f): f is string => f !== null), "--allow-env"];
}

function value(d: Need["descriptor"]): string {
  return "host" in d
    ? d.host
    : "path" in d
    ? d.path.replaceAll(",", ",,")
    : "command" in d
    ? d.command
    : d.kind;
}

/**
 * The first need this process was not granted, or null. A missing one is refused at start-up
 * with its variable named, rather than failing later in the middle of a recording.
 *
 * @example
 * const missing = firstMissing(permissionsNeeded(config));
 * if (missing) throw new ConfigError(missing.variable, `not permitted: ${describe(missing)}`);
 */
export function firstMissing(
  needs: Need[],
  state: (d: Need["descriptor"]) => Deno.PermissionState = (d) => Deno.permissions.querySync(d).state,
): Need | null {
  return needs.find((n) => state(n.descriptor) !== "granted") ?? null;
}

/** A need in the words of the flag that grants it: `--allow-write=/data/rec`. */
export function describe(need: Need): string {
  return `--allow-${need.descriptor.name}=${value(need.descriptor)}`;
}
