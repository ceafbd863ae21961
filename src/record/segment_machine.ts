import { assign, emit, enqueueActions, or, raise, setup, type SnapshotFrom } from "xstate";
import type { Frame } from "../ingest/h264/frame_parser.ts";

/** Why a chunk was closed. Only "duration" gives a full-length (non-partial) chunk. */
export type CloseReason = "duration" | "idle" | "params" | "frame-rate" | "session-end" | "shutdown";

/**
 * Where chunks roll over: at the keyframe nearest the target duration, or at the first frame at or
 * after it (the chunk after it then starts mid-GOP with the GOP carried, decode-only).
 */
export type ChunkCut = "keyframe" | "exact";

export interface SegmentTiming {
  chunkMs: number;
  idleMs: number;
  minFrames: number;
  sessionIdleMs: number;
  cut: ChunkCut;
}

export interface SegmentInput extends SegmentTiming {
  /** An open session left by a previous run (crash): the recording continues it if still fresh. */
  resume?: { lastFrameMs: number } | null;
}

/** Events the segment machine accepts. `now` and `ts` are wall-clock ms: the clock is the caller's. */
export type SegmentEvent =
  | {
    type: "FRAME";
    frame: Frame;
    /** The frames since the last keyframe are at hand, so a chunk can start at this frame. */
    carry: boolean;
    /** The newest keyframe interval (the one this frame ends, if it is a keyframe); null before two. */
    keyIntervalMs: number | null;
  }
  | { type: "TICK"; now: number }
  /**
   * Routine frames (see `routine`) the caller wrote to the open chunk itself: `frames` of them, the
   * last at `lastFrameMs`. Sent before any other event, so the machine decides on the true count.
   */
  | { type: "WROTE"; frames: number; lastFrameMs: number }
  /** The writer restarted: its open chunk is gone (recovery closes it). */
  | { type: "RESET" }
  /**
   * A frame of the open chunk never reached the writer (its queue was full): the frames after it
   * refer to a picture the chunk lacks, so they are skipped until the next keyframe.
   */
  | { type: "FRAME_LOST" }
  | { type: "STOP" };

/** What the machine asks its actor to do. */
export type SegmentCommand =
  | { type: "session-start"; ts: number }
  | { type: "session-end"; ts: number; reason: "idle" | "shutdown" }
  /** `carried`: the chunk starts mid-GOP; the GOP so far goes first, decode-only. */
  | { type: "chunk-open"; frame: Frame; carried: boolean }
  | { type: "write"; frame: Frame }
  | { type: "chunk-close"; reason: CloseReason; partial: boolean; endTs?: number }
  /** A frame not recorded: before a chunk could start, or (`afterDrop`) after a lost frame. */
  | { type: "skip"; frame: Frame; afterDrop?: boolean };

interface Context extends SegmentTiming {
  lastFrameMs: number | null;
  chunk: { startMs: number; frames: number; paramsKey: string; gridTicks: number } | null;
}

export type FrameEvent = Extract<SegmentEvent, { type: "FRAME" }>;
const frameOf = (e: SegmentEvent) => (e as FrameEvent).frame;
const nowOf = (e: SegmentEvent) => e.type === "FRAME" ? e.frame.ts : e.type === "TICK" ? e.now : 0;

/**
 * Decides where chunks and sessions begin and end. Pure: it sees frames and clock ticks and emits
 * commands; the segmenter actor does the I/O. A chunk starts at a keyframe, or at any frame whose
 * GOP so far is at hand to carry (after an idle close, or an exact cut). It rolls over at the
 * keyframe nearest `chunkMs` (judged by the last keyframe interval), or with `cut: "exact"` at the
 * first frame at or after it; no frame is lost or shown twice between chunks. A session (a flight)
 * is a state: `outside` until a chunk can start, then `session` until no frame came for
 * `sessionIdleMs`. Every wait for a keyframe is here: before a chunk can start (`outside`,
 * `session.waiting`) and after a frame the writer lost (`session.recording.broken`, entered on
 * FRAME_LOST; the chunk stays open).
 *
 * @example
 * const actor = createActor(segmentMachine, { input: timing });
 * actor.on("*", (cmd) => commands.push(cmd));
 * actor.start();
 * actor.send({ type: "FRAME", frame });
 * actor.send({ type: "TICK", now: Date.now() });
 */
const sessionExpired = (c: Context, now: number, lastFrameMs = c.lastFrameMs) =>
  lastFrameMs !== null && now - lastFrameMs >= c.sessionIdleMs;
const paramsChanged = (c: Context, frame: Frame) => frame.params?.key !== c.chunk?.paramsKey;
const gridChanged = (c: Context, frame: Frame) => frame.gridTicks !== c.chunk?.gridTicks;
function rolloverDue(c: Context, { frame, carry, keyIntervalMs }: FrameEvent): boolean {
  const elapsed = frame.ts - c.chunk!.startMs;
  if (c.cut === "exact") return elapsed >= c.chunkMs && (frame.keyframe || carry);
  // This keyframe, unless the next one (a key interval on) lands nearer the target.
  return frame.keyframe && elapsed >= c.chunkMs - (keyIntervalMs ?? 0) / 2;
}

/**
 * Whether `event` would only be written to the open chunk: the machine is in
 * `session.recording.intact` and no guard of that state holds for it (with `lastFrameMs`, the last
 * frame the caller wrote since the machine's last event, if any, as the machine's own). The caller
 * may then write it without the machine, and report such frames in one WROTE before the next
 * event: the per-frame path costs no transition, while every decision stays the machine's, made by
 * the same guards.
 */
export function routine(
  snapshot: SnapshotFrom<typeof segmentMachine>,
  event: FrameEvent,
  lastFrameMs?: number,
): boolean {
  const c = snapshot.context;
  // In `session.recording` a chunk is always open.
  return snapshot.matches({ session: { recording: "intact" } }) &&
    !event.frame.keyframe && !sessionExpired(c, event.frame.ts, lastFrameMs) &&
    !paramsChanged(c, event.frame) && !gridChanged(c, event.frame) && !rolloverDue(c, event);
}

/**
 * A frame or tick after the session's idle timeout ends the open chunk and the session; a frame
 * is then handled again outside the session (it may open the next one).
 */
const sessionTimeout = (then: "reFrame" | null) => ({
  guard: "sessionExpired",
  target: "#segment.outside",
  actions: [{ type: "endSession", params: { reason: "idle" } }, ...(then ? [then] : [])],
} as const);

export const segmentMachine = setup({
  types: {
    context: {} as Context,
    events: {} as SegmentEvent,
    input: {} as SegmentInput,
    emitted: {} as SegmentCommand,
  },
  guards: {
    resumed: ({ context }) => context.lastFrameMs !== null,
    keyframe: ({ event }) => frameOf(event).keyframe,
    carry: ({ event }) => (event as FrameEvent).carry,
    sessionExpired: ({ context, event }) => sessionExpired(context, nowOf(event)),
    idleDue: ({ context, event }) =>
      context.chunk !== null && context.chunk.frames >= context.minFrames &&
      nowOf(event) - (context.lastFrameMs ?? 0) >= context.idleMs,
    paramsChanged: ({ context, event }) => paramsChanged(context, frameOf(event)),
    gridChanged: ({ context, event }) => gridChanged(context, frameOf(event)),
    rolloverDue: ({ context, event }) => rolloverDue(context, event as FrameEvent),
  },
  actions: {
    write: enqueueActions(({ context, event, enqueue }) => {
      const frame = frameOf(event);
      enqueue.emit({ type: "write", frame });
      enqueue.assign({
        lastFrameMs: frame.ts,
        chunk: { ...context.chunk!, frames: context.chunk!.frames + 1 },
      });
    }),
    skip: enqueueActions(({ event, enqueue }, params?: { afterDrop: boolean }) => {
      enqueue.emit({ type: "skip", frame: frameOf(event), afterDrop: params?.afterDrop });
      enqueue.assign({ lastFrameMs: frameOf(event).ts });
    }),
    startSession: emit(({ event }) => ({ type: "session-start", ts: frameOf(event).ts })),
    openChunk: enqueueActions(({ event, enqueue }) => {
      const frame = frameOf(event);
      enqueue.emit({ type: "chunk-open", frame, carried: !frame.keyframe });
      enqueue.assign({
        chunk: { startMs: frame.ts, frames: 0, paramsKey: frame.params!.key, gridTicks: frame.gridTicks },
      });
    }),
    closeChunk: enqueueActions(({ event, enqueue }, params: { reason: CloseReason }) => {
      // A frame ended the chunk: its last frame lasts until this one.
      const endTs = event.type === "FRAME" ? frameOf(event).ts : undefined;
      enqueue.emit({
        type: "chunk-close",
        reason: params.reason,
        partial: params.reason !== "duration",
        endTs,
      });
      enqueue.assign({ chunk: null });
    }),
    /** Closes the open chunk, if any (its last frame does not last over the session's gap). */
    endSession: enqueueActions(({ context, enqueue }, params: { reason: "idle" | "shutdown" }) => {
      if (context.chunk) {
        const reason = params.reason === "idle" ? "session-end" : "shutdown";
        enqueue.emit({ type: "chunk-close", reason, partial: true });
        enqueue.assign({ chunk: null });
      }
      enqueue.emit({ type: "session-end", ts: context.lastFrameMs ?? 0, reason: params.reason });
    }),
    wrote: assign(({ context, event }) => {
      const { frames, lastFrameMs } = event as Extract<SegmentEvent, { type: "WROTE" }>;
      return { lastFrameMs, chunk: { ...context.chunk!, frames: context.chunk!.frames + frames } };
    }),
    dropChunk: assign({ chunk: null }),
    // Re-handle the frame in the state just entered (e.g. it opens the next chunk).
    reFrame: raise(({ event }) => event),
  },
}).createMachine({
  id: "segment",
  context: ({ input }) => ({
    chunkMs: input.chunkMs,
    idleMs: input.idleMs,
    minFrames: input.minFrames,
    sessionIdleMs: input.sessionIdleMs,
    cut: input.cut,
    lastFrameMs: input.resume?.lastFrameMs ?? null,
    chunk: null,
  }),
  initial: "starting",
  states: {
    /** A session left open by a crash is this run's until it expires. */
    starting: { always: [{ guard: "resumed", target: "session" }, { target: "outside" }] },
    /** No session: the first frame that can start a chunk starts one. */
    outside: {
      on: {
        FRAME: [
          {
            guard: or(["keyframe", "carry"]),
            target: "session.recording",
            actions: ["startSession", "openChunk", "write"],
          },
          { actions: "skip" },
        ],
        STOP: "stopped",
      },
    },
    /** Frames keep coming, none more than `sessionIdleMs` after the last. */
    session: {
      initial: "waiting",
      states: {
        /** No chunk open: the next frame that can start one (a keyframe, or one with its GOP at hand) does. */
        waiting: {
          on: {
            FRAME: [
              sessionTimeout("reFrame"),
              { guard: or(["keyframe", "carry"]), target: "recording", actions: ["openChunk", "write"] },
              { actions: "skip" },
            ],
          },
        },
        /** A chunk is open. */
        recording: {
          initial: "intact",
          states: {
            /** Every frame since the chunk opened reached the writer. */
            intact: {
              on: {
                FRAME: [
                  sessionTimeout("reFrame"),
                  {
                    guard: "paramsChanged",
                    target: "#segment.session.waiting",
                    actions: [{ type: "closeChunk", params: { reason: "params" } }, "reFrame"],
                  },
                  {
                    guard: "gridChanged",
                    target: "#segment.session.waiting",
                    actions: [{ type: "closeChunk", params: { reason: "frame-rate" } }, "reFrame"],
                  },
                  {
                    guard: "rolloverDue",
                    target: "#segment.session.waiting",
                    actions: [{ type: "closeChunk", params: { reason: "duration" } }, "reFrame"],
                  },
                  { actions: "write" },
                ],
                WROTE: { actions: "wrote" },
                FRAME_LOST: "broken",
              },
            },
            /** A frame was lost: the chunk stays open, frames are skipped until a keyframe. */
            broken: {
              on: {
                FRAME: [
                  sessionTimeout("reFrame"),
                  { guard: "keyframe", target: "intact", actions: "reFrame" },
                  { actions: { type: "skip", params: { afterDrop: true } } },
                ],
              },
            },
          },
          on: {
            TICK: [
              sessionTimeout(null),
              {
                guard: "idleDue",
                target: "waiting",
                actions: { type: "closeChunk", params: { reason: "idle" } },
              },
            ],
            RESET: { target: "waiting", actions: "dropChunk" },
          },
        },
      },
      on: {
        TICK: sessionTimeout(null),
        STOP: { target: "stopped", actions: { type: "endSession", params: { reason: "shutdown" } } },
      },
    },
    stopped: { type: "final" },
  },
});
