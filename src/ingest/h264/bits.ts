/**
 * Reads H.264 RBSP fields (fixed-width and Exp-Golomb) from a NAL unit payload.
 * Emulation-prevention bytes (00 00 03) are skipped on the fly, so callers pass the NAL bytes as
 * they arrive. Reading past the end throws a RangeError, which marks the NAL unit as malformed.
 *
 * @example
 * const r = new BitReader(new Uint8Array([0b1010_0000]));
 * r.bit(); // 1
 * r.ue(); // 1 (bits "010")
 */
export class BitReader {
  #bytes: Uint8Array;
  #pos = 0; // byte index of the current byte
  #bit = 0; // bits already consumed in it
  #zeros = 0; // consecutive zero bytes seen, to spot emulation prevention

  constructor(bytes: Uint8Array, startByte = 0) {
    this.#bytes = bytes;
    this.#pos = startByte;
  }

  bit(): number {
    if (this.#bit === 0) this.#enterByte();
    const b = (this.#bytes[this.#pos] >> (7 - this.#bit)) & 1;
    if (++this.#bit === 8) {
      this.#bit = 0;
      this.#zeros = this.#bytes[this.#pos] === 0 ? this.#zeros + 1 : 0;
      this.#pos++;
    }
    return b;
  }

  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }

  /** Unsigned Exp-Golomb. */
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (++zeros > 31) throw new RangeError("Exp-Golomb code longer than 32 bits");
    }
    return zeros === 0 ? 0 : 2 ** zeros - 1 + this.bits(zeros);
  }

  /** Signed Exp-Golomb. */
  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }

  /** Reads to the next byte boundary: true if every bit read was 1 (cabac_alignment_one_bit). */
  alignedOnes(): boolean {
    let ones = true;
    while (this.#bit !== 0) if (this.bit() !== 1) ones = false;
    return ones;
  }

  /** True when only rbsp_trailing_bits are left (a 1 bit, then zero bits to the end). Reads nothing. */
  atTrailingBits(): boolean {
    const pos = this.#pos, bit = this.#bit, zeros = this.#zeros;
    try {
      if (this.bit() !== 1) return false;
      while (this.#bit !== 0) if (this.bit() !== 0) return false;
      for (let i = this.#pos; i < this.#bytes.length; i++) if (this.#bytes[i] !== 0) return false;
      return true;
    } catch {
      return false;
    } finally {
      this.#pos = pos;
      this.#bit = bit;
      this.#zeros = zeros;
    }
  }

  #enterByte(): void {
    if (this.#pos >= this.#bytes.length) throw new RangeError("read past the end of the NAL unit");
    if (this.#zeros >= 2 && this.#bytes[this.#pos] === 3) {
      this.#zeros = 0;
      this.#pos++;
      if (this.#pos >= this.#bytes.length) throw new RangeError("read past the end of the NAL unit");
    }
  }
}
