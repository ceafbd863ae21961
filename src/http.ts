import { logger } from "./log.ts";

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

export interface HttpServer {
  port: number;
  shutdown(): Promise<void>;
}

/**
 * Serves `handler` on host:port (port 0 picks a free one, reported in the log and on the result).
 * A handler that throws answers 500 with a request id, and the error is logged under that id (the
 * message, which may name paths, is not sent).
 *
 * @example
 * const api = serveHttp("api", "127.0.0.1", 8080, (req) => json({ ok: true }));
 */
export function serveHttp(
  name: string,
  hostname: string,
  port: number,
  handler: (req: Request) => Response | Promise<Response>,
): HttpServer {
  const log = logger(name);
  const server = Deno.serve({ hostname, port, onListen: () => {} }, async (req) => {
    try {
      return await handler(req);
    } catch (e) {
      // The detail (paths, system errors) goes to the log only; the client gets the id to find it.
      const id = crypto.randomUUID().slice(0, 8);
      log.error("request failed", { url: req.url, requestId: id, error: e });
      return json({ error: `internal error (request ${id}); see the service log`, request_id: id }, 500);
    }
  });
  const addr = server.addr as Deno.NetAddr;
  log.info("listening", { host: addr.hostname, port: addr.port });
  return { port: addr.port, shutdown: () => server.shutdown() };
}
