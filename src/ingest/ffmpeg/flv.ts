import { concat } from "../../runtime/bytes.ts";

/**
 * What an FLV stream from ffmpeg carries for H.264 video: the decoder configuration (SPS and PPS),
 * then one whole access unit a tag with its presentation time. ffmpeg writes this for the cameras'
 * encoder and for RTSP sources, because, unlike raw Annex-B, a tag is a whole picture (no
 * lookahead needed to end it) and carries its time.
 */
export type FlvVideo =
  | { type: "config"; nals: Uint8Array[] }
  | { type: "picture"; ptsMs: number; keyframe: boolean; nals: Uint8Array[] };

const HEADER_BYTES = 9;
const TAG_HEADER_BYTES = 11;
const PREVIOUS_SIZE_BYTES = 4;
const VIDEO_TAG = 9;
const CODEC_AVC = 7;
/** No sane camera picture is larger; a bigger tag size means the stream is not FLV. */
const MAX_TAG_BYTES = 32 * 1024 * 1024;

/**
 * Splits an FLV byte stream arriving in arbitrary pieces into H.264 video tags, dropping audio and
 * script tags. Pure: no I/O. Throws on bytes that are not FLV (the caller ends the child process
 * that wrote them).
 *
 * @example
 * const flv = new FlvReader();
 * for await (const piece of child.stdout) for (const tag of flv.push(piece)) handle(tag);
 */
export class FlvReader {
  #buf: Uint8Array = new Uint8Array(0);
  #headerDone = false;
  #nalLength = 4;

  push(piece: Uint8Array): FlvVideo[] {
    this.#buf = this.#buf.length === 0 ? piece : concat([this.#buf, piece]);
    const out: FlvVideo[] = [];
    let at = 0;
    const b = this.#buf;
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (!this.#headerDone) {
      if (b.length < HEADER_BYTES + PREVIOUS_SIZE_BYTES) return out;
      if (b[0] !== 0x46 || b[1] !== 0x4c || b[2] !== 0x56) throw new RangeError("not an FLV stream");
      at = view.getUint32(5) + PREVIOUS_SIZE_BYTES;
      this.#headerDone = true;
    }
    while (b.length - at >= TAG_HEADER_BYTES) {
      const type = b[at] & 0x1f;
      const size = (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
      if (size > MAX_TAG_BYTES) throw new RangeError(`FLV tag of ${size} bytes`);
      const end = at + TAG_HEADER_BYTES + size + PREVIOUS_SIZE_BYTES;
      if (b.length < end) break;
      // 24 bits of milliseconds, then the upper 8 bits.
      const ts = ((b[at + 7] << 24) >>> 0) + ((b[at + 4] << 16) | (b[at + 5] << 8) | b[at + 6]);
      if (type === VIDEO_TAG) {
        const tag = this.#video(b.subarray(at + TAG_HEADER_BYTES, at + TAG_HEADER_BYTES + size), ts);
        if (tag) out.push(tag);
      }
      at = end;
    }
    this.#buf = b.subarray(at);
    return out;
  }

  #video(d: Uint8Array, dtsMs: number): FlvVideo | null {
    if (d.length < 5 || (d[0] & 0x0f) !== CODEC_AVC) return null;
    const keyframe = d[0] >> 4 === 1;
    const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
    if (d[1] === 0) return { type: "config", nals: this.#config(d.subarray(5)) };
    if (d[1] !== 1) return null; // end of sequence
    const cts = (view.getInt32(1) << 8) >> 8; // signed 24 bits after the packet type
    return { type: "picture", ptsMs: dtsMs + cts, keyframe, nals: this.#nals(d.subarray(5)) };
  }

  /** AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1): its SPS and PPS. */
  #config(r: Uint8Array): Uint8Array[] {
    if (r.length < 7) throw new RangeError("short AVC decoder configuration");
    this.#nalLength = (r[4] & 3) + 1;
    const nals: Uint8Array[] = [];
    let at = 5;
    for (const countMask of [0x1f, 0xff]) {
      const count = r[at++] & countMask;
      for (let i = 0; i < count; i++) {
        const len = (r[at] << 8) | r[at + 1];
        if (at + 2 + len > r.length) throw new RangeError("AVC decoder configuration overruns its tag");
        nals.push(r.slice(at + 2, at + 2 + len));
        at += 2 + len;
      }
    }
    return nals;
  }

  /** Length-prefixed NAL units, copied out of the stream's buffer. */
  #nals(d: Uint8Array): Uint8Array[] {
    const nals: Uint8Array[] = [];
    const n = this.#nalLength;
    let at = 0;
    while (at + n <= d.length) {
      let len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + d[at + i];
      if (len === 0 || at + n + len > d.length) throw new RangeError("NAL unit overruns its FLV tag");
      nals.push(d.slice(at + n, at + n + len));
      at += n + len;
    }
    return nals;
  }
}
