import type { Supervisor } from "../runtime/supervisor.ts";
import { ClipApi } from "../serve/clip/api.ts";
import { consoleAsset } from "../serve/console.ts";
import { healthReport } from "../serve/health.ts";
import { Thumbnails } from "../serve/thumbnails.ts";
import { type HttpServer, json, serveHttp } from "../serve/http.ts";
import type { Queue, Shared } from "./actors.ts";
import { type Config, StartupError } from "./config.ts";

export interface Endpoints {
  api: HttpServer;
  metrics: HttpServer;
  clips: ClipApi;
  close(): Promise<void>;
}

/**
 * Binds the API (clips, commands, /healthz) on HTTP_PORT and /metrics on METRICS_PORT. A port that
 * cannot be bound is a StartupError naming its variable, and nothing is left listening.
 */
export async function openEndpoints(
  config: Config,
  shared: Shared,
  supervisor: Supervisor,
  queues: Queue[],
): Promise<Endpoints> {
  const { index, changes, leases, metrics, brokerStatus, streams, conditions } = shared;
  const root = shared.layout.root;
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
    changes,
    storagePath: root,
    uploadPath: config.uploadPath,
    streams: config.streams.map((s) => s.name),
    archive: shared.archive,
    fetchMaxBytes: config.fetchMaxBytes,
    clipMaxConcurrent: config.clipMaxConcurrent,
    rangeGapMs: config.rangeGapMs,
    apiToken: config.apiToken,
    storageBudgetBytes: config.storageBudgetBytes,
    leases,
    metrics,
    thumbnails: config.thumbnails && config.ffmpegPath ? new Thumbnails(root, config.ffmpegPath) : null,
  });
  const apiRoutes = async (req: Request) => {
    const path = new URL(req.url).pathname;
    const asset = consoleAsset(req.method, path);
    if (asset) return asset;
    if (path !== "/healthz") return clips.handle(req);
    const { status, body } = healthReport({
      now: Date.now(),
      recorder: index.recorder,
      index: index.engine,
      actors: supervisor.health(),
      broker: brokerStatus,
      outbox: await index.outbox(),
      archive: { ...shared.archiveStatus, ...await index.uploadQueue() },
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
    if (config.archive) {
      const q = await index.uploadQueue();
      metrics.archiveQueueDepth.set(q.depth);
      metrics.archiveQueueOldestAge.set(q.oldestMs === null ? 0 : (Date.now() - q.oldestMs) / 1000);
    }
    return new Response(await metrics.registry.metrics(), {
      headers: { "content-type": metrics.registry.contentType },
    });
  };
  let api: HttpServer | null = null;
  try {
    api = await listen("HTTP_PORT", "http", config.httpPort, apiRoutes);
    const metricsServer = await listen("METRICS_PORT", "metrics", config.metricsPort, scrape);
    return {
      api,
      metrics: metricsServer,
      clips,
      async close() {
        await api!.shutdown();
        await metricsServer.shutdown();
      },
    };
  } catch (e) {
    await api?.shutdown();
    throw e;
  }
}
