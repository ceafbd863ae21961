/// <reference lib="deno.worker" />
/** A relay in a worker thread, so it keeps sending while the test blocks its own event loop. */
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import { FIXTURE } from "./helpers.ts";

const relay = await startRelay({
  frames: sourceFrames(await Deno.readFile(FIXTURE)),
  intervalMs: () => 6,
  upstream: true,
  slicePacing: "frame", // 7 slices a picture, each 6 ms after the last: nearly every instant is mid-picture
  startAfterClients: 1,
});
self.postMessage({ url: relay.url });
await relay.finished;
await relay.close();
self.postMessage({ done: true });
