/**
 * `deno task events`: prints one line per storage event as the recorder publishes them, so an
 * operator can watch what it does. Binds an exclusive, auto-deleted queue to EVENTS_EXCHANGE.
 */
import { connect } from "amqplib";
import { ConfigError, loadConfig } from "../app/config.ts";

try {
  const config = loadConfig(Deno.env.toObject());
  if (!config.amqpUrl) throw new ConfigError("AMQP_URL", "is empty: there is no broker to watch");
  const conn = await connect(config.amqpUrl, { noDelay: true });
  const channel = await conn.createChannel();
  await channel.assertExchange(config.eventsExchange, config.eventsExchangeType, { durable: true });
  const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
  await channel.bindQueue(
    queue,
    config.eventsExchange,
    config.eventsExchangeType === "topic" ? "storage.#" : "",
  );
  console.error(
    `watching ${config.eventsExchange} (${config.eventsExchangeType}) on ${
      config.amqpUrl.replace(/\/\/[^@]*@/, "//")
    }; Ctrl-C to stop`,
  );
  await channel.consume(queue, (m) => {
    if (!m) return;
    try {
      const e = JSON.parse(m.content.toString());
      const when = new Date(e.timestamp * 1000).toISOString();
      console.log(`${when} ${e.type.padEnd(16)} ${e.stream.padEnd(12)} ${JSON.stringify(e.data)}`);
    } catch {
      console.log(`(not JSON) ${m.content.toString().slice(0, 200)}`);
    }
  }, { noAck: true });
  const stop = () => conn.close().finally(() => Deno.exit(0));
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  console.error(`skyreel events: invalid configuration: ${e.message}`);
  Deno.exit(2);
}
