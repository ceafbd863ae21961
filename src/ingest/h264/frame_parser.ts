import { type AccessUnit, AccessUnitAssembler, type ParamSets } from "./access_unit.ts";
import { AnnexBSplitter, splitAnnexB, type TimedNal } from "./annexb.ts";
import { NalType, nalType } from "./nal.ts";
import { PacketType, parseProducerPacket } from "./producer_packet.ts";

export type { ParamSets };

/** A frame as the recorder stores it: an MP4 sample (4-byte length-prefixed NAL units). */
export interface Frame {
  /**
   * Its time in wall-clock ms: the arrival of its first byte, until the frame clock places it on
   * the stream's grid (src/ingest/frame_clock.ts).
   */
  ts: number;
  /** Arrival of its first byte (or the producer's timestamp), wall-clock ms. */
  arrival: number;
  /** The grid step, in 90 kHz ticks, that `ts` lies on; 0 until the frame clock has placed it. */
  gridTicks: number;
  /** An IDR picture whose parameter sets are known: a chunk may start here. */
  keyframe: boolean;
  /** A slice could not be parsed; the picture is not decodable. */
  corrupt: boolean;
  /** It may lack slices: the stream ended while it was in progress, or joined it after its first slice. */
  incomplete: boolean;
  /** A picture before it was passed on without all its slices, so it may refer to a damaged one. */
  gapBefore: boolean;
  data: Uint8Array;
  params: ParamSets | null;
  /** frame_num of its slices; null while its parameter sets are unknown. */
  frameNum: number | null;
  /** nal_ref_idc is not 0: later pictures may refer to it. */
  reference: boolean;
}

/** Counts of input the parser refused; each is also a metric. */
export interface ParserCounts {
  badHeaders: number;
  badEscapes: number;
  badSei: number;
  badParamSets: number;
  badSlices: number;
  strayNals: number;
  badTimestamps: number;
  badPackets: number;
  discardedBytes: number;
  oversizedNals: number;
  lateSlices: number;
  splitNals: number;
}

/**
 * A producer timestamp this far from the arrival clock (anchored at the first packet) is not
 * believed: the anchor moves so that the packet is timed by its arrival. Wider than any stall a
 * burst makes up for, far narrower than a clock reset or a garbage timestamp.
 */
const TIMESTAMP_TOLERANCE_MS = 30_000;

/**
 * A picture completed at the end of a message is passed on without the next message after this
 * long without one: many frame intervals, so a message that follows at the stream's pace (and may
 * show the picture's last unit was cut) is always waited for.
 */
const SETTLE_MS = 250;

// Carried in the sample entry's avcC, or meaningless inside an MP4 sample.
const OUT_OF_SAMPLE = new Set<number>([NalType.sps, NalType.pps, NalType.aud, 10, 11, 12]);

/**
 * Turns WebSocket messages from the relay into frames. Each message is either plain Annex-B
 * (timestamped with its arrival time) or a producer packet (timestamped with its own clock,
 * anchored to the arrival time of the first such packet, re-anchored when it strays over 30 s from
 * arrival). NAL units are validated first (src/ingest/h264/nal_check.ts, parameter sets, slice headers);
 * what fails is counted by reason and never stored. Pure: no I/O, no clock of its own.
 *
 * @example
 * const parser = new FrameParser();
 * for (const msg of messages) frames.push(...parser.message(msg.bytes, msg.arrivedAt));
 * frames.push(...parser.end());
 */
export class FrameParser {
  #splitter = new AnnexBSplitter();
  #assembler = new AccessUnitAssembler();
  #anchorMs: number | null = null;
  #badPackets = 0;
  #badTimestamps = 0;
  /**
   * The frame the last NAL unit of the last message completed by its slice layout: held until the
   * next message shows whether that unit was whole, or until `settle` finds the stream paused, so
   * the verdict does not depend on when the caller's timer runs. `since`: that unit's arrival.
   */
  #held: { frame: Frame; since: number } | null = null;
  /** The time of the units given to `unit` since the last picture it completed. */
  #unitTs: number | null = null;

  get counts(): ParserCounts {
    return {
      ...this.#assembler.refused,
      badTimestamps: this.#badTimestamps,
      badPackets: this.#badPackets,
      discardedBytes: this.#splitter.discardedBytes,
      oversizedNals: this.#splitter.oversizedNals,
      lateSlices: this.#assembler.lateSlices,
      splitNals: this.#splitter.splitNals,
    };
  }

  message(bytes: Uint8Array, arrivedAt: number): Frame[] {
    let packet;
    try {
      packet = parseProducerPacket(bytes);
    } catch {
      this.#badPackets++;
      return [];
    }
    if (!packet) return this.#nals(this.#splitter.push(bytes, arrivedAt));
    if (packet.type === PacketType.config) return [];
    // A packet holds whole NAL units: the one a previous Annex-B message left open is complete.
    const out = this.#nals(this.#splitter.flush());
    let ts = arrivedAt;
    if (packet.type !== PacketType.sps && packet.type !== PacketType.pps) {
      this.#anchorMs ??= arrivedAt - packet.timestamp / 1000;
      ts = this.#anchorMs + packet.timestamp / 1000;
      if (!(Math.abs(ts - arrivedAt) <= TIMESTAMP_TOLERANCE_MS)) {
        this.#badTimestamps++;
        this.#anchorMs = arrivedAt - packet.timestamp / 1000;
        ts = arrivedAt;
      }
    }
    return out.concat(this.#nals(this.#payloadNals(packet.payload, ts)));
  }

  /**
   * NAL units a container gave with their time `ts` (ffmpeg's FLV output: one tag a picture from
   * its encoder, but a picture may come in several tags with one time from RTSP, where a producer
   * repeats parameter sets between slices). Units with another time than the last complete the
   * picture before them. `whole`: the container frames pictures, so this one ends here, with no
   * lookahead. Parameter sets alone make no frame.
   */
  unit(nals: Uint8Array[], ts: number, whole = true): Frame[] {
    const frames: Frame[] = [];
    if (this.#unitTs !== ts) this.#completeUnit(frames);
    this.#unitTs = ts;
    for (const data of nals) {
      for (const au of this.#assembler.push({ data, ts })) frames.push(this.#frame(au));
    }
    if (whole) this.#completeUnit(frames);
    return frames;
  }

  #completeUnit(frames: Frame[]): void {
    const last = this.#assembler.complete();
    if (last) frames.push(this.#frame(last));
    this.#unitTs = null;
  }

  /** The stream ended (connection closed): the picture in progress comes out marked `incomplete`. */
  end(): Frame[] {
    const frames = this.#nals(this.#splitter.flush());
    frames.push(...this.settle());
    const last = this.#assembler.flush();
    if (last) frames.push(this.#frame(last));
    return frames;
  }

  /**
   * The held frame (see `#held`) if no message came for SETTLE_MS up to `now` (wall-clock ms, the
   * clock of `message`'s `arrivedAt`): the stream paused after a whole NAL unit. For the caller's
   * timer; without `now`, the frame comes out at once.
   */
  settle(now = Infinity): Frame[] {
    const held = this.#held;
    if (!held || now - held.since < SETTLE_MS) return [];
    this.#held = null;
    return [held.frame];
  }

  /** Arrival of the earliest byte not yet in a frame passed on, if any: no frame still to come is older. */
  get pendingSince(): number | null {
    let at = this.#held?.frame.ts ?? null;
    for (const t of [this.#assembler.pendingSince, this.#splitter.pendingSince]) {
      if (t !== null && (at === null || t < at)) at = t;
    }
    return at;
  }

  #payloadNals(payload: Uint8Array, ts: number): TimedNal[] {
    return payload[0] === 0 ? splitAnnexB(payload, ts) : [{ data: payload, ts }];
  }

  #nals(nals: TimedNal[]): Frame[] {
    const frames = this.settle();
    if (this.#splitter.damaged) {
      this.#splitter.damaged = false;
      // The NAL unit cut short was the last one pushed: if it completed a picture by its layout,
      // that picture (held) is damaged, and so may be those after it.
      const damaged = frames[0];
      if (damaged) {
        damaged.corrupt = true;
        damaged.keyframe = false;
      }
      this.#assembler.damage();
    }
    let completedByLast: Frame | null = null;
    for (const nal of nals) {
      completedByLast = null;
      for (const au of this.#assembler.push(nal)) {
        const frame = this.#frame(au);
        if (au.completion === "layout") completedByLast = frame;
        frames.push(frame);
      }
    }
    if (completedByLast && frames.at(-1) === completedByLast) {
      this.#held = { frame: frames.pop()!, since: nals.at(-1)!.ts };
    }
    return frames;
  }

  #frame(au: AccessUnit): Frame {
    let size = 0;
    for (const n of au.nals) if (!OUT_OF_SAMPLE.has(nalType(n))) size += 4 + n.length;
    const data = new Uint8Array(size);
    const view = new DataView(data.buffer);
    let at = 0;
    for (const n of au.nals) {
      if (OUT_OF_SAMPLE.has(nalType(n))) continue;
      view.setUint32(at, n.length);
      data.set(n, at + 4);
      at += 4 + n.length;
    }
    return {
      ts: au.ts,
      arrival: au.ts,
      gridTicks: 0,
      keyframe: au.idr && !au.corrupt && !au.incomplete && au.params !== null,
      corrupt: au.corrupt,
      incomplete: au.incomplete,
      gapBefore: au.gapBefore,
      data,
      params: au.params,
      frameNum: au.slice?.picture?.frameNum ?? null,
      reference: au.slice?.reference ?? false,
    };
  }
}
