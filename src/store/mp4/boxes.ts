import { concat } from "../../runtime/bytes.ts";

/** Bytes of an ISO BMFF box: payload parts are numbers encoded by `u8`/`u16`/... or raw bytes. */
export type Part = Uint8Array;

export function u8(n: number): Part {
  return Uint8Array.of(n);
}

export function u16(n: number): Part {
  return Uint8Array.of(n >>> 8, n);
}

export function u32(n: number): Part {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u64(n: number | bigint): Part {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

export function ascii(s: string): Part {
  return new TextEncoder().encode(s);
}

export function zeros(n: number): Part {
  return new Uint8Array(n);
}

/**
 * A box: 32-bit size, four-character type, payload.
 *
 * @example
 * box("free", zeros(4)); // 00 00 00 0c 'f' 'r' 'e' 'e' 00 00 00 00
 */
export function box(type: string, ...payload: Part[]): Uint8Array {
  let size = 8;
  for (const p of payload) size += p.length;
  return concat([u32(size), ascii(type), ...payload]);
}

/** A full box: a box whose payload starts with version (8 bits) and flags (24 bits). */
export function fullBox(type: string, version: number, flags: number, ...payload: Part[]): Uint8Array {
  return box(type, u32(((version & 0xff) << 24 | (flags & 0xffffff)) >>> 0), ...payload);
}
