/** Packet types of the producer's framing, which some relays forward unchanged. */
export const PacketType = { sps: 1, pps: 2, keyframe: 3, frame: 4, config: 5 } as const;

export interface ProducerPacket {
  type: number;
  /** Microseconds on the producer's clock (frame packets), or the raw header value. */
  timestamp: number;
  payload: Uint8Array;
}

/**
 * Recognises a producer packet: u32 big-endian total size equal to the message length, then a
 * type byte 1-5. SPS/PPS/config have a 13-byte header (size, type, u64 timestamp); frames a 21-byte
 * one (size, type, u64 timestamp_us, u32 data_size, u32 flags). Returns null for plain Annex-B, and
 * throws RangeError for a packet whose data_size does not fit.
 *
 * @example
 * const p = parseProducerPacket(message);
 * if (p?.type === PacketType.frame) feed(p.payload, p.timestamp);
 */
export function parseProducerPacket(msg: Uint8Array): ProducerPacket | null {
  if (msg.length < 13) return null;
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  if (view.getUint32(0) !== msg.length || msg[4] < 1 || msg[4] > 5) return null;
  const type = msg[4];
  const timestamp = Number(view.getBigUint64(5));
  if (type !== PacketType.keyframe && type !== PacketType.frame) {
    return { type, timestamp, payload: msg.subarray(13) };
  }
  if (msg.length < 21) throw new RangeError("frame packet shorter than its 21-byte header");
  const size = view.getUint32(13);
  if (size > msg.length - 21) throw new RangeError(`frame packet data_size ${size} exceeds the packet`);
  return { type, timestamp, payload: msg.subarray(21, 21 + size) };
}
