import http from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { logger } from "../runtime/log.ts";

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/**
 * A client must send a request's headers within this, and all of it within `REQUEST_TIMEOUT_MS`;
 * otherwise it gets 408 and its connection is closed. Deno.serve has no such timeouts
 * (denoland/deno#3515), which is why the server is node:http: a client that sends half a request
 * would otherwise hold a socket, and a file descriptor the recorder needs, for ever.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
/** A backstop behind the handlers' own 10 s body limit (src/serve/clip/api.ts), which answers in JSON. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** At shutdown, responses still streaming after this are cut. */
const SHUTDOWN_GRACE_MS = 2_000;

export interface HttpServer {
  port: number;
  shutdown(): Promise<void>;
}

/**
 * Serves `handler` on host:port (port 0 picks a free one, reported in the log and on the result).
 * A handler that throws answers 500 with a request id, and the error is logged under that id (the
 * message, which may name paths, is not sent). Rejects if the address cannot be bound.
 *
 * @example
 * const api = await serveHttp("api", "127.0.0.1", 8080, (req) => json({ ok: true }));
 */
export async function serveHttp(
  name: string,
  hostname: string,
  port: number,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<HttpServer> {
  const log = logger(name);
  const server = http.createServer({
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // How often the two timeouts above are checked (Node's default, 30 s, would make them late).
    connectionsCheckingInterval: 1_000,
  });
  server.on("request", async (req: http.IncomingMessage, res: http.ServerResponse) => {
    let response: Response;
    let url = "";
    try {
      const request = toRequest(req, `http://${hostname.includes(":") ? `[${hostname}]` : hostname}`);
      url = request.url;
      response = await handler(request);
    } catch (e) {
      // The detail (paths, system errors) goes to the log only; the client gets the id to find it.
      const id = crypto.randomUUID().slice(0, 8);
      log.error("request failed", { url: url || req.url, requestId: id, error: e });
      response = json({ error: `internal error (request ${id}); see the service log`, request_id: id }, 500);
    }
    await send(response, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (e) => log.error("server error", { error: e }));
  const addr = server.address() as AddressInfo;
  log.info("listening", { host: addr.address, port: addr.port });
  return {
    port: addr.port,
    shutdown: () =>
      new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

/** The web Request the handlers take; a body is streamed, not buffered. */
function toRequest(req: http.IncomingMessage, base: string): Request {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(new URL(req.url ?? "/", base), {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) as ReadableStream<Uint8Array> : null,
    // @ts-ignore: `duplex` is required by fetch's spec for a streamed body but missing from lib.dom.
    duplex: "half",
  });
}

/**
 * Writes `response` to `res`, waiting for the client to drain; a client that goes cancels the body.
 * No promise here outlives one piece: racing each read against a promise of the connection's close
 * would keep every piece read, reachable from that promise, until the response ended (a whole clip
 * in memory per client).
 */
async function send(response: Response, res: http.ServerResponse): Promise<void> {
  res.statusCode = response.status;
  for (const [key, value] of response.headers) res.setHeader(key, value);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  let gone = false;
  let wake = () => {};
  // The client went: a pending read ends (done), a wait for drain ends.
  const onClose = () => {
    gone = true;
    reader.cancel().catch(() => {});
    wake();
  };
  res.once("close", onClose);
  try {
    for (;;) {
      const next = await reader.read();
      if (gone) break;
      if (next.done) {
        res.end();
        return;
      }
      if (!res.write(next.value)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            resolve();
          };
          wake = done;
          res.once("drain", done);
        });
        if (gone) break;
      }
    }
  } catch {
    res.destroy();
  } finally {
    res.off("close", onClose);
  }
  await reader.cancel().catch(() => {});
}
