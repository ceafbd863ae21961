import { concat } from "../../runtime/bytes.ts";
import { type JpegFault, type JpegSize, jpegSize } from "./jpeg.ts";

/** A camera's JPEG and the arrival time of its first byte. */
export interface CameraFrame {
  jpeg: Uint8Array;
  ts: number;
  size: JpegSize;
}

/** A part that is not a frame: the reason, when its first byte arrived, and its length. */
export interface PartFault {
  fault: JpegFault | "oversized_part";
  ts: number;
  bytes: number;
}

/** Parts larger than this are discarded up to the next boundary: buffering stays bounded. */
export const MAX_PART_BYTES = 16 * 1024 * 1024;

/**
 * A JPEG as one part of a multipart stream under `boundary`, with its Content-Length, so a reader
 * knows where the picture ends the moment it has it (what `MultipartSplitter` reads).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jpegPart } from "./multipart.ts";
 * const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);
 * const part = jpegPart("b", jpeg);
 * const head = "--b\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n";
 * assert.equal(new TextDecoder().decode(part.subarray(0, head.length)), head);
 * assert.deepEqual(part.subarray(head.length), new Uint8Array([...jpeg, 13, 10]));
 * ```
 */
export function jpegPart(boundary: string, jpeg: Uint8Array): Uint8Array {
  const head = `--${boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`;
  return concat([ENCODER.encode(head), jpeg, CRLF]);
}

const ENCODER = new TextEncoder();
const CRLF = ENCODER.encode("\r\n");

/**
 * The boundary of a `multipart/x-mixed-replace` (or any `multipart/*`) Content-Type, unquoted;
 * null for any other type, which is how a camera's single-JPEG answer is told from a stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { multipartBoundary } from "./multipart.ts";
 * assert.equal(multipartBoundary('multipart/x-mixed-replace; boundary="--frame"'), "--frame");
 * assert.equal(multipartBoundary("image/jpeg"), null);
 * ```
 */
export function multipartBoundary(contentType: string | null): string | null {
  if (!contentType || !/^\s*multipart\//i.test(contentType)) return null;
  const m = contentType.match(/;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i);
  const boundary = m?.[1] ?? m?.[2];
  return boundary || null;
}

/** A part's headers longer than this are taken for garbage. */
const MAX_HEADER_BYTES = 16 * 1024;

const CR = 0x0d, LF = 0x0a, DASH = 0x2d;
const latin1 = new TextDecoder("latin1");

/**
 * Splits a multipart body that arrives in arbitrary pieces into the JPEG frames of its parts,
 * each timed by the arrival of its first byte (`ts` of the piece that held it: the clock is the
 * caller's). A part's length is its Content-Length where it has one, else everything up to the
 * next delimiter line. Delimiters are found as the boundary at the start of a line, with or
 * without the `--` RFC 2046 puts before it, because cameras that quote `boundary=--x` send either
 * `--x` or `----x`. The bytes decide what a part is, not its Content-Type: a part that is not a
 * whole JPEG comes out as a `PartFault`.
 *
 * @example
 * const s = new MultipartSplitter("frame");
 * s.push(bytesOf("--frame\r\nContent-Type: image/jpeg\r\n\r\n"), 10); // []
 * s.push(jpeg, 12); // [] (its end is not known before the next delimiter)
 * s.push(bytesOf("\r\n--frame\r\n"), 40); // [{ jpeg, ts: 12, size: { width: 640, height: 480 } }]
 */
export class MultipartSplitter {
  /** Bytes outside any part: a preamble, or what came between a Content-Length's end and the next delimiter. */
  discardedBytes = 0;
  readonly #token: Uint8Array;
  readonly #maxPart: number;
  #buf = new Uint8Array(64 * 1024);
  /** Bytes [#start, #end) of #buf are unread; #base is the stream offset of #buf[0]. */
  #start = 0;
  #end = 0;
  #base = 0;
  /** Stream offsets where pieces began, and their times, for the pieces still in #buf. */
  #pieces: { at: number; ts: number }[] = [];
  #state: "delimiter" | "headers" | "body" = "delimiter";
  /** In "body": the part's length if its headers gave one, and where the delimiter search resumes. */
  #length: number | null = null;
  #scanned = 0;
  /** In "body" without a length: bytes of a part over MAX_PART_BYTES skipped so far, since #faultTs. */
  #skipped = 0;
  #faultTs = 0;

  constructor(boundary: string, maxPartBytes = MAX_PART_BYTES) {
    this.#token = new TextEncoder().encode(boundary);
    this.#maxPart = maxPartBytes;
  }

  /** The frames and faults of the parts that `piece` completed. */
  push(piece: Uint8Array, ts: number): (CameraFrame | PartFault)[] {
    this.#append(piece, ts);
    const out: (CameraFrame | PartFault)[] = [];
    for (;;) {
      if (this.#state === "delimiter" && !this.#delimiter()) break;
      if (this.#state === "headers" && !this.#headers()) break;
      if (this.#state === "body") {
        const part = this.#body();
        if (part === null) break;
        out.push(part);
      }
    }
    this.#compact();
    return out;
  }

  /** The part the stream ended in, judged as it is: a JPEG cut short comes out as `truncated_jpeg`. */
  end(): (CameraFrame | PartFault)[] {
    if (this.#state !== "body" || this.#skipped > 0 || this.#end === this.#start) return [];
    const part = this.#part(this.#buf.subarray(this.#start, this.#end));
    this.#start = this.#end;
    this.#state = "delimiter";
    return [part];
  }

  #append(piece: Uint8Array, ts: number): void {
    if (piece.length === 0) return;
    if (this.#end + piece.length > this.#buf.length) {
      const live = this.#end - this.#start;
      const grown = new Uint8Array(Math.max(this.#buf.length, (live + piece.length) * 2));
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#shift(this.#start);
      this.#buf = grown;
    }
    this.#pieces.push({ at: this.#base + this.#end, ts });
    this.#buf.set(piece, this.#end);
    this.#end += piece.length;
  }

  /** Drops the consumed prefix once it is most of the buffer, so a copy moves little. */
  #compact(): void {
    if (this.#start < this.#buf.length / 2) return;
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#shift(this.#start);
  }

  #shift(by: number): void {
    this.#base += by;
    this.#end -= by;
    this.#scanned -= by;
    this.#start = 0;
    const first = this.#base;
    // Keep the last piece that began at or before the first unread byte: it holds that byte.
    let keep = 0;
    while (keep + 1 < this.#pieces.length && this.#pieces[keep + 1].at <= first) keep++;
    if (keep > 0) this.#pieces.splice(0, keep);
  }

  /** The arrival time of the byte at buffer index `i`. */
  #tsAt(i: number): number {
    const at = this.#base + i;
    let ts = this.#pieces[0]?.ts ?? 0;
    for (const p of this.#pieces) {
      if (p.at > at) break;
      ts = p.ts;
    }
    return ts;
  }

  /**
   * Index of the next delimiter line at or after `from` (its first byte, the `--` if present),
   * with the index just past the boundary; null when none is buffered yet.
   */
  #findDelimiter(from: number): { line: number; after: number } | null {
    const t = this.#token, b = this.#buf;
    for (let i = Math.max(from, this.#start); i + t.length <= this.#end; i++) {
      i = b.indexOf(t[0], i);
      if (i < 0 || i + t.length > this.#end) return null;
      let k = 1;
      while (k < t.length && b[i + k] === t[k]) k++;
      if (k < t.length) continue;
      let line = i;
      if (line - 2 >= this.#start && b[line - 1] === DASH && b[line - 2] === DASH) line -= 2;
      if (line === this.#start || b[line - 1] === LF) return { line, after: i + t.length };
    }
    return null;
  }

  /** Past the next delimiter and the rest of its line; false when it is not all here yet. */
  #delimiter(): boolean {
    const d = this.#findDelimiter(this.#start);
    if (!d) {
      // Keep what could still be the start of a delimiter.
      const keep = this.#token.length + 2;
      const skip = Math.max(0, this.#end - this.#start - keep);
      this.discardedBytes += skip;
      this.#start += skip;
      return false;
    }
    const eol = this.#buf.indexOf(LF, d.after);
    if (eol < 0 || eol >= this.#end) return false;
    this.discardedBytes += d.line - this.#start;
    this.#start = eol + 1;
    this.#state = "headers";
    return true;
  }

  /** The part's headers, up to the blank line; false when they are not all here yet. */
  #headers(): boolean {
    const b = this.#buf;
    let at = this.#start;
    this.#length = null;
    for (;;) {
      const eol = b.indexOf(LF, at);
      if (eol < 0 || eol >= this.#end) {
        if (this.#end - this.#start <= MAX_HEADER_BYTES) return false;
        // Not headers: look for the next delimiter instead of buffering without end.
        this.discardedBytes += this.#end - this.#start;
        this.#start = this.#end;
        this.#state = "delimiter";
        return false;
      }
      const line = latin1.decode(b.subarray(at, eol > at && b[eol - 1] === CR ? eol - 1 : eol));
      at = eol + 1;
      if (line === "") break;
      const m = line.match(/^content-length\s*:\s*(\d+)\s*$/i);
      if (m) this.#length = Number(m[1]);
    }
    this.#start = at;
    this.#scanned = at;
    this.#state = "body";
    return true;
  }

  /** The finished part, or null when it is not all here yet. */
  #body(): CameraFrame | PartFault | null {
    const length = this.#length;
    if (length !== null && length <= this.#maxPart) {
      if (this.#end - this.#start < length) return null;
      const part = this.#part(this.#buf.subarray(this.#start, this.#start + length));
      this.#start += length;
      this.#state = "delimiter";
      return part;
    }
    const d = this.#findDelimiter(this.#scanned);
    if (!d) {
      this.#scanned = Math.max(this.#start, this.#end - this.#token.length - 2);
      if (this.#end - this.#start > this.#maxPart) {
        if (this.#skipped === 0) this.#faultTs = this.#tsAt(this.#start);
        // Drop all but what could be the start of the next delimiter.
        this.#skipped += this.#scanned - this.#start;
        this.#start = this.#scanned;
      }
      return null;
    }
    this.#state = "delimiter";
    if (this.#skipped > 0 || d.line - this.#start > this.#maxPart) {
      const fault: PartFault = {
        fault: "oversized_part",
        ts: this.#skipped > 0 ? this.#faultTs : this.#tsAt(this.#start),
        bytes: this.#skipped + d.line - this.#start,
      };
      this.#skipped = 0;
      this.#start = d.line;
      return fault;
    }
    // The line break before the delimiter belongs to the delimiter.
    let stop = d.line;
    if (stop > this.#start && this.#buf[stop - 1] === LF) stop--;
    if (stop > this.#start && this.#buf[stop - 1] === CR) stop--;
    const part = this.#part(this.#buf.subarray(this.#start, stop));
    this.#start = d.line;
    return part;
  }

  #part(body: Uint8Array): CameraFrame | PartFault {
    const ts = this.#tsAt(body.byteOffset - this.#buf.byteOffset);
    const size = jpegSize(body);
    if (typeof size === "string") return { fault: size, ts, bytes: body.length };
    return { jpeg: body.slice(), ts, size };
  }
}
