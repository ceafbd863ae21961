/** Media timescale of every chunk: 90 kHz, the usual for video, 11 µs resolution. */
export const TIMESCALE = 90_000;

/** Milliseconds to media ticks. */
export function toTicks(ms: number): number {
  return Math.round(ms * (TIMESCALE / 1000));
}

/** Media ticks to milliseconds. */
export function toMs(ticks: number): number {
  return ticks / (TIMESCALE / 1000);
}

const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** Unix epoch milliseconds as a 64-bit NTP timestamp (seconds since 1900 . 32-bit fraction). */
export function ntpFromEpochMs(ms: number): bigint {
  const seconds = Math.floor(ms / 1000);
  const fraction = Math.round(((ms - seconds * 1000) / 1000) * 2 ** 32);
  return (BigInt(seconds + NTP_UNIX_OFFSET_S) << 32n) + BigInt(Math.min(fraction, 2 ** 32 - 1));
}

/** A 64-bit NTP timestamp as Unix epoch milliseconds. */
export function epochMsFromNtp(ntp: bigint): number {
  const seconds = Number(ntp >> 32n) - NTP_UNIX_OFFSET_S;
  return seconds * 1000 + (Number(ntp & 0xffffffffn) / 2 ** 32) * 1000;
}
