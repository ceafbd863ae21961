import { AccessUnitAssembler } from "./access_unit.ts";
import { BitReader } from "./bits.ts";
import { AnnexBSplitter, splitAnnexB, type TimedNal } from "./annexb.ts";
import { NalType, nalType } from "./nal.ts";
import { PacketType, parseProducerPacket } from "./producer_packet.ts";
import { parseSps, type SpsInfo } from "./sps.ts";

/** The parameter sets in force for a frame; a new object each time any of them changes. */
export interface ParamSets {
  version: number;
  sps: Uint8Array[];
  pps: Uint8Array[];
  info: SpsInfo;
}

/** A frame as the recorder stores it: an MP4 sample (4-byte length-prefixed NAL units). */
export interface Frame {
  ts: number;
  /** An IDR picture whose parameter sets are known: a chunk may start here. */
  keyframe: boolean;
  /** A slice could not be parsed; the picture is not decodable. */
  corrupt: boolean;
  data: Uint8Array;
  params: ParamSets | null;
}

/** Counts of input the parser refused; each is also a metric. */
export interface ParserCounts {
  badNals: number;
  badPackets: number;
  discardedBytes: number;
  oversizedNals: number;
}

// Carried in the sample entry's avcC, or meaningless inside an MP4 sample.
const OUT_OF_SAMPLE = new Set<number>([NalType.sps, NalType.pps, NalType.aud, 10, 11, 12]);

/**
 * Turns WebSocket messages from the relay into frames. Each message is either plain Annex-B
 * (timestamped with its arrival time) or a producer packet (timestamped with its own clock,
 * anchored to the arrival time of the first such packet). Pure: no I/O, no clock of its own.
 *
 * @example
 * const parser = new FrameParser();
 * for (const msg of messages) frames.push(...parser.message(msg.bytes, msg.arrivedAt));
 * frames.push(...parser.end());
 */
export class FrameParser {
  #splitter = new AnnexBSplitter();
  #assembler = new AccessUnitAssembler();
  #sps = new Map<number, Uint8Array>();
  #pps = new Map<number, Uint8Array>();
  #params: ParamSets | null = null;
  #paramsDirty = false;
  #version = 0;
  #anchorMs: number | null = null;
  #badPackets = 0;
  #badParamSets = 0;

  get counts(): ParserCounts {
    return {
      badNals: this.#assembler.badNals + this.#badParamSets,
      badPackets: this.#badPackets,
      discardedBytes: this.#splitter.discardedBytes,
      oversizedNals: this.#splitter.oversizedNals,
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
    if (!packet) return this.#nals(this.#splitter.push(bytes, arrivedAt), false);
    if (packet.type === PacketType.config) return [];
    const out = this.#nals(this.#splitter.flush(), false);
    if (packet.type === PacketType.sps || packet.type === PacketType.pps) {
      return out.concat(this.#nals(this.#payloadNals(packet.payload, arrivedAt), false));
    }
    this.#anchorMs ??= arrivedAt - packet.timestamp / 1000;
    const ts = this.#anchorMs + packet.timestamp / 1000;
    // The unit may have begun with a preceding SPS/PPS packet; the frame packet's clock rules.
    const frames = this.#nals(this.#payloadNals(packet.payload, ts), true);
    for (const f of frames) f.ts = ts;
    return out.concat(frames);
  }

  /** The stream ended (connection closed): everything buffered is complete. */
  end(): Frame[] {
    return this.#nals(this.#splitter.flush(), true);
  }

  #payloadNals(payload: Uint8Array, ts: number): TimedNal[] {
    return payload[0] === 0 ? splitAnnexB(payload, ts) : [{ data: payload, ts }];
  }

  #nals(nals: TimedNal[], complete: boolean): Frame[] {
    const frames: Frame[] = [];
    for (const nal of nals) {
      const type = nalType(nal.data);
      if (type === NalType.sps || type === NalType.pps) this.#paramSet(nal.data, type);
      const au = this.#assembler.push(nal);
      if (au) frames.push(this.#frame(au.ts, au.idr, au.corrupt, au.nals));
    }
    if (complete) {
      const au = this.#assembler.flush();
      if (au) frames.push(this.#frame(au.ts, au.idr, au.corrupt, au.nals));
    }
    return frames;
  }

  #paramSet(nal: Uint8Array, type: number): void {
    try {
      const map = type === NalType.sps ? this.#sps : this.#pps;
      const id = type === NalType.sps ? parseSps(nal).spsId : ppsId(nal);
      const old = map.get(id);
      if (old && equalBytes(old, nal)) return;
      map.set(id, nal.slice());
      this.#paramsDirty = true;
    } catch {
      this.#badParamSets++;
    }
  }

  #frame(ts: number, idr: boolean, corrupt: boolean, nals: Uint8Array[]): Frame {
    if (this.#paramsDirty && this.#sps.size > 0 && this.#pps.size > 0) {
      this.#paramsDirty = false;
      const sps = [...this.#sps.values()];
      this.#params = { version: ++this.#version, sps, pps: [...this.#pps.values()], info: parseSps(sps[0]) };
    }
    let size = 0;
    for (const n of nals) if (!OUT_OF_SAMPLE.has(nalType(n))) size += 4 + n.length;
    const data = new Uint8Array(size);
    const view = new DataView(data.buffer);
    let at = 0;
    for (const n of nals) {
      if (OUT_OF_SAMPLE.has(nalType(n))) continue;
      view.setUint32(at, n.length);
      data.set(n, at + 4);
      at += 4 + n.length;
    }
    return { ts, keyframe: idr && !corrupt && this.#params !== null, corrupt, data, params: this.#params };
  }
}

function ppsId(nal: Uint8Array): number {
  const id = new BitReader(nal, 1).ue();
  if (id > 255) throw new RangeError(`PPS id ${id} out of range`);
  return id;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
