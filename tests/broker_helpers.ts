/** Test peers for the event tests: a subscriber on the real broker, and a proxy that can cut it off. */
import { connect, type ConsumeMessage } from "amqplib";

export const BROKER = "amqp://guest:guest@127.0.0.1:5672";

export interface Received {
  body: Record<string, any>;
  properties: ConsumeMessage["properties"];
  routingKey: string;
}

/** A subscriber bound to `exchange` as existing ones bind: an exclusive queue on a durable fanout. */
export async function subscribe(exchange: string, type = "fanout") {
  const conn = await connect(BROKER, { noDelay: true });
  const channel = await conn.createChannel();
  await channel.assertExchange(exchange, type, { durable: true });
  const { queue } = await channel.assertQueue("", { exclusive: true });
  await channel.bindQueue(queue, exchange, type === "topic" ? "storage.#" : "");
  const received: Received[] = [];
  await channel.consume(queue, (m) => {
    if (!m) return;
    received.push({
      body: JSON.parse(m.content.toString()),
      properties: m.properties,
      routingKey: m.fields.routingKey,
    });
    channel.ack(m);
  });
  return {
    received,
    of: (type: string) => received.filter((r) => r.body.type === type),
    async close() {
      await channel.deleteExchange(exchange).catch(() => {});
      await conn.close();
    },
  };
}

/** A TCP proxy to the broker on a port of its own; `cut()` drops every connection and refuses new ones. */
export function brokerProxy() {
  let listener: Deno.Listener | null = null;
  const conns = new Set<Deno.Conn>();
  let port = 0;
  const open = () => {
    listener = Deno.listen({ hostname: "127.0.0.1", port });
    port = (listener.addr as Deno.NetAddr).port;
    const l = listener;
    (async () => {
      for await (const client of l) {
        conns.add(client);
        Deno.connect({ hostname: "127.0.0.1", port: 5672 }).then((upstream) => {
          conns.add(upstream);
          const done = () => {
            for (const c of [client, upstream]) {
              conns.delete(c);
              try {
                c.close();
              } catch { /* already closed */ }
            }
          };
          client.readable.pipeTo(upstream.writable).catch(() => {}).finally(done);
          upstream.readable.pipeTo(client.writable).catch(() => {}).finally(done);
        }, () => client.close());
      }
    })().catch(() => {});
  };
  open();
  return {
    url: () => `amqp://guest:guest@127.0.0.1:${port}`,
    cut() {
      listener?.close();
      listener = null;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      conns.clear();
    },
    restore: open,
    close() {
      this.cut();
    },
  };
}
