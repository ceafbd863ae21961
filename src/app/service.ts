import { join } from "node:path";
import { logger } from "../runtime/log.ts";
import { Metrics } from "../runtime/metrics.ts";
import { Supervisor } from "../runtime/supervisor.ts";
import { type BrokerStatus, Conditions, type StreamStatus, streamStatus } from "../serve/health.ts";
import { ChunkIndex, RECORDER_NAME } from "../store/index/chunk_index.ts";
import { archiveKeys } from "../store/archive/keys.ts";
import { ArchiveClient } from "../store/archive/s3.ts";
import type { ArchiveStatus } from "../../actors/uploader.ts";
import { IndexChanges } from "../store/index/index_changes.ts";
import { Leases } from "../store/leases.ts";
import { OpenChunks } from "../store/open_chunks.ts";
import { recover, type RecoveryOptions } from "../store/recovery.ts";
import { type Queue, registerActors, type Shared } from "./actors.ts";
import { type Config, ConfigError, StartupError } from "./config.ts";
import { type Endpoints, openEndpoints } from "./endpoints.ts";

export interface Service {
  httpPort: number;
  metricsPort: number;
  metrics: Metrics;
  index: ChunkIndex;
  supervisor: Supervisor;
  /** Every actor's mailbox, for queue metrics and fault-injection tests. */
  mailboxes: Queue[];
  /** Graceful stop: open chunks closed complete, index and metadata updated. Resolves with the exit code. */
  stop(): Promise<number>;
  /** Resolves with the exit code when the service has stopped (after stop() or an escalation). */
  done: Promise<number>;
}

/**
 * Starts the recorder: recovery from the index, then the actors under the supervisor (the indexer,
 * then per stream its writer, segmenter and connection), then the HTTP and metrics endpoints.
 *
 * @example
 * const service = await startService(loadConfig(Deno.env.toObject()));
 * Deno.addSignalListener("SIGTERM", () => service.stop());
 * Deno.exit(await service.done);
 */
export async function startService(config: Config): Promise<Service> {
  const log = logger("service");
  const root = config.storagePath;
  try {
    await Deno.mkdir(root, { recursive: true });
  } catch (e) {
    throw new ConfigError("STORAGE_PATH", `cannot create ${root}: ${e instanceof Error ? e.message : e}`);
  }
  const index = await openIndex(config, root);
  const metrics = new Metrics();
  const openChunks = new OpenChunks();
  const changes = new IndexChanges();
  const leases = new Leases();
  const layout = { root, multiStream: config.streams.length > 1 };
  const settings = { chunkMs: config.chunkMs, idleMs: config.idleMs };
  const recovery: RecoveryOptions = {
    index,
    layout,
    settings,
    metrics,
    openChunks,
    defaultStream: config.streams[0]?.name ?? "default",
    videoUrlOf: (name) => config.streams.find((s) => s.name === name)?.shownUrl ?? "",
  };
  const initial = await recover(recovery);

  const supervisor = new Supervisor({
    maxRestarts: config.supervisorMaxRestarts,
    windowMs: config.supervisorWindowMs,
    onRestart: (actor, stream) => metrics.actorRestarts.inc({ actor, stream: stream ?? "" }),
  });
  const brokerStatus: BrokerStatus = { state: "off", lastError: null };
  const archiveStatus: ArchiveStatus = { state: config.archive ? "ok" : "off", lastError: null };
  const archive = config.archive ? new ArchiveClient(config.archive) : null;
  const conditions = new Conditions();
  const streams = new Map<string, StreamStatus>(
    config.streams.map((s) => [s.name, streamStatus(Date.now())]),
  );
  const shared: Shared = {
    index,
    changes,
    leases,
    openChunks,
    metrics,
    layout,
    settings,
    recovery,
    brokerStatus,
    archive,
    archiveStatus,
    conditions,
    streams,
  };
  const queues = registerActors(supervisor, config, shared, initial);
  let endpoints: Endpoints;
  try {
    endpoints = await openEndpoints(config, shared, supervisor, queues);
  } catch (e) {
    archive?.destroy();
    await index.close();
    throw e;
  }
  const clips = endpoints.clips;

  // Both ports are bound before anything records: a port in use stops the start, not a recording.
  await supervisor.start();
  await clips.start();

  const done = supervisor.done.then(async (code) => {
    await clips.stop();
    await endpoints.close();
    archive?.destroy();
    await index.close();
    log.info("stopped", { exitCode: code });
    return code;
  });
  log.info("recording", {
    recorder: index.recorder,
    streams: config.streams.map((s) => s.name),
    storage: root,
    index: index.engine,
  });
  return {
    httpPort: endpoints.api.port,
    metricsPort: endpoints.metrics.port,
    metrics,
    index,
    supervisor,
    mailboxes: queues,
    stop: () => {
      supervisor.shutdown();
      return done;
    },
    done,
  };
}

/** RECORDER_ID, or the host name when it is unset (refused, naming RECORDER_ID, if it cannot be one). */
function recorderId(config: Config): string {
  if (config.recorderId) return config.recorderId;
  const host = Deno.hostname();
  if (!RECORDER_NAME.test(host)) {
    throw new ConfigError(
      "RECORDER_ID",
      `unset, and the host name ${JSON.stringify(host)} cannot name a recorder`,
    );
  }
  return host;
}

/** The index: SQLite in STORAGE_PATH, or the fleet's PostgreSQL (unreachable: exit 69, naming INDEX_URL). */
async function openIndex(config: Config, root: string): Promise<ChunkIndex> {
  const recorder = recorderId(config);
  const keys = config.archive ? archiveKeys(config.archive) : null;
  if (!config.indexUrl) return await ChunkIndex.open(join(root, "index.db"), recorder, keys);
  try {
    return await ChunkIndex.open(config.indexUrl, recorder, keys);
  } catch (e) {
    throw new StartupError("INDEX_URL", `cannot open the index: ${e instanceof Error ? e.message : e}`);
  }
}
