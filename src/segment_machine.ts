import { assign, enqueueActions, raise, setup } from "xstate";
import type { Frame } from "./h264/frame_parser.ts";

/** Why a chunk was closed. Only "duration" gives a full-length (non-partial) chunk. */
export type CloseReason = "duration" | "idle" | "params" | "session-end" | "shutdown";

export interface SegmentTiming {
  chunkMs: number;
  idleMs: number;
  minFrames: number;
  sessionIdleMs: number;
}

export interface SegmentInput extends SegmentTiming {
  /** An open session left by a previous run (crash): the recording continues it if still fresh. */
  resume?: { lastFrameMs: number } | null;
}

/** Events the segment machine accepts. `now` and `ts` are wall-clock ms: the clock is the caller's. */
export type SegmentEvent =
  | { type: "FRAME"; frame: Frame }
  | { type: "TICK"; now: number }
  /** The writer restarted: its open chunk is gone (recovery closes it). */
  | { type: "RESET" }
  | { type: "STOP" };

/** What the machine asks its actor to do. */
export type SegmentCommand =
  | { type: "session-start"; ts: number }
  | { type: "session-end"; ts: number; reason: "idle" | "shutdown" }
  | { type: "chunk-open"; frame: Frame }
  | { type: "write"; frame: Frame }
  | { type: "chunk-close"; reason: CloseReason; partial: boolean; endTs?: number }
  | { type: "skip"; frame: Frame };

interface Context extends SegmentTiming {
  session: boolean;
  lastFrameMs: number | null;
  chunk: { startMs: number; frames: number; paramsVersion: number } | null;
}

const frameOf = (e: SegmentEvent) => (e as { frame: Frame }).frame;
const nowOf = (e: SegmentEvent) => e.type === "FRAME" ? e.frame.ts : e.type === "TICK" ? e.now : 0;

/**
 * Decides where chunks and sessions begin and end. Pure: it sees frames and clock ticks and emits
 * commands; the segmenter actor does the I/O. A chunk starts at a keyframe and rolls over at the
 * first keyframe at or after `chunkMs`, so no frame is lost or repeated between chunks.
 *
 * @example
 * const actor = createActor(segmentMachine, { input: timing });
 * actor.on("*", (cmd) => commands.push(cmd));
 * actor.start();
 * actor.send({ type: "FRAME", frame });
 * actor.send({ type: "TICK", now: Date.now() });
 */
export const segmentMachine = setup({
  types: {
    context: {} as Context,
    events: {} as SegmentEvent,
    input: {} as SegmentInput,
    emitted: {} as SegmentCommand,
  },
  guards: {
    keyframe: ({ event }) => frameOf(event).keyframe,
    sessionExpired: ({ context, event }) =>
      context.session && context.lastFrameMs !== null &&
      nowOf(event) - context.lastFrameMs >= context.sessionIdleMs,
    idleDue: ({ context, event }) =>
      context.chunk !== null && context.chunk.frames >= context.minFrames &&
      nowOf(event) - (context.lastFrameMs ?? 0) >= context.idleMs,
    paramsChanged: ({ context, event }) => frameOf(event).params?.version !== context.chunk?.paramsVersion,
    rolloverDue: ({ context, event }) =>
      frameOf(event).keyframe && frameOf(event).ts - context.chunk!.startMs >= context.chunkMs,
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
    skip: enqueueActions(({ event, enqueue }) => {
      enqueue.emit({ type: "skip", frame: frameOf(event) });
      enqueue.assign({ lastFrameMs: frameOf(event).ts });
    }),
    openChunk: enqueueActions(({ context, event, enqueue }) => {
      const frame = frameOf(event);
      if (!context.session) enqueue.emit({ type: "session-start", ts: frame.ts });
      enqueue.emit({ type: "chunk-open", frame });
      enqueue.assign({
        session: true,
        chunk: { startMs: frame.ts, frames: 0, paramsVersion: frame.params!.version },
      });
    }),
    closeChunk: enqueueActions(({ event, enqueue }, params: { reason: CloseReason }) => {
      const endTs = params.reason === "duration" ? frameOf(event).ts : undefined;
      enqueue.emit({
        type: "chunk-close",
        reason: params.reason,
        partial: params.reason !== "duration",
        endTs,
      });
      enqueue.assign({ chunk: null });
    }),
    endSession: enqueueActions(({ context, enqueue }, params: { reason: "idle" | "shutdown" }) => {
      if (!context.session) return;
      enqueue.emit({ type: "session-end", ts: context.lastFrameMs ?? 0, reason: params.reason });
      enqueue.assign({ session: false });
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
    session: !!input.resume,
    lastFrameMs: input.resume?.lastFrameMs ?? null,
    chunk: null,
  }),
  initial: "waitingForKeyframe",
  states: {
    waitingForKeyframe: {
      on: {
        FRAME: [
          {
            guard: "sessionExpired",
            actions: [{ type: "endSession", params: { reason: "idle" } }, "reFrame"],
          },
          { guard: "keyframe", target: "recording", actions: ["openChunk", "write"] },
          { actions: "skip" },
        ],
        TICK: { guard: "sessionExpired", actions: { type: "endSession", params: { reason: "idle" } } },
        STOP: { target: "stopped", actions: { type: "endSession", params: { reason: "shutdown" } } },
      },
    },
    recording: {
      on: {
        FRAME: [
          {
            guard: "sessionExpired",
            target: "waitingForKeyframe",
            actions: [
              { type: "closeChunk", params: { reason: "session-end" } },
              { type: "endSession", params: { reason: "idle" } },
              "reFrame",
            ],
          },
          {
            guard: "paramsChanged",
            target: "waitingForKeyframe",
            actions: [{ type: "closeChunk", params: { reason: "params" } }, "reFrame"],
          },
          {
            guard: "rolloverDue",
            target: "waitingForKeyframe",
            actions: [{ type: "closeChunk", params: { reason: "duration" } }, "reFrame"],
          },
          { actions: "write" },
        ],
        TICK: [
          {
            guard: "sessionExpired",
            target: "waitingForKeyframe",
            actions: [
              { type: "closeChunk", params: { reason: "session-end" } },
              { type: "endSession", params: { reason: "idle" } },
            ],
          },
          { guard: "idleDue", target: "idle", actions: { type: "closeChunk", params: { reason: "idle" } } },
        ],
        RESET: { target: "waitingForKeyframe", actions: "dropChunk" },
        STOP: {
          target: "stopped",
          actions: [
            { type: "closeChunk", params: { reason: "shutdown" } },
            { type: "endSession", params: { reason: "shutdown" } },
          ],
        },
      },
    },
    idle: {
      on: {
        FRAME: [
          {
            guard: "sessionExpired",
            target: "waitingForKeyframe",
            actions: [{ type: "endSession", params: { reason: "idle" } }, "reFrame"],
          },
          { guard: "keyframe", target: "recording", actions: ["openChunk", "write"] },
          { target: "waitingForKeyframe", actions: "skip" },
        ],
        TICK: {
          guard: "sessionExpired",
          target: "waitingForKeyframe",
          actions: { type: "endSession", params: { reason: "idle" } },
        },
        STOP: { target: "stopped", actions: { type: "endSession", params: { reason: "shutdown" } } },
      },
    },
    stopped: { type: "final" },
  },
});
