/**
 * Entry point of `deno task start` and `deno task compile`. Deno's permissions are fixed when a
 * process starts, and the hosts and folders the recorder needs are in its configuration, so this
 * reads the configuration and then runs src/app/main.ts in a child Deno granted exactly
 * `permissionsNeeded` (or compiles it into a binary with those baked in). The launcher itself
 * reads only the configuration and touches no network and no recorded file.
 *
 *   deno run --allow-read --allow-env --allow-run src/app/launch.ts start
 *   deno run --allow-read --allow-env --allow-run src/app/launch.ts compile [output]
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Config, ConfigError, loadConfig, refuse } from "./config.ts";
import { logger, setLogFormat, setLogLevel } from "../runtime/log.ts";
import { permissionFlags, permissionsNeeded } from "./permissions.ts";
import { withFfmpeg } from "./ffmpeg.ts";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));

/**
 * The `deno` arguments that run (or compile) the recorder under `config`.
 *
 * @example
 * launchArgs("start", loadConfig(Deno.env.toObject())); // ["run", "--no-prompt", "--allow-net=127.0.0.1:5001,...", ..., "/…/src/main.ts"]
 */
export function launchArgs(mode: "start" | "compile", config: Config, output = "dist/skyreel"): string[] {
  const flags = permissionFlags(permissionsNeeded(config, (p) => resolve(p)));
  return mode === "start"
    ? ["run", "--no-prompt", ...flags, MAIN]
    : ["compile", ...flags, "--output", output, MAIN];
}

/**
 * What the recorder's process gets in its environment beyond the configuration. glibc's malloc
 * raises its mmap threshold to the size of each large block freed (up to 32 MB), after which
 * blocks that size (clip reads, fragments) come from its heaps and stay with the process when
 * freed, growing with later bursts; a fixed threshold keeps them mapped, so they go back to the system
 * when freed. Bench sections 7 and 8: after 50 concurrent clips RSS stayed 194-259 MB above its
 * level before, 33-68 MB 30 s after with it; the price is a fresh mapping a read, so a 10-minute
 * clip takes 2.2x `cat` of its chunks instead of 1.1-1.5x. An operator's own setting wins
 * (33554432 buys the speed back with the memory).
 *
 * @example
 * recorderEnv({}); // { MALLOC_MMAP_THRESHOLD_: "131072" }
 */
export function recorderEnv(env: Record<string, string | undefined>): Record<string, string> {
  return env.MALLOC_MMAP_THRESHOLD_ === undefined ? { MALLOC_MMAP_THRESHOLD_: "131072" } : {};
}

async function main(mode: string | undefined, output: string | undefined): Promise<never> {
  if (mode !== "start" && mode !== "compile") {
    console.error("usage: launch.ts start | compile [output]");
    Deno.exit(64);
  }
  let config: Config;
  try {
    config = await withFfmpeg(loadConfig(Deno.env.toObject()));
  } catch (e) {
    if (e instanceof ConfigError) refuse(e);
    throw e;
  }
  setLogLevel(config.logLevel);
  setLogFormat(config.logFormat);
  const args = launchArgs(mode, config, output);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    env: {
      ...(mode === "start" ? recorderEnv(Deno.env.toObject()) : {}),
      // The ffmpeg granted is the one the recorder runs.
      ...(config.ffmpegPath ? { FFMPEG_PATH: config.ffmpegPath } : {}),
    },
    stdin: "inherit",
  }).spawn();
  logger("launcher").info(mode === "start" ? "starting" : "compiling", { pid: child.pid, args });
  // systemd, tini and `deno task` signal this process; the recorder must hear it to close its chunk.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    });
  }
  const status = await child.status;
  Deno.exit(status.code);
}

if (import.meta.main) await main(Deno.args[0], Deno.args[1]);
