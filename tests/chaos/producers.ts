/**
 * Producers for the chaos suite: the messy but valid behaviours of real producers, and invalid
 * input mixed into a valid stream. Each is a relay (src/tools/relay.ts) playing a doctored frame list.
 */
import { type Incident, type SourceFrame, sourceFrames, startRelay } from "../../src/tools/relay.ts";
import { jitter, pattern } from "../helpers.ts";
import { FPS, PATTERN, type Sent, type Source } from "./world.ts";

/** Valid streams: every frame sent must be recorded. */
export const VALID_PRODUCERS = ["upstream-messy", "bursty", "resolution-flap"] as const;
/** Invalid input: counted and skipped; no chunk may hold what a decoder refuses. */
export const INVALID_PRODUCERS = [
  "random-bytes",
  "cut-headers",
  "corrupt-headers",
  "absurd-sps",
  "emulation",
] as const;
/** The relay hangs at the TCP level (the proxy pauses it), at the handshake or mid-stream. */
export const STALLED_PRODUCERS = ["handshake-stall", "tcp-stall"] as const;
export const PRODUCER_VARIANTS = [...VALID_PRODUCERS, ...INVALID_PRODUCERS, ...STALLED_PRODUCERS];

const nal = (type: number, body: ArrayLike<number>, refIdc = 3) =>
  Uint8Array.of(0, 0, 0, 1, (refIdc << 5) | type, ...Array.from(body));

/** An SPS no encoder writes: profile_idc 255, level 255, and a 16x16 picture. */
const ABSURD_SPS = nal(7, [0xff, 0xff, 0xff, 0xe1, 0x10, 0x10, 0x80], 3);

/** The doctored frames, the relay's pacing and incidents for `variant`. */
async function script(variant: string, rand: () => number) {
  const base = sourceFrames(await pattern(PATTERN));
  const pick = (n: number) => Math.floor(rand() * n);
  let frames: SourceFrame[] = [...base, ...base];
  let intervalMs = (_i: number) => 1000 / FPS;
  const incidents: Incident[] = [];
  let upstream = false, slicePacing: "together" | "frame" = "together";
  // Frames to doctor: a few, after the first GOP (the first chunk then opens normally).
  const victims = Array.from({ length: 3 + pick(4) }, () => FPS + pick(frames.length - FPS));
  const doctor = (f: (frame: SourceFrame) => SourceFrame) => {
    for (const v of victims) frames[v] = f(frames[v]);
  };
  const sliceAt = (frame: SourceFrame) => frame.nals.findIndex((n) => [1, 5].includes(n[4] & 0x1f));
  switch (variant) {
    case "upstream-messy":
      frames = sourceFrames(await pattern({ ...PATTERN, slices: 7 }));
      upstream = true;
      slicePacing = "frame";
      incidents.push({ frame: FPS + pick(FPS * 2), kind: "stall", ms: 500 + pick(2500) });
      break;
    case "bursty":
      intervalMs = jitter(pick(1e6), 1000 / FPS * 0.6, 1000 / FPS * 1.4);
      for (let i = 0; i < 3; i++) {
        incidents.push({ frame: FPS + pick(frames.length - FPS), kind: "stall", ms: 200 + pick(1500) });
      }
      break;
    case "resolution-flap": {
      const other = sourceFrames(await pattern({ ...PATTERN, width: 480, height: 272 }));
      frames = [];
      for (let gop = 0; gop < 6; gop++) {
        const from = gop % 2 === 0 ? base : other;
        frames.push(...from.slice((gop >> 1) * FPS, ((gop >> 1) + 1) * FPS));
      }
      break;
    }
    case "random-bytes":
      doctor((f) => ({
        ...f,
        nals: [...f.nals, Uint8Array.from({ length: 1 + pick(3000) }, () => pick(256))],
      }));
      break;
    case "cut-headers":
      // Cut inside the slice header (a cut inside macroblock data cannot be told without decoding).
      doctor((f) => {
        const i = sliceAt(f);
        const cut = f.nals[i].subarray(0, 6 + pick(2));
        return { ...f, nals: f.nals.map((n, j) => j === i ? cut : n) };
      });
      break;
    case "corrupt-headers":
      doctor((f) => {
        const i = sliceAt(f);
        const bad = f.nals[i].slice();
        // The forbidden bit, or a slice header of random bits.
        if (rand() < 0.5) bad[4] |= 0x80;
        else for (let k = 5; k < Math.min(bad.length, 9); k++) bad[k] = pick(256);
        return { ...f, nals: f.nals.map((n, j) => j === i ? bad : n) };
      });
      break;
    case "absurd-sps":
      doctor((f) => ({ ...f, nals: [ABSURD_SPS, ...f.nals] }));
      break;
    case "emulation":
      // NAL units with the byte patterns emulation prevention exists for: 00 00 03 escapes, an
      // escape at the very end, 00 00 02 (forbidden inside a NAL unit), trailing zeros.
      doctor((f) => ({
        ...f,
        nals: [
          ...f.nals,
          [
            nal(6, [5, 4, 0, 0, 3, 1, 0x80]),
            nal(6, [5, 3, 0, 0, 3]),
            nal(1, [0x88, 0, 0, 2, 0x80]),
            nal(12, [0xff, 0, 0, 0]),
          ][pick(4)],
        ],
      }));
      break;
  }
  return { frames, intervalMs, incidents, upstream, slicePacing };
}

/** A relay playing `variant` once (twice the pattern), then closing cleanly; stalls loop forever. */
export async function producerSource(variant: string, rand: () => number, sent: Sent[]): Promise<Source> {
  const s = await script(variant, rand);
  const relay = await startRelay({
    ...s,
    loops: variant.includes("stall") ? Infinity : 1,
    startAfterClients: 1,
    onFrame: (_i, at, _f, consumers) => sent.push({ at, consumers }),
  });
  return { port: relay.port, close: () => relay.close(), finished: relay.finished };
}
