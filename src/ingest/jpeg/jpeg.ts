/** Why a camera's body is not a JPEG frame that can be encoded. */
export type JpegFault = "not_jpeg" | "truncated_jpeg";

/** A JPEG frame's picture size, from its start-of-frame segment. */
export interface JpegSize {
  width: number;
  height: number;
}

/**
 * Checks a whole JPEG (start of image first, end of image last: cameras that pad a part with a
 * CRLF or zeros are accepted) and reads its picture size. A body with no start of image is
 * `not_jpeg`; one whose segments or entropy-coded data stop before the end of image, or that has
 * no start-of-frame segment, is `truncated_jpeg`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jpegSize } from "./jpeg.ts";
 * assert.equal(jpegSize(new Uint8Array([0x3c, 0x68, 0x74, 0x6d, 0x6c])), "not_jpeg");
 * assert.equal(jpegSize(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00])), "truncated_jpeg");
 * ```
 */
export function jpegSize(b: Uint8Array): JpegSize | JpegFault {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[2] !== 0xff) return "not_jpeg";
  let end = b.length;
  while (end > 2 && (b[end - 1] === 0x0a || b[end - 1] === 0x0d || b[end - 1] === 0)) end--;
  if (b[end - 2] !== 0xff || b[end - 1] !== 0xd9) return "truncated_jpeg";
  let size: JpegSize | null = null;
  // Marker segments up to the start of scan; the scan data runs to the end of image checked above.
  for (let at = 2; at + 4 <= end;) {
    if (b[at] !== 0xff) return "truncated_jpeg";
    const marker = b[at + 1];
    if (marker === 0xff) { // fill byte
      at++;
      continue;
    }
    if (marker === 0xd9 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      at += 2;
      continue;
    }
    const length = (b[at + 2] << 8) | b[at + 3];
    if (length < 2 || at + 2 + length > end) return "truncated_jpeg";
    if (isStartOfFrame(marker)) {
      if (length < 7) return "truncated_jpeg";
      size = { height: (b[at + 5] << 8) | b[at + 6], width: (b[at + 7] << 8) | b[at + 8] };
    }
    if (marker === 0xda) return size && size.width > 0 && size.height > 0 ? size : "truncated_jpeg";
    at += 2 + length;
  }
  return "truncated_jpeg";
}

/** SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}
