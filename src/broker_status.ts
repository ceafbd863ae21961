/** The publisher's view of the broker, read by /healthz. */
export interface BrokerStatus {
  /** "off" when AMQP_URL is empty: events are recorded in the outbox, not published. */
  state: "off" | "connecting" | "connected" | "disconnected";
  lastError: string | null;
}
