/**
 * An HTTP camera for the demo, the tests and the bench: serves JPEGs as an MJPEG stream
 * (`multipart/x-mixed-replace`, one part a picture) or as a snapshot a request, and records when
 * each picture went out, so what was recorded can be compared with what was sent.
 */
import { jpegPart } from "../ingest/jpeg/multipart.ts";
import { concat } from "../runtime/bytes.ts";
import { sleep } from "../runtime/sleep.ts";
import { writeAll } from "../store/layout.ts";

const encoder = new TextEncoder();
export const BOUNDARY = "skyreelframe";

export interface CameraOptions {
  /** The pictures, sent in order and looped. */
  jpegs: Uint8Array<ArrayBuffer>[];
  /** "mjpeg": one stream a request; "snapshot": the next picture a request. */
  mode: "mjpeg" | "snapshot";
  /** MJPEG: ms before picture i goes out (the first one: after the response's headers). */
  intervalMs?: (i: number) => number;
  /** Pictures the camera sends in all; past them its streams stay open and silent (snapshots: 503). */
  count?: number;
  hostname?: string;
  port?: number;
}

export interface TestCamera {
  url: string;
  /** Wall-clock ms at which each picture's first byte was handed to the socket, in sending order. */
  sent: number[];
  /** Requests answered. */
  requests: number;
  close(): Promise<void>;
}

/**
 * Starts a camera on `hostname:port` (127.0.0.1 and a free port by default).
 *
 * @example
 * const cam = serveCamera({ jpegs, mode: "mjpeg", intervalMs: () => 50 });
 * // VIDEO_STREAM_URL=cam.url
 * await cam.close();
 */
export function serveCamera(o: CameraOptions): TestCamera {
  // Plain TCP, not Deno.serve: a picture's time is taken just before its bytes go to the socket,
  // with no HTTP library's buffering between, so a timing test measures the recorder alone.
  const listener = Deno.listen({ hostname: o.hostname ?? "127.0.0.1", port: o.port ?? 0 });
  const conns = new Set<Deno.Conn>();
  const closing = new AbortController();
  let next = 0;
  const cam: TestCamera = { url: "", sent: [], requests: 0, close: async () => {} };
  const picture = () => o.jpegs[next++ % o.jpegs.length];
  const spent = () => o.count !== undefined && cam.sent.length >= o.count;
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      for await (const _ of requests(conn)) {
        cam.requests++;
        if (o.mode === "snapshot") {
          if (spent()) {
            await writeAll(conn, concat([head(503, "text/plain", 17), encoder.encode("no more pictures\n")]));
            continue;
          }
          const jpeg = picture();
          cam.sent.push(now());
          await writeAll(conn, concat([head(200, "image/jpeg", jpeg.length), jpeg]));
          continue;
        }
        await writeAll(conn, head(200, `multipart/x-mixed-replace; boundary=${BOUNDARY}`));
        while (conns.has(conn)) {
          await sleep(o.intervalMs?.(cam.sent.length) ?? 50, closing.signal);
          if (!conns.has(conn) || spent()) continue;
          const part = jpegPart(BOUNDARY, picture());
          cam.sent.push(now());
          await writeAll(conn, part);
        }
      }
    } catch { /* the client went away */ }
    if (conns.delete(conn)) conn.close();
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      serve(conn);
    }
  })().catch(() => {});
  const addr = listener.addr as Deno.NetAddr;
  cam.url = `http://${addr.hostname}:${addr.port}/video`;
  cam.close = async () => {
    listener.close();
    await accepting;
    closing.abort();
    for (const conn of conns) conn.close();
    conns.clear();
  };
  return cam;
}

/** A response's head; with no length, the body runs to the connection's end. */
function head(status: number, type: string, length?: number): Uint8Array {
  const reason = status === 200 ? "OK" : "Service Unavailable";
  const size = length === undefined ? "Connection: close\r\n" : `Content-Length: ${length}\r\n`;
  return encoder.encode(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${type}\r\n${size}\r\n`);
}

/** Yields once per request head read from `conn` (requests are GETs: no bodies). */
async function* requests(conn: Deno.Conn): AsyncGenerator<void> {
  const buf = new Uint8Array(16384), decoder = new TextDecoder();
  let text = "";
  while (true) {
    const n = await conn.read(buf);
    if (n === null) return;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    for (let end = text.indexOf("\r\n\r\n"); end >= 0; end = text.indexOf("\r\n\r\n")) {
      text = text.slice(end + 4);
      yield;
    }
  }
}

function now(): number {
  return performance.timeOrigin + performance.now();
}
