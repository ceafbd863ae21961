/**
 * The recorder process, configured from the environment: run by `deno task start`'s launcher
 * (src/app/launch.ts) with the permissions its configuration needs, or as the compiled binary.
 */
import { ConfigError, loadConfig, refuse } from "./config.ts";
import { logger, setLogFormat, setLogLevel } from "../runtime/log.ts";
import { describe, firstMissing, permissionsNeeded } from "./permissions.ts";
import { withFfmpeg } from "./ffmpeg.ts";
import { type Service, startService } from "./service.ts";

const SHUTDOWN_DEADLINE_MS = 5000;
const PERMISSION_REMEDY =
  "start it with `deno task start`, or rebuild the binary with `deno task compile` under this configuration";

/**
 * Runs the recorder until SIGINT/SIGTERM (exit 0 after a clean stop, within 5 s) or an
 * escalation (exit 70). A bad configuration prints one line naming the variable and exits 2.
 *
 * @example
 * await runRecorder(Deno.env.toObject());
 */
export async function runRecorder(
  env: Record<string, string | undefined>,
  onStop?: () => Promise<void>,
  onStart?: (service: Service) => void,
): Promise<never> {
  try {
    const asked = loadConfig(env);
    const config = await withFfmpeg(asked, env as Record<string, string>);
    const missing = firstMissing(permissionsNeeded(config));
    if (missing) {
      throw new ConfigError(
        missing.variable,
        `this process lacks ${describe(missing)}; ${PERMISSION_REMEDY}`,
      );
    }
    setLogLevel(config.logLevel);
    setLogFormat(config.logFormat);
    const log = logger("main");
    if (asked.thumbnails && !config.thumbnails) log.warn("thumbnails off: no ffmpeg runs here (FFMPEG_PATH)");
    // Listen before starting: a signal during start-up must stop cleanly, not kill the process.
    let service: Service | null = null;
    let stopRequested = false;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => {
        // A terminal's Ctrl-C reaches both the launcher, which forwards it, and this process.
        if (stopRequested) return;
        log.info("shutting down", { signal });
        const deadline = setTimeout(() => {
          log.error("shutdown took longer than 5 s; exiting");
          Deno.exit(1);
        }, SHUTDOWN_DEADLINE_MS);
        Deno.unrefTimer(deadline);
        stopRequested = true;
        service?.stop();
      });
    }
    service = await startService(config);
    onStart?.(service);
    if (stopRequested) service.stop();
    const code = await service.done;
    await onStop?.();
    Deno.exit(code);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    refuse(e);
  }
}

if (import.meta.main) await runRecorder(Deno.env.toObject());
