import { Camera } from "../../actors/camera.ts";
import { Connection } from "../../actors/connection.ts";
import { Encoder } from "../../actors/encoder.ts";
import { Rtsp } from "../../actors/rtsp.ts";
import { Indexer } from "../../actors/indexer.ts";
import { Janitor, type JanitorMsg } from "../../actors/janitor.ts";
import { Publisher } from "../../actors/publisher.ts";
import { Segmenter } from "../../actors/segmenter.ts";
import { Writer } from "../../actors/writer.ts";
import { type ArchiveStatus, Uploader } from "../../actors/uploader.ts";
import type { ArchiveClient } from "../store/archive/s3.ts";
import { Mailbox } from "../runtime/actor.ts";
import type { Metrics } from "../runtime/metrics.ts";
import type { Supervisor } from "../runtime/supervisor.ts";
import {
  type EncoderMsg,
  type IndexerMsg,
  messageBytes,
  type SegmenterMsg,
  type WriterMsg,
} from "../record/messages.ts";
import type { BrokerStatus, Conditions, StreamStatus } from "../serve/health.ts";
import type { ChunkIndex } from "../store/index/chunk_index.ts";
import type { IndexChanges } from "../store/index/index_changes.ts";
import type { Layout } from "../store/layout.ts";
import type { Leases } from "../store/leases.ts";
import type { MetadataSettings } from "../store/metadata.ts";
import type { OpenChunks } from "../store/open_chunks.ts";
import { applyAudit, recover, type RecoveryOptions, type RecoveryReport } from "../store/recovery.ts";
import type { Config, StreamConfig } from "./config.ts";

/** What the actors share, each part with its one writer (docs/storage.md, "Who writes the index"). */
export interface Shared {
  index: ChunkIndex;
  changes: IndexChanges;
  leases: Leases;
  openChunks: OpenChunks;
  metrics: Metrics;
  layout: Layout;
  settings: MetadataSettings;
  recovery: RecoveryOptions;
  /** Owner: the publisher. */
  brokerStatus: BrokerStatus;
  /** The archive's client (ARCHIVE_URL), null without one: the uploader writes, clips read. */
  archive: ArchiveClient | null;
  /** Owner: the uploader. */
  archiveStatus: ArchiveStatus;
  /** Owners: the writers and the indexer, each of its own conditions. */
  conditions: Conditions;
  /** Owner: each stream's connection. */
  streams: Map<string, StreamStatus>;
}

/** A mailbox, for the queue-size metrics. */
export interface Queue {
  actor: string;
  stream: string;
  box: Mailbox<any>;
}

const MAILBOX_BYTES = 64 * 1024 * 1024;

/**
 * A stream's source, by its URL (docs/cameras.md): the relay's connection; a camera and its
 * encoder (the camera registered last, so it stops first and the encoder gives back what it
 * holds); or an RTSP session.
 */
function registerSource(
  supervisor: Supervisor,
  config: Config,
  shared: Shared,
  stream: StreamConfig,
  segmenter: Mailbox<SegmenterMsg>,
  indexer: Mailbox<IndexerMsg>,
  queues: Queue[],
): void {
  const { metrics } = shared;
  const status = shared.streams.get(stream.name)!;
  const link = { timeoutMs: config.streamTimeoutMs, reconnectMaxMs: config.reconnectMaxMs };
  const source = { name: stream.source === "relay" ? "connection" : stream.source, stream: stream.name };
  if (stream.source === "relay") {
    supervisor.register({
      ...source,
      mailbox: new Mailbox<never>(1),
      create: () => new Connection({ stream, segmenter, indexer, metrics, status, ...link }),
    });
  } else if (stream.source === "rtsp") {
    supervisor.register({
      ...source,
      mailbox: new Mailbox<never>(1),
      create: () =>
        new Rtsp({ stream, ffmpeg: config.ffmpegPath!, segmenter, indexer, metrics, status, ...link }),
    });
  } else {
    const encoderBox = new Mailbox<EncoderMsg>(config.queueFrames, MAILBOX_BYTES, messageBytes);
    queues.push({ actor: "encoder", stream: stream.name, box: encoderBox });
    supervisor.register({
      name: "encoder",
      stream: stream.name,
      mailbox: encoderBox,
      create: () =>
        new Encoder({
          stream: stream.name,
          ffmpeg: config.ffmpegPath!,
          settings: stream.encode!,
          segmenter,
          metrics,
          hangMs: config.streamTimeoutMs,
          restartMaxMs: config.reconnectMaxMs,
        }),
    });
    supervisor.register({
      ...source,
      mailbox: new Mailbox<never>(1),
      create: () =>
        new Camera({
          stream,
          encoder: encoderBox,
          indexer,
          metrics,
          status,
          fps: stream.encode!.fps,
          ...link,
        }),
    });
  }
}

/**
 * Registers every actor with `supervisor`: the publisher first (so it stops last, after the
 * indexer committed the final events), the indexer, the janitor, then per stream its writer,
 * segmenter and connection. `initial` is the start-up recovery: the sessions recording resumes.
 */
export function registerActors(
  supervisor: Supervisor,
  config: Config,
  shared: Shared,
  initial: RecoveryReport,
): Queue[] {
  const { index, changes, leases, openChunks, metrics, layout, settings, recovery, conditions } = shared;
  const { brokerStatus } = shared;
  const root = layout.root;
  supervisor.register({
    name: "publisher",
    mailbox: new Mailbox<never>(1),
    create: () =>
      new Publisher({
        index,
        changes,
        url: config.amqpUrl,
        exchange: config.eventsExchange,
        exchangeType: config.eventsExchangeType,
        retentionMs: config.eventsRetentionMs,
        reconnectMaxMs: config.reconnectMaxMs,
        metrics,
        status: brokerStatus,
      }),
  });
  if (shared.archive) {
    const archive = shared.archive;
    supervisor.register({
      name: "uploader",
      mailbox: new Mailbox<never>(1),
      create: () =>
        new Uploader({
          index,
          changes,
          leases,
          archive,
          storagePath: root,
          uploadPath: config.uploadPath,
          retryMaxMs: config.reconnectMaxMs,
          metrics,
          status: shared.archiveStatus,
        }),
    });
  }
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
        changes,
        conditions,
        recover: async (stream) => (await recover({ ...recovery, stream })).resumable.get(stream) ?? null,
        applyAudit: (findings) => applyAudit(recovery, findings),
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
        changes,
        leases,
        root,
        settings,
        metrics,
        self: janitorBox,
        indexer: indexerBox,
        intervalMs: config.janitorIntervalMs,
        policy: {
          budgetBytes: config.storageBudgetBytes,
          maxAgeMs: config.retentionMaxAgeMs,
          minFreeBytes: config.minFreeDiskBytes,
          keepUntilArchived: config.keepLocalUntilArchived,
        },
      }),
  });
  const queues: Queue[] = [{
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
          videoUrl: stream.shownUrl,
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
    registerSource(supervisor, config, shared, stream, segmenterBox, indexerBox, queues);
  }
  return queues;
}
