/**
 * The test camera (src/tools/mjpeg_camera.ts) on a thread of its own, so that when it sends a
 * picture depends on its own event loop only, not on the test's: the timing tests then measure the
 * recorder. Messages: {jpegs, mode, intervals, count} starts it (answer {url}); "close" stops it
 * (answer {sent, requests}).
 */
import { serveCamera, type TestCamera } from "../src/tools/mjpeg_camera.ts";

let cam: TestCamera | null = null;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "close") {
    await cam!.close();
    self.postMessage({ sent: cam!.sent, requests: cam!.requests });
    return;
  }
  const { jpegs, mode, intervals, count } = e.data;
  cam = serveCamera({ jpegs, mode, count, intervalMs: (i) => intervals[i % intervals.length] });
  self.postMessage({ url: cam.url });
};
