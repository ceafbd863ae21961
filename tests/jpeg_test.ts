import assert from "node:assert/strict";
import { jpegSize } from "../src/ingest/jpeg/jpeg.ts";
import { type CameraFrame, MultipartSplitter, type PartFault } from "../src/ingest/jpeg/multipart.ts";
import { concat as concatAll } from "../src/runtime/bytes.ts";
import { testJpegs } from "../src/tools/ffmpeg.ts";
import { ffmpegPath, rng } from "./helpers.ts";

const enc = new TextEncoder();
/** `n` JPEGs of ffmpeg's test pattern at `width`x`height`, each its own frame. */
async function jpegs(n: number, width: number, height: number): Promise<Uint8Array[]> {
  const out = await testJpegs(await ffmpegPath(), { width, height, count: n });
  assert.equal(out.length, n);
  return out;
}

interface Part {
  body: Uint8Array;
  withLength: boolean;
}

/** A multipart body as cameras write it: `--boundary` lines, headers, and CRLFs. */
function multipart(boundary: string, parts: Part[], delimiter = `--${boundary}`): Uint8Array {
  const pieces: Uint8Array[] = [enc.encode("preamble a camera may send\r\n")];
  for (const p of parts) {
    const headers = `Content-Type: image/jpeg\r\n${
      p.withLength ? `Content-Length: ${p.body.length}\r\n` : ""
    }`;
    pieces.push(enc.encode(`${delimiter}\r\n${headers}\r\n`), p.body, enc.encode("\r\n"));
  }
  pieces.push(enc.encode(`${delimiter}--\r\n`));
  return concatAll(pieces);
}

/** Feeds `body` in pieces of random sizes, the k-th piece arriving at time 1000 + k; where each byte arrived. */
function feed(s: MultipartSplitter, body: Uint8Array, seed: number, maxPiece: number) {
  const random = rng(seed);
  const out: (CameraFrame | PartFault)[] = [];
  const arrival = new Float64Array(body.length);
  for (let at = 0, k = 0; at < body.length; k++) {
    const n = 1 + Math.floor(random() * maxPiece);
    arrival.fill(1000 + k, at, Math.min(body.length, at + n));
    out.push(...s.push(body.subarray(at, at + n), 1000 + k));
    at += n;
  }
  out.push(...s.end());
  return { out, arrival };
}

const startOf = (body: Uint8Array, part: Uint8Array, from = 0) => {
  outer: for (let i = from; i + part.length <= body.length; i++) {
    for (let k = 0; k < part.length; k++) if (body[i + k] !== part[k]) continue outer;
    return i;
  }
  return -1;
};

Deno.test("jpegSize reads the picture size of ffmpeg's JPEGs and tells truncated and foreign bodies", async () => {
  const [a] = await jpegs(1, 640, 480);
  assert.deepEqual(jpegSize(a), { width: 640, height: 480 });
  assert.deepEqual(jpegSize(concatAll([a, enc.encode("\r\n")])), { width: 640, height: 480 });
  assert.equal(jpegSize(a.subarray(0, a.length >> 1)), "truncated_jpeg");
  assert.equal(jpegSize(a.subarray(0, 300)), "truncated_jpeg");
  assert.equal(jpegSize(enc.encode("<html>503 Service Unavailable</html>")), "not_jpeg");
  assert.equal(jpegSize(new Uint8Array(0)), "not_jpeg");
});

for (
  const [name, boundary, delimiter] of [
    ["RFC 2046 delimiters", "frame", "--frame"],
    ["a boundary quoted with its dashes, sent as is", "--myboundary", "--myboundary"],
    ["a boundary quoted with its dashes, sent with two more", "--myboundary", "----myboundary"],
  ] as const
) {
  Deno.test(`multipart, ${name}: every JPEG byte-exact, timed by its first byte, in any piece sizes`, async () => {
    const frames = [...await jpegs(4, 320, 240), ...await jpegs(3, 640, 360)];
    const parts = frames.map((body, i) => ({ body, withLength: i % 2 === 0 }));
    const body = multipart(boundary, parts, delimiter);
    for (const [seed, maxPiece] of [[1, 7], [2, 1500], [3, 64 * 1024], [4, body.length]]) {
      const s = new MultipartSplitter(boundary);
      const { out, arrival } = feed(s, body, seed, maxPiece);
      assert.equal(out.length, frames.length, `seed ${seed}`);
      let from = 0;
      for (const [i, f] of out.entries()) {
        assert.ok("jpeg" in f, `part ${i}: ${JSON.stringify(f)}`);
        assert.deepEqual(f.jpeg, frames[i]);
        assert.deepEqual(f.size, i < 4 ? { width: 320, height: 240 } : { width: 640, height: 360 });
        const at = startOf(body, frames[i], from);
        assert.equal(f.ts, arrival[at], `part ${i} timed by its first byte`);
        from = at + 1;
      }
    }
  });
}

Deno.test("multipart: a foreign part, a truncated JPEG and an oversized part are faults, and the next frames come through", async () => {
  const [a, b, c, d] = await jpegs(4, 320, 240);
  const html = enc.encode("<html><body>camera busy</body></html>");
  const big = new Uint8Array(300_000).fill(0x41);
  const body = multipart("x", [
    { body: a, withLength: true },
    { body: html, withLength: false },
    { body: b.subarray(0, b.length - 900), withLength: false }, // the camera cut it short
    { body: big, withLength: false },
    { body: c, withLength: true },
    { body: d, withLength: false },
  ]);
  for (const maxPiece of [5, 4096, body.length]) {
    const s = new MultipartSplitter("x", 200_000);
    const { out } = feed(s, body, 7, maxPiece);
    const kinds = out.map((o) => "jpeg" in o ? "frame" : o.fault);
    assert.deepEqual(kinds, ["frame", "not_jpeg", "truncated_jpeg", "oversized_part", "frame", "frame"]);
    assert.deepEqual((out[4] as CameraFrame).jpeg, c);
    assert.deepEqual((out[5] as CameraFrame).jpeg, d);
    assert.equal((out[1] as PartFault).bytes, html.length);
    assert.ok((out[3] as PartFault).bytes >= big.length - 64, `oversized: ${(out[3] as PartFault).bytes}`);
  }
});

Deno.test("multipart: garbage with no line breaks is discarded, not buffered, and the next part comes through", () => {
  const s = new MultipartSplitter("x");
  const garbage = new Uint8Array(100_000).fill(0x41);
  assert.deepEqual(s.push(concatAll([enc.encode("--x\r\n"), garbage]), 1), []);
  assert.ok(s.discardedBytes >= garbage.length - 16 * 1024, `discarded ${s.discardedBytes}`);
  const jpeg = Uint8Array.from([0xff, 0xd8, 0xff, 0xdb, 0, 2, 0xff, 0xd9]);
  const out = s.push(concatAll([enc.encode("\r\n--x\r\n\r\n"), jpeg, enc.encode("\r\n--x--\r\n")]), 2);
  assert.deepEqual(out.map((o) => "fault" in o && o.fault), ["truncated_jpeg"]); // no start of frame
});

Deno.test("multipart: a stream that ends mid-part gives that part as truncated, and one cut at a boundary gives it whole", async () => {
  const [a, b] = await jpegs(2, 320, 240);
  const body = multipart("x", [{ body: a, withLength: false }, { body: b, withLength: true }]);
  const cut = startOf(body, b) + 1000;
  let s = new MultipartSplitter("x");
  const out = [...s.push(body.subarray(0, cut), 1), ...s.end()];
  assert.deepEqual(out.map((o) => "jpeg" in o ? "frame" : o.fault), ["frame", "truncated_jpeg"]);
  // Without a Content-Length, a part's end is known only from the next delimiter or the stream's end.
  s = new MultipartSplitter("x");
  const whole = concatAll([enc.encode("--x\r\n\r\n"), a]);
  assert.deepEqual(s.push(whole, 1), []);
  assert.deepEqual(s.end().map((o) => "jpeg" in o && o.jpeg), [a]);
});
