/**
 * An HTTP camera for the demo, the tests and the bench: serves JPEGs as an MJPEG stream
 * (`multipart/x-mixed-replace`, one part a picture) or as a snapshot a request, and records when
 * each picture went out, so what was recorded can be compared with what was sent.
 */
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
  const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let next = 0;
  const cam: TestCamera = { url: "", sent: [], requests: 0, close: async () => {} };
  const picture = () => o.jpegs[next++ % o.jpegs.length];
  const server = Deno.serve({
    hostname: o.hostname ?? "127.0.0.1",
    port: o.port ?? 0,
    onListen: () => {},
  }, () => {
    cam.requests++;
    const spent = () => o.count !== undefined && cam.sent.length >= o.count;
    if (o.mode === "snapshot") {
      if (spent()) return new Response("no more pictures", { status: 503 });
      cam.sent.push(now());
      return new Response(picture(), { headers: { "content-type": "image/jpeg" } });
    }
    let controller: ReadableStreamDefaultController<Uint8Array>;
    const schedule = () => {
      const t = setTimeout(() => {
        timers.delete(t);
        if (streams.has(controller)) send();
      }, o.intervalMs?.(cam.sent.length) ?? 50);
      timers.add(t);
    };
    const send = () => {
      if (spent()) return;
      const jpeg = picture();
      const at = now();
      try {
        controller.enqueue(encoder.encode(
          `--${BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`,
        ));
        controller.enqueue(jpeg);
        controller.enqueue(encoder.encode("\r\n"));
      } catch {
        streams.delete(controller); // the client went away
        return;
      }
      cam.sent.push(at);
      schedule();
    };
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        streams.add(c);
        schedule();
      },
      cancel() {
        streams.delete(controller);
      },
    });
    return new Response(body, {
      headers: { "content-type": `multipart/x-mixed-replace; boundary=${BOUNDARY}` },
    });
  });
  const addr = server.addr as Deno.NetAddr;
  cam.url = `http://${addr.hostname}:${addr.port}/video`;
  cam.close = async () => {
    for (const t of timers) clearTimeout(t);
    for (const c of streams) {
      try {
        c.close();
      } catch { /* cancelled */ }
    }
    streams.clear();
    await server.shutdown();
  };
  return cam;
}

function now(): number {
  return performance.timeOrigin + performance.now();
}
