/**
 * A TCP proxy on a port of its own in front of a real server, for fault injection: `pause()` is a
 * silent partition (connections stay open, new ones are accepted, nothing moves either way until
 * `resume()`), `reset()` drops every connection, `refuse()` closes the port until `resume()`.
 *
 * @example
 * const proxy = tcpProxy(5672);
 * proxy.pause(); // the recorder's broker connection hangs
 * proxy.resume();
 * proxy.close();
 */
export function tcpProxy(targetPort: number, targetHost = "127.0.0.1") {
  let listener: Deno.Listener | null = null;
  const conns = new Set<Deno.Conn>();
  let port = 0;
  let paused: { promise: Promise<void>; resolve: () => void } | null = null;
  const flowing = () => paused?.promise;
  const drop = (c: Deno.Conn) => {
    conns.delete(c);
    try {
      c.close();
    } catch { /* already closed */ }
  };
  /** Copies `from` to `to`, holding each chunk while paused; either side ending ends both. */
  const pump = async (from: Deno.Conn, to: Deno.Conn, done: () => void) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        await flowing();
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* reset */ }
    done();
  };
  const listen = () => {
    listener = Deno.listen({ hostname: "127.0.0.1", port });
    port = (listener.addr as Deno.NetAddr).port;
    const l = listener;
    (async () => {
      for await (const client of l) {
        conns.add(client);
        (async () => {
          await flowing();
          const upstream = await Deno.connect({ hostname: targetHost, port: targetPort });
          if (!conns.has(client)) return upstream.close(); // reset meanwhile
          conns.add(upstream);
          const done = () => [client, upstream].forEach(drop);
          pump(client, upstream, done);
          pump(upstream, client, done);
        })().catch(() => drop(client));
      }
    })().catch(() => {});
  };
  listen();
  return {
    get port() {
      return port;
    },
    pause() {
      if (!paused) {
        let resolve!: () => void;
        const promise = new Promise<void>((r) => (resolve = r));
        paused = { promise, resolve };
      }
    },
    /** Ends a pause or a refusal. */
    resume() {
      paused?.resolve();
      paused = null;
      if (!listener) listen();
    },
    reset() {
      for (const c of [...conns]) drop(c);
    },
    refuse() {
      listener?.close();
      listener = null;
      this.reset();
    },
    /** Open connections, both sides counted. */
    get connections() {
      return conns.size;
    },
    close() {
      this.refuse();
      paused?.resolve();
      paused = null;
    },
  };
}
