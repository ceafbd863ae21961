import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { ArchiveConfig } from "./keys.ts";
import { sleep } from "../../runtime/sleep.ts";
import { Throttle } from "./throttle.ts";

/** Multipart above this size, in parts of this size (S3's minimum part is 5 MiB). */
export const PART_BYTES = 8 * 2 ** 20;
/** Bytes read from the file a time (less under a slow throttle). */
const READ_BYTES = 64 * 1024;
/**
 * A request with no byte moving for this long is given up (a cut link, a hung server); the queue
 * retries. Kept by our own watchdog as well as the SDK's socket timeout, which a reused keep-alive
 * connection does not get under Deno.
 */
const SOCKET_TIMEOUT_MS = 20_000;
const CONNECT_TIMEOUT_MS = 5_000;

/** What the bucket said was wrong with an upload: a reason for the failure metric. */
export class ArchiveError extends Error {
  constructor(readonly reason: "checksum" | "size" | "timeout", message: string) {
    super(message);
  }
}

/**
 * The S3 client of the archive: uploads a file (multipart above PART_BYTES, throttled to
 * ARCHIVE_BANDWIDTH_KBPS) and verifies it, and reads byte ranges of an object back.
 *
 * The SDK's flexible checksums are off (`WHEN_REQUIRED`): with a stream body they frame it as
 * aws-chunked, which S3-compatible servers that do not know it store as the object. Integrity is
 * checked instead by the object's ETag, which the server computes from the bytes it received: it
 * must be the MD5 of the file (a single PUT) or of its parts' MD5s (multipart).
 *
 * @example
 * const archive = new ArchiveClient(config.archive!);
 * const { etag } = await archive.upload("gs-1/s/chunk_0001.mp4", "/rec/s/chunk_0001.mp4", signal);
 */
export class ArchiveClient {
  readonly #client: S3Client;
  readonly #throttle: Throttle | null;

  constructor(readonly config: ArchiveConfig) {
    this.#client = new S3Client({
      region: config.region,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      forcePathStyle: config.forcePathStyle,
      credentials: {
        accessKeyId: config.accessKeyId,
        secretAccessKey: config.secretAccessKey,
        ...(config.sessionToken ? { sessionToken: config.sessionToken } : {}),
      },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // No retry inside the SDK: the upload queue retries, with its own backoff, and counts each failure.
      maxAttempts: 1,
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_TIMEOUT_MS },
    });
    this.#throttle = config.bytesPerSecond ? new Throttle(config.bytesPerSecond) : null;
  }

  destroy(): void {
    this.#client.destroy();
  }

  /**
   * Uploads the file at `path` as `key` and checks the stored object's size and ETag against the
   * bytes sent. Returns the ETag; throws (ArchiveError for a mismatch) otherwise.
   */
  async upload(
    key: string,
    path: string,
    signal: AbortSignal,
    onBytes: (n: number) => void = () => {},
  ): Promise<{ etag: string; bytes: number }> {
    const file = await Deno.open(path);
    const watchdog = new Watchdog(signal);
    signal = watchdog.signal;
    const whole = createHash("md5");
    const parts: Uint8Array[] = [];
    let part = createHash("md5");
    let inPart = 0;
    let sent = 0;
    const throttle = this.#throttle;
    // Under a throttle, reads of a quarter second's bytes: no wait of ours is taken for a stall.
    const readBytes = throttle
      ? Math.min(READ_BYTES, Math.max(1024, Math.floor(throttle.bytesPerSecond / 4)))
      : READ_BYTES;
    async function* bytes() {
      const buffer = new Uint8Array(readBytes);
      for (;;) {
        const n = await file.read(buffer);
        if (n === null) break;
        const piece = buffer.slice(0, n);
        if (throttle) await sleep(throttle.take(n, performance.now()), signal);
        signal.throwIfAborted();
        whole.update(piece);
        // Parts as lib-storage cuts them: PART_BYTES each, in order.
        for (let at = 0; at < n;) {
          const take = Math.min(n - at, PART_BYTES - inPart);
          part.update(piece.subarray(at, at + take));
          inPart += take;
          at += take;
          if (inPart === PART_BYTES) {
            parts.push(part.digest());
            part = createHash("md5");
            inPart = 0;
          }
        }
        sent += n;
        onBytes(n);
        watchdog.poke();
        yield piece;
      }
    }
    const body = Readable.from(bytes());
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.config.bucket, Key: key, Body: body, ContentType: contentType(key) },
      partSize: PART_BYTES,
      queueSize: 1,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort().catch(() => {});
    signal.addEventListener("abort", abort, { once: true });
    try {
      await upload.done();
      if (inPart > 0 || parts.length === 0) parts.push(part.digest());
      const head = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }),
        { abortSignal: signal },
      );
      return verify(key, head, sent, whole.digest("hex"), parts);
    } catch (e) {
      throw watchdog.reason ?? e;
    } finally {
      watchdog.clear();
      signal.removeEventListener("abort", abort);
      // The SDK leaves a failed request's body open: its file and its pending read must not leak.
      body.destroy();
      file.close();
    }
  }

  /** Bytes [from, to) of `key`: one ranged GET. */
  async read(key: string, from: number, to: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (to <= from) return new Uint8Array(0);
    const watchdog = new Watchdog(signal);
    let bytes: Uint8Array;
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: key, Range: `bytes=${from}-${to - 1}` }),
        { abortSignal: watchdog.signal },
      );
      bytes = await out.Body!.transformToByteArray();
    } catch (e) {
      throw watchdog.reason ?? e;
    } finally {
      watchdog.clear();
    }
    if (bytes.length !== to - from) {
      throw new ArchiveError("size", `${key}: asked for bytes ${from}-${to - 1}, got ${bytes.length}`);
    }
    return bytes;
  }

  /** The object's size in bytes. */
  async size(key: string, signal?: AbortSignal): Promise<number> {
    const watchdog = new Watchdog(signal);
    try {
      const head = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }),
        { abortSignal: watchdog.signal },
      );
      return head.ContentLength ?? 0;
    } catch (e) {
      throw watchdog.reason ?? e;
    } finally {
      watchdog.clear();
    }
  }
}

function contentType(key: string): string {
  return key.endsWith(".mp4") ? "video/mp4" : "application/octet-stream";
}

/** The stored object against what was sent: its size, and an ETag that is the MD5 of the bytes (or of the parts' MD5s). */
function verify(
  key: string,
  head: { ContentLength?: number; ETag?: string },
  sent: number,
  md5: string,
  parts: Uint8Array[],
): { etag: string; bytes: number } {
  if (head.ContentLength !== sent) {
    throw new ArchiveError("size", `${key}: the bucket holds ${head.ContentLength} bytes, ${sent} were sent`);
  }
  const etag = (head.ETag ?? "").replaceAll('"', "");
  const multipart = `${createHash("md5").update(Buffer.concat(parts)).digest("hex")}-${parts.length}`;
  // Some S3-compatible servers give a multipart object its whole MD5, as for a single PUT.
  if (etag !== md5 && etag !== multipart) {
    throw new ArchiveError("checksum", `${key}: ETag ${etag} is not the MD5 of the bytes sent (${md5})`);
  }
  return { etag, bytes: sent };
}

/** Aborts its signal (as `signal` does) once SOCKET_TIMEOUT_MS pass without a poke; `reason` then says so. */
class Watchdog {
  readonly #controller = new AbortController();
  readonly signal: AbortSignal;
  #timer: ReturnType<typeof setTimeout> | undefined;
  reason: ArchiveError | null = null;

  constructor(outer?: AbortSignal) {
    this.signal = outer ? AbortSignal.any([outer, this.#controller.signal]) : this.#controller.signal;
    this.poke();
  }

  poke(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.reason = new ArchiveError("timeout", `no byte moved for ${SOCKET_TIMEOUT_MS / 1000} s`);
      this.#controller.abort(this.reason);
    }, SOCKET_TIMEOUT_MS);
  }

  clear(): void {
    clearTimeout(this.#timer);
  }
}
