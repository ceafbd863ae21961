import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerProcessMetrics } from "./process_metrics.ts";

/**
 * The service's Prometheus metrics, in a registry of its own (several services may share a
 * process in tests). Every dropped or skipped frame, reconnect and restart is counted here.
 *
 * @example
 * const m = new Metrics();
 * m.framesWritten.inc({ stream: "drone1" }, 30);
 * const text = await m.registry.metrics();
 */
export class Metrics {
  readonly registry = new Registry();
  readonly chunksSaved;
  readonly partialChunksSaved;
  readonly chunksRecovered;
  readonly framesWritten;
  readonly framesSkipped;
  readonly framesDropped;
  readonly badInput;
  readonly reconnects;
  readonly connectionEnds;
  readonly saveJobs;
  readonly saveJobsPending;
  readonly clipsRefused;
  readonly streamConnected;
  readonly textMessages;
  readonly actorRestarts;
  readonly chunkDuration;
  readonly currentChunkSize;
  readonly actualFps;
  readonly queueSize;
  readonly writeLatency;
  readonly eventsPublished;
  readonly publishFailures;
  readonly brokerReconnects;
  readonly outboxDepth;
  readonly archiveBytes;
  readonly archiveObjects;
  readonly archiveQueueDepth;
  readonly archiveQueueOldestAge;
  readonly archiveFailures;
  readonly archiveLosses;
  readonly outboxOldestAge;
  readonly chunksDeleted;
  readonly bytesDeleted;
  readonly storageUsed;
  readonly usageDrift;
  readonly storageLimit;
  readonly framesRetimed;
  readonly frameGrid;
  readonly gopCacheBytes;
  readonly gopCacheOverflows;
  readonly decodeOnlyFrames;
  readonly cameraFrames;
  readonly cameraErrors;
  readonly framesEncoded;
  readonly encoderRestarts;
  readonly encodeLatency;

  constructor() {
    const registers = [this.registry];
    registerProcessMetrics(this.registry);
    const counter = (name: string, help: string, labelNames: string[]) =>
      new Counter({ name, help, labelNames, registers });
    const gauge = (name: string, help: string, labelNames: string[]) =>
      new Gauge({ name, help, labelNames, registers });
    this.chunksSaved = counter("storage_video_chunks_saved_total", "Chunks closed and indexed", ["stream"]);
    this.partialChunksSaved = counter(
      "storage_partial_chunks_saved_total",
      "Chunks closed before their full duration (idle, shutdown, ...)",
      ["stream", "reason"],
    );
    this.chunksRecovered = counter("storage_chunks_recovered_total", "Torn chunks repaired at recovery", [
      "stream",
    ]);
    this.framesWritten = counter("storage_video_frames_written_total", "Frames appended to chunk files", [
      "stream",
    ]);
    this.framesSkipped = counter(
      "storage_frames_skipped_total",
      "Frames not recorded because a decoder could not decode them: before_keyframe, gap (frame_num shows a lost picture), after_drop, gop_not_cached",
      ["stream", "reason"],
    );
    this.framesDropped = counter(
      "storage_frames_dropped_total",
      "Frames lost: corrupt, incomplete (a connection ended in it or opened after its first slice), queue_full, no_open_chunk, disk_full; a camera's JPEGs: encoder_down (came while its encoder waited to restart), encoder_lost (its encoder exited or hung first), encoder_skipped (the encoder never gave it back)",
      ["stream", "reason"],
    );
    this.badInput = counter(
      "storage_bad_input_total",
      "Input refused: malformed NAL units and packets, discarded bytes, late slices, NAL units split across messages",
      ["stream", "kind"],
    );
    this.textMessages = counter(
      "storage_text_messages_total",
      "Text messages from the relay other than pong (logged at debug)",
      [
        "stream",
      ],
    );
    this.streamConnected = gauge("storage_stream_connected", "1 while the relay connection is open", [
      "stream",
    ]);
    this.reconnects = counter("storage_reconnects_total", "Connections to the relay re-established", [
      "stream",
    ]);
    this.connectionEnds = counter(
      "storage_stream_connection_ends_total",
      "Relay connections ended or attempts abandoned: handshake_timeout, refused, silent, lost (no close frame), closed",
      ["stream", "reason"],
    );
    this.saveJobs = counter(
      "storage_save_jobs_total",
      "Async saves: accepted, refused (429), done, failed, resumed (interrupted by a stop, run again)",
      ["outcome"],
    );
    this.saveJobsPending = gauge("storage_save_jobs_pending", "Async saves queued or running", []);
    this.clipsRefused = counter(
      "storage_clips_refused_total",
      "Clip reads (fetch, GET /api/clip) refused with 503: CLIP_MAX_CONCURRENT were being read",
      [],
    );
    this.actorRestarts = counter("storage_actor_restarts_total", "Actor restarts by the supervisor", [
      "actor",
      "stream",
    ]);
    this.chunkDuration = new Histogram({
      name: "storage_video_chunk_duration_seconds",
      help: "Media duration of closed chunks",
      labelNames: ["stream"],
      buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.currentChunkSize = gauge("storage_current_chunk_size_bytes", "Bytes written to the open chunk", [
      "stream",
    ]);
    this.actualFps = gauge("storage_actual_fps", "Frames per second measured over the last fragment", [
      "stream",
    ]);
    this.queueSize = gauge("storage_queue_size", "Messages waiting in an actor's mailbox", [
      "actor",
      "stream",
    ]);
    this.eventsPublished = counter("storage_events_published_total", "Events confirmed by the broker", [
      "type",
    ]);
    this.publishFailures = counter(
      "storage_event_publish_failures_total",
      "Broker connections or publishes that failed",
      [],
    );
    this.brokerReconnects = counter("storage_broker_reconnects_total", "Reconnections to the broker", []);
    this.outboxDepth = gauge(
      "storage_outbox_depth",
      "Events recorded but not yet confirmed by the broker",
      [],
    );
    this.outboxOldestAge = gauge(
      "storage_outbox_oldest_event_age_seconds",
      "Age of the oldest unsent event (0: none)",
      [],
    );
    this.archiveBytes = counter("storage_archive_bytes_uploaded_total", "Bytes sent to the archive", []);
    this.archiveObjects = counter(
      "storage_archive_objects_uploaded_total",
      "Files uploaded to the archive and verified there, by kind (chunk, clip)",
      ["kind"],
    );
    this.archiveQueueDepth = gauge("storage_archive_queue_depth", "Files waiting to be archived", []);
    this.archiveQueueOldestAge = gauge(
      "storage_archive_queue_oldest_age_seconds",
      "Age of the oldest file waiting to be archived (0: none)",
      [],
    );
    this.archiveFailures = counter(
      "storage_archive_failures_total",
      "Failed upload attempts, by reason: unreachable, timeout, http_<status>, checksum, size, other",
      ["reason"],
    );
    this.archiveLosses = counter(
      "storage_archive_losses_total",
      "Files gone before they were archived (deleted under the disk floor, or by hand), by kind",
      ["kind"],
    );
    this.chunksDeleted = counter("storage_chunks_deleted_total", "Chunks deleted by retention", ["reason"]);
    this.bytesDeleted = counter("storage_bytes_deleted_total", "Bytes freed by retention", ["reason"]);
    this.storageUsed = gauge("storage_used_bytes", "Chunks on disk plus the index, from the index", []);
    this.storageLimit = gauge("storage_limit_bytes", "STORAGE_SIZE_GB in bytes (0: no limit)", []);
    this.usageDrift = gauge(
      "storage_usage_drift_bytes",
      "Files on disk minus the index's count (a periodic walk checks it)",
      [],
    );
    this.framesRetimed = counter(
      "storage_frames_retimed_total",
      "Frames placed more than one grid step from their arrival (a burst laid out, or frames running late)",
      ["stream"],
    );
    this.frameGrid = gauge("storage_frame_grid_seconds", "The step of the stream's frame time grid", [
      "stream",
    ]);
    this.gopCacheBytes = gauge(
      "storage_gop_cache_bytes",
      "The last whole GOP's frames, as held to start a chunk mid-GOP (set at each keyframe)",
      ["stream"],
    );
    this.gopCacheOverflows = counter(
      "storage_gop_cache_overflows_total",
      "GOPs larger than GOP_CACHE_MB: a chunk cannot start in them before the next keyframe",
      ["stream"],
    );
    this.decodeOnlyFrames = counter(
      "storage_decode_only_frames_total",
      "Frames written again, hidden by the edit list, so that a chunk starting mid-GOP decodes on its own",
      ["stream"],
    );
    this.cameraFrames = counter(
      "storage_camera_frames_received_total",
      "Whole JPEGs received from an HTTP camera and handed to its encoder",
      ["stream"],
    );
    this.cameraErrors = counter(
      "storage_camera_errors_total",
      "Camera faults: http_status, not_jpeg, truncated_jpeg, oversized_part, timeout (hung), unreachable, lost (the camera or its stream went away)",
      ["stream", "reason"],
    );
    this.framesEncoded = counter(
      "storage_frames_encoded_total",
      "Pictures the encoder (ffmpeg) gave back, each timed by its JPEG",
      ["stream"],
    );
    this.encoderRestarts = counter(
      "storage_encoder_restarts_total",
      "ffmpeg child processes started again after one exited, hung or failed (encoder and RTSP)",
      ["stream"],
    );
    this.encodeLatency = new Histogram({
      name: "storage_encode_latency_seconds",
      help: "From a JPEG's first byte arriving to its encoded picture coming out of ffmpeg",
      labelNames: ["stream"],
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers,
    });
    this.writeLatency = new Histogram({
      name: "storage_frame_write_latency_seconds",
      help: "From a frame's first byte arriving to its fragment being written",
      labelNames: ["stream"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10],
      registers,
    });
  }
}
