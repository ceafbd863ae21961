import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { type Config, ConfigError, needsFfmpeg } from "./config.ts";

/**
 * The ffmpeg binary: FFMPEG_PATH, else ffmpeg-static's binary if its install step put one there
 * (it downloads from GitHub, so it is often absent), else the static ffmpeg that the npm package
 * `@ffmpeg-installer/linux-x64` carries inside it (no install step: it arrives with `deno install`
 * on a fresh x86-64 Linux machine), else `ffmpeg` on PATH. Null when none runs.
 *
 * @example
 * const ffmpeg = await resolveFfmpeg();
 * if (!ffmpeg) console.error("cameras need ffmpeg");
 */
export async function resolveFfmpeg(env = Deno.env.toObject()): Promise<string | null> {
  for (const candidate of [() => env.FFMPEG_PATH, staticBinary, installerBinary, () => "ffmpeg"]) {
    const bin = candidate();
    if (!bin) continue;
    try {
      const { success } = await new Deno.Command(bin, { args: ["-version"], stdout: "null", stderr: "null" })
        .output();
      if (success) return bin;
    } catch {
      // not there: try the next one
    }
  }
  return null;
}

const require = createRequire(import.meta.url);

function staticBinary(): string | undefined {
  try {
    const path = require("ffmpeg-static") as string | null;
    if (path) Deno.statSync(path);
    return path ?? undefined;
  } catch {
    return undefined;
  }
}

function installerBinary(): string | undefined {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return undefined;
  try {
    return join(dirname(require.resolve("@ffmpeg-installer/linux-x64/package.json")), "ffmpeg");
  } catch {
    return undefined;
  }
}

/**
 * `config` with its ffmpeg: FFMPEG_PATH, which must run, else the first of `resolveFfmpeg` that
 * runs. A camera or RTSP stream needs one: none refuses the start, naming FFMPEG_PATH. Otherwise
 * only thumbnails want it, and without one they are off. (Not being allowed to run it is left to
 * the permission check.)
 *
 * @example
 * const config = await withFfmpeg(loadConfig(Deno.env.toObject()));
 */
export async function withFfmpeg(config: Config, env = Deno.env.toObject()): Promise<Config> {
  const users = needsFfmpeg(config);
  if (users.length === 0 && !config.thumbnails) return config;
  if (env.FFMPEG_PATH) {
    try {
      const { success, stderr } = await new Deno.Command(env.FFMPEG_PATH, { args: ["-version"] }).output();
      if (!success) throw new Error(new TextDecoder().decode(stderr).trim() || "exit status not 0");
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable) return config;
      throw new ConfigError(
        "FFMPEG_PATH",
        `${env.FFMPEG_PATH} does not run: ${e instanceof Error ? e.message : e}`,
      );
    }
    return config;
  }
  const ffmpegPath = await resolveFfmpeg(env);
  if (!ffmpegPath && users.length > 0) {
    throw new ConfigError(
      "FFMPEG_PATH",
      `stream ${users[0].name} (${users[0].source}) needs ffmpeg, and none of ffmpeg-static, ` +
        "@ffmpeg-installer/linux-x64 (deno install) or ffmpeg on PATH runs: set FFMPEG_PATH",
    );
  }
  return ffmpegPath ? { ...config, ffmpegPath } : { ...config, thumbnails: false };
}
