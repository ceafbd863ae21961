/** Test peers for the event tests: a subscriber on the real broker. */
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

/** The broker's URL on `port` (a tcpProxy's, to inject faults). */
export function brokerUrl(port: number): string {
  return `amqp://guest:guest@127.0.0.1:${port}`;
}
