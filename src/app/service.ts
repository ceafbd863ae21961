import { join } from "node:path";
import { Connection } from "../../actors/connection.ts";
import { Indexer } from "../../actors/indexer.ts";
import { Janitor, type JanitorMsg } from "../../actors/janitor.ts";
import { Leases } from "../store/leases.ts";
import { Publisher } from "../../actors/publisher.ts";
import { Segmenter } from "../../actors/segmenter.ts";
import { Writer } from "../../actors/writer.ts";
import { Mailbox } from "../runtime/actor.ts";
import { type Config, ConfigError, StartupError } from "./config.ts";
import {
  type BrokerStatus,
  Conditions,
  healthReport,
  type StreamStatus,
  streamStatus,
} from "../serve/health.ts";
import { type HttpServer, json, serveHttp } from "../serve/http.ts";
import { ClipApi } from "../serve/clip/api.ts";
import { ChunkIndex } from "../store/index/chunk_index.ts";
import { IndexEvents } from "../store/index/index_events.ts";
import { logger } from "../runtime/log.ts";
import { type IndexerMsg, messageBytes, type SegmenterMsg, type WriterMsg } from "../record/messages.ts";
import { Metrics } from "../runtime/metrics.ts";
import { OpenChunks } from "../store/open_chunks.ts";
import { recover, type RecoveryOptions } from "../store/recovery.ts";
import { Supervisor } from "../runtime/supervisor.ts";

export interface Service {
  httpPort: number;
  metricsPort: number;
  metrics: Metrics;
  index: ChunkIndex;
  supervisor: Supervisor;
  /** Every actor's mailbox, for queue metrics and fault-injection tests. */
  mailboxes: { actor: string; stream: string; box: Mailbox<any> }[];
  /** Graceful stop: open chunks closed complete, index and metadata updated. Resolves with the exit code. */
  stop(): Promise<number>;
  /** Resolves with the exit code when the service has stopped (after stop() or an escalation). */
  done: Promise<number>;
}

const MAILBOX_BYTES = 64 * 1024 * 1024;

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
  const index = await ChunkIndex.open(join(root, "index.db"));
  const metrics = new Metrics();
  const openChunks = new OpenChunks();
  const events = new IndexEvents();
  const leases = new Leases();
  const layout = { root, multiStream: config.streams.length > 1 };
  const settings = { chunkMs: config.chunkMs, idleMs: config.idleMs };
  const recovery: RecoveryOptions = {
    index,
    layout,
    settings,
    metrics,
    openChunks,
    defaultStream: config.streams[0].name,
    videoUrlOf: (name) => config.streams.find((s) => s.name === name)?.url ?? "",
  };
  const initial = await recover(recovery);

  const supervisor = new Supervisor({
    maxRestarts: config.supervisorMaxRestarts,
    windowMs: config.supervisorWindowMs,
    onRestart: (actor, stream) => metrics.actorRestarts.inc({ actor, stream: stream ?? "" }),
  });
  const brokerStatus: BrokerStatus = { state: "off", lastError: null };
  const conditions = new Conditions();
  const streams = new Map<string, StreamStatus>(
    config.streams.map((s) => [s.name, streamStatus(Date.now())]),
  );
  // Registered first, so it stops last: after the indexer has committed the final events.
  supervisor.register({
    name: "publisher",
    mailbox: new Mailbox<never>(1),
    create: () =>
      new Publisher({
        index,
        events,
        url: config.amqpUrl,
        exchange: config.eventsExchange,
        exchangeType: config.eventsExchangeType,
        retentionMs: config.eventsRetentionMs,
        reconnectMaxMs: config.reconnectMaxMs,
        metrics,
        status: brokerStatus,
      }),
  });
  const indexerBox = new Mailbox<IndexerMsg>(100_000);
  supervisor.register({
    name: "indexer",
    mailbox: indexerBox,
    create: () =>
      new Indexer({
        index,
        root,
        settings,
        metrics,
        events,
        conditions,
        recover: async (stream) => (await recover({ ...recovery, stream })).resumable.get(stream) ?? null,
      }),
    afterRestart: async () => void await recover(recovery),
  });
  const janitorBox = new Mailbox<JanitorMsg>(4);
  supervisor.register({
    name: "janitor",
    mailbox: janitorBox,
    create: () =>
      new Janitor({
        index,
        events,
        leases,
        root,
        settings,
        metrics,
        self: janitorBox,
        intervalMs: config.janitorIntervalMs,
        policy: {
          budgetBytes: config.storageBudgetBytes,
          maxAgeMs: config.retentionMaxAgeMs,
          minFreeBytes: config.minFreeDiskBytes,
        },
      }),
  });
  const queues: { actor: string; stream: string; box: Mailbox<any> }[] = [{
    actor: "indexer",
    stream: "",
    box: indexerBox,
  }];
  for (const stream of config.streams) {
    const writerBox = new Mailbox<WriterMsg>(config.queueFrames, MAILBOX_BYTES, messageBytes);
    const segmenterBox = new Mailbox<SegmenterMsg>(config.queueFrames, MAILBOX_BYTES, messageBytes);
    queues.push({ actor: "writer", stream: stream.name, box: writerBox });
    queues.push({ actor: "segmenter", stream: stream.name, box: segmenterBox });
    let writerResume = initial.resumable.get(stream.name) ?? null;
    let segmenterResume = writerResume;
    supervisor.register({
      name: "writer",
      stream: stream.name,
      mailbox: writerBox,
      create: () =>
        new Writer({
          stream: stream.name,
          videoUrl: stream.url,
          layout,
          fragmentMs: config.fragmentMs,
          fsyncFragments: config.fsyncFragments,
          indexer: indexerBox,
          metrics,
          openChunks,
          self: writerBox,
          segmenter: segmenterBox,
          resume: writerResume,
          conditions,
        }),
      afterRestart: async () => {
        // The indexer runs the recovery, after what the failed writer sent it.
        writerResume = await new Promise((resolve, reject) => {
          const sent = indexerBox.send({ type: "recover", stream: stream.name, resolve, reject });
          if (!sent) reject(new Error("the indexer is not taking messages"));
        });
        segmenterBox.send({ type: "writer-reset", reason: "writer_restart" });
      },
    });
    supervisor.register({
      name: "segmenter",
      stream: stream.name,
      mailbox: segmenterBox,
      create: () =>
        new Segmenter({
          stream: stream.name,
          self: segmenterBox,
          writer: writerBox,
          metrics,
          gopCacheBytes: config.gopCacheBytes,
          input: {
            cut: config.chunkCut,
            chunkMs: config.chunkMs,
            idleMs: config.idleMs,
            minFrames: config.minChunkFrames,
            sessionIdleMs: config.sessionIdleMs,
            resume: segmenterResume,
          },
        }),
      afterRestart: async () => {
        segmenterResume = await index.openSessionOf(stream.name);
      },
    });
    supervisor.register({
      name: "connection",
      stream: stream.name,
      mailbox: new Mailbox<never>(1),
      create: () =>
        new Connection({
          stream,
          segmenter: segmenterBox,
          indexer: indexerBox,
          metrics,
          status: streams.get(stream.name)!,
          timeoutMs: config.streamTimeoutMs,
          reconnectMaxMs: config.reconnectMaxMs,
        }),
    });
  }
  const listen = async (
    variable: string,
    name: string,
    port: number,
    handler: (req: Request) => Response | Promise<Response>,
  ) => {
    try {
      return await serveHttp(name, config.httpHost, port, handler);
    } catch (e) {
      const where = `${config.httpHost}:${port}`;
      throw new StartupError(
        variable,
        (e as { code?: string }).code === "EADDRINUSE"
          ? `${where} is already in use`
          : `cannot listen on ${where}: ${e instanceof Error ? e.message : e}`,
      );
    }
  };
  const notFound = (req: Request) =>
    json({ error: `no route for ${req.method} ${new URL(req.url).pathname}` }, 404);
  const clips = new ClipApi({
    index,
    events,
    storagePath: root,
    uploadPath: config.uploadPath,
    streams: config.streams.map((s) => s.name),
    fetchMaxBytes: config.fetchMaxBytes,
    rangeGapMs: config.rangeGapMs,
    apiToken: config.apiToken,
    storageBudgetBytes: config.storageBudgetBytes,
    leases,
    metrics,
  });
  const apiRoutes = async (req: Request) => {
    if (new URL(req.url).pathname !== "/healthz") return clips.handle(req);
    const { status, body } = healthReport({
      now: Date.now(),
      actors: supervisor.health(),
      broker: brokerStatus,
      outbox: await index.outbox(),
      streams,
      conditions,
      streamTimeoutMs: config.streamTimeoutMs,
    });
    return json(body, status);
  };
  const scrape = async (req: Request) => {
    if (new URL(req.url).pathname !== "/metrics") return notFound(req);
    for (const q of queues) metrics.queueSize.set({ actor: q.actor, stream: q.stream }, q.box.size);
    const outbox = await index.outbox();
    metrics.outboxDepth.set(outbox.depth);
    metrics.outboxOldestAge.set(outbox.oldestMs === null ? 0 : (Date.now() - outbox.oldestMs) / 1000);
    return new Response(await metrics.registry.metrics(), {
      headers: { "content-type": metrics.registry.contentType },
    });
  };
  let api: HttpServer | null = null, metricsServer: HttpServer;
  try {
    api = await listen("HTTP_PORT", "http", config.httpPort, apiRoutes);
    metricsServer = await listen("METRICS_PORT", "metrics", config.metricsPort, scrape);
  } catch (e) {
    await api?.shutdown();
    await index.close();
    throw e;
  }

  // Both ports are bound before anything records: a port in use stops the start, not a recording.
  await supervisor.start();
  await clips.start();

  const done = supervisor.done.then(async (code) => {
    await clips.stop();
    await api!.shutdown();
    await metricsServer.shutdown();
    await index.close();
    log.info("stopped", { exitCode: code });
    return code;
  });
  log.info("recording", { streams: config.streams.map((s) => s.name), storage: root });
  return {
    httpPort: api!.port,
    metricsPort: metricsServer.port,
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
