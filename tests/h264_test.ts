import assert from "node:assert/strict";
import { AnnexBSplitter, splitAnnexB, startCodeLength } from "../src/ingest/h264/annexb.ts";
import { BitReader } from "../src/ingest/h264/bits.ts";
import { type Frame, FrameParser } from "../src/ingest/h264/frame_parser.ts";
import { nalDefect } from "../src/ingest/h264/nal_check.ts";
import { DecodeChain } from "../src/ingest/decode_chain.ts";
import { parseSps } from "../src/ingest/h264/sps.ts";
import { frameMessages, type SourceFrame, sourceFrames, type UpstreamState } from "../src/tools/relay.ts";
import { FIXTURE, pattern, rng } from "./helpers.ts";

const fixture = await Deno.readFile(FIXTURE);

function parseAll(messages: Uint8Array[]): { frames: Frame[]; parser: FrameParser } {
  const parser = new FrameParser();
  const frames = messages.flatMap((m, i) => parser.message(m, i));
  frames.push(...parser.end());
  return { frames, parser };
}

/** What must not depend on how bytes were split: count, keyframes, sample bytes. */
function summary(frames: Frame[]) {
  return {
    count: frames.length,
    keyframes: frames.flatMap((f, i) => f.keyframe ? [i] : []),
    bytes: frames.map((f) => f.data.length),
    corrupt: frames.filter((f) => f.corrupt).length,
  };
}

Deno.test("the fixture assembles into 144 frames with 1 keyframe from its 1,008 slice NAL units", () => {
  const nals = splitAnnexB(fixture, 0);
  const slices = nals.filter((n) => [1, 5].includes(n.data[0] & 0x1f));
  assert.equal(slices.length, 1008); // 7 IDR + 1,001 non-IDR (the fixture's README)
  const { frames, parser } = parseAll([fixture]);
  assert.equal(frames.length, 144);
  assert.deepEqual(frames.flatMap((f, i) => f.keyframe ? [i] : []), [0]);
  assert.equal(frames[0].params?.info.width, 854);
  assert.equal(frames[0].params?.info.height, 480);
  assert.equal(frames[0].params?.info.codec, "avc1.42c01e");
  assert.deepEqual(parser.counts, {
    badHeaders: 0,
    badEscapes: 0,
    badSei: 0,
    badParamSets: 0,
    badSlices: 0,
    strayNals: 0,
    badTimestamps: 0,
    badPackets: 0,
    discardedBytes: 0,
    oversizedNals: 0,
    lateSlices: 0,
    splitNals: 0,
  });
});

/** The upstream relay's messages for `frames`: SPS, SPS+PPS before every IDR slice, no SEI or AUD. */
function upstream(frames: SourceFrame[]): Uint8Array[] {
  const state: UpstreamState = {};
  return frames.flatMap((f) => frameMessages(f, { upstream: true }, state)).map((m) => concat(m));
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]));
}

const withoutSei = (sample: Uint8Array) => {
  const out: number[] = [];
  for (let at = 0; at < sample.length;) {
    const len = new DataView(sample.buffer, sample.byteOffset).getUint32(at);
    if ((sample[at + 4] & 0x1f) !== 6) out.push(...sample.subarray(at, at + 4 + len));
    at += 4 + len;
  }
  return Uint8Array.from(out);
};

Deno.test("the upstream interleaving (SPS, SPS+PPS before each of 7 IDR slices) gives the same 144 pictures", () => {
  const reference = parseAll([fixture]).frames;
  const messages = upstream(sourceFrames(fixture));
  assert.equal(messages.length, 2 + 7 * 3 + 143 * 7); // the SEI is not sent
  const { frames, parser } = parseAll(messages);
  assert.equal(frames.length, 144);
  assert.deepEqual(frames.flatMap((f, i) => f.keyframe ? [i] : []), [0]);
  frames.forEach((f, i) => assert.deepEqual(f.data, withoutSei(reference[i].data), `picture ${i}`));
  assert.equal(frames[0].params?.key, reference[0].params?.key, "repeated parameter sets change nothing");
  const { lateSlices, splitNals, badSlices, badParamSets } = parser.counts;
  assert.equal(lateSlices + splitNals + badSlices + badParamSets, 0);
  // A picture is timed by its first slice, not the parameter sets before it.
  assert.equal(frames[0].ts, 4);
  assert.equal(frames[1].ts, 2 + 7 * 3);
});

Deno.test("a picture is complete at its last slice, without waiting for the next picture: passed on at the next message, or at settle() in a pause", () => {
  const messages = upstream(sourceFrames(fixture));
  const parser = new FrameParser();
  const emittedAt: number[] = [];
  messages.forEach((m, i) => parser.message(m, i).forEach(() => emittedAt.push(i)));
  // Once the slice layout has repeated and messages have proved whole, picture k is complete at its
  // 7th slice (message 22 + 7k) and is held one message, to see that slice was whole.
  for (let k = 10; k < 143; k++) assert.equal(emittedAt[k], 23 + 7 * k, `picture ${k}`);
  assert.equal(
    parser.pendingSince,
    16 + 7 * 143,
    "the held picture (its first slice came at 16 + 7k) bounds what may come",
  );
  // The stream pauses after the last picture's last slice: the caller's timer takes it.
  assert.equal(emittedAt.length, 143);
  const lastSlice = 22 + 7 * 143;
  assert.equal(parser.settle(lastSlice + 249).length, 0, "not before 250 ms without a message");
  assert.equal(
    parser.settle(lastSlice + 250).length,
    1,
    "the last picture, before the stream ends or resumes",
  );
  assert.deepEqual(parser.end(), []);
});

Deno.test("AU assembly is the same for one NAL per message, one AU per message and random splits", () => {
  const reference = summary(parseAll([fixture]).frames);
  const aus = sourceFrames(fixture);
  const perNal = aus.flatMap((a) => a.nals);
  assert.equal(perNal.length, 1011);
  assert.deepEqual(summary(parseAll(perNal).frames), reference);
  const perAu = aus.map((a) => Uint8Array.from(a.nals.flatMap((n) => [...n])));
  assert.deepEqual(summary(parseAll(perAu).frames), reference);
  for (const seed of [1, 2, 3]) {
    const r = rng(seed);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < fixture.length;) {
      const n = 1 + Math.floor(r() * 5000);
      pieces.push(fixture.subarray(at, at + n));
      at += n;
    }
    assert.deepEqual(summary(parseAll(pieces).frames), reference, `seed ${seed}`);
  }
  // Splits inside start codes: every byte its own message.
  const bytewise = Array.from(fixture.subarray(0, 200_000), (b) => Uint8Array.of(b));
  const partial = summary(parseAll([fixture.subarray(0, 200_000)]).frames);
  assert.deepEqual(summary(parseAll(bytewise).frames), partial);
});

Deno.test("a frame's timestamp is the arrival of its first byte, parameter sets aside", () => {
  const perNal = sourceFrames(fixture).flatMap((a) => a.nals);
  const parser = new FrameParser();
  const frames = perNal.flatMap((m, i) => parser.message(m, 1000 + i));
  frames.push(...parser.end());
  // Messages: SPS, PPS, SEI, 7 slices for frame 0, then 7 per frame. The relay's cached SPS+PPS
  // come on connect, long before the picture: frame 0 is timed by its SEI.
  assert.equal(frames[0].ts, 1002);
  assert.equal(frames[1].ts, 1000 + 10);
  assert.equal(frames[143].ts, 1000 + 10 + 142 * 7);
});

/** A producer packet: 13-byte header (size, type, u64 timestamp), or 21 bytes for a frame (+ data_size, flags). */
function header(type: number, ts: bigint, payload: Uint8Array, frame: boolean): Uint8Array {
  const size = (frame ? 21 : 13) + payload.length;
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint32(0, size);
  b[4] = type;
  v.setBigUint64(5, ts);
  if (frame) v.setUint32(13, payload.length);
  b.set(payload, frame ? 21 : 13);
  return b;
}

Deno.test("producer packets: framing detected per message, timestamps from the producer's clock", () => {
  const aus = sourceFrames(fixture).slice(0, 10);
  const messages: Uint8Array[] = [];
  const nalType = (n: Uint8Array) => n[4] & 0x1f;
  const first = aus[0].nals;
  messages.push(header(1, 0n, first.find((n) => nalType(n) === 7)!, false));
  messages.push(header(2, 0n, first.find((n) => nalType(n) === 8)!, false));
  messages.push(header(5, 0n, new TextEncoder().encode("{}"), false));
  aus.forEach((au, i) => {
    const body = Uint8Array.from(au.nals.filter((n) => ![7, 8].includes(nalType(n))).flatMap((n) => [...n]));
    messages.push(header(i === 0 ? 3 : 4, 5_000_000n + BigInt(i) * 66_667n, body, true));
  });
  const parser = new FrameParser();
  const frames = messages.flatMap((m) => parser.message(m, 70_000));
  frames.push(...parser.end());
  assert.equal(frames.length, 10);
  assert.equal(frames[0].keyframe, true);
  assert.deepEqual(frames.map((f) => Math.round((f.ts - 70_000) * 1000)), aus.map((_, i) => i * 66_667));
  const reference = summary(parseAll(sourceFrames(fixture).slice(0, 10).flatMap((a) => a.nals)).frames);
  assert.deepEqual(summary(frames).bytes, reference.bytes);
  // A packet whose data_size overflows the message is refused and counted, not parsed.
  const bad = header(4, 0n, new Uint8Array(8), true);
  new DataView(bad.buffer).setUint32(13, 1000);
  assert.deepEqual(parser.message(bad, 0), []);
  assert.equal(parser.counts.badPackets, 1);
});

Deno.test("bad NAL units are counted by reason and the picture marked corrupt", () => {
  const aus = sourceFrames(fixture);
  const truncated = Uint8Array.of(0, 0, 0, 1, 0x41); // a P slice cut after its header byte
  const forbidden = Uint8Array.of(0, 0, 0, 1, 0xc1, 0x9a, 0x00, 0x01);
  const { frames, parser } = parseAll([...aus[0].nals, ...aus[1].nals, truncated, forbidden, ...aus[2].nals]);
  assert.equal(parser.counts.badSlices, 1);
  assert.equal(parser.counts.badHeaders, 1);
  // The truncated slice cannot tell which picture it belongs to: the one in progress is not decodable.
  assert.deepEqual(frames.map((f) => f.corrupt), [false, true, false]);
});

Deno.test("a changed SPS applies from the picture that uses it: the last picture before keeps the old one", async () => {
  const big = await pattern({ width: 640, height: 360, fps: 30, seconds: 1, gop: 10, bitrateKbps: 500 });
  const small = await pattern({ width: 320, height: 180, fps: 30, seconds: 1, gop: 10, bitrateKbps: 200 });
  const messages = sourceFrames(concat([big, small])).flatMap((f) => f.nals);
  const { frames } = parseAll(messages);
  assert.equal(frames.length, 60);
  assert.deepEqual(frames.map((f) => f.params?.info.width), [...Array(30).fill(640), ...Array(30).fill(320)]);
  assert.equal(frames[30].keyframe, true);
  assert.notEqual(frames[29].params?.key, frames[30].params?.key);
});

Deno.test("a slice that arrives after its picture was completed by its layout is counted and breaks the chain", () => {
  const perNal = sourceFrames(fixture).flatMap((f) => f.nals);
  // Picture 20's last slice again, after the picture is complete: it now has 8 slices.
  const lastOf20 = 3 + 7 + 20 * 7 - 1;
  const messages = [...perNal.slice(0, lastOf20 + 1), perNal[lastOf20], ...perNal.slice(lastOf20 + 1)];
  const { frames, parser } = parseAll(messages);
  assert.equal(parser.counts.lateSlices, 1);
  assert.equal(frames.length, 144);
  assert.deepEqual(frames.flatMap((f, i) => f.gapBefore ? [i] : []), [21]);
});

/** The fixture one NAL unit a message, but NAL unit `at` cut across two messages. */
function splitNal(at: number): { messages: Uint8Array[]; continued: number } {
  const perNal = sourceFrames(fixture).flatMap((f) => f.nals);
  const nal = perNal[at];
  const half = nal.length >> 1;
  const messages = [
    ...perNal.slice(0, at),
    nal.subarray(0, half),
    nal.subarray(half),
    ...perNal.slice(at + 1),
  ];
  return { messages, continued: nal.length - half };
}

Deno.test("a NAL unit continued in the next message, once messages looked whole, is counted and damages its picture", () => {
  // The third slice of picture 30 (picture k >= 1 starts at NAL unit 10 + 7(k-1)).
  const { messages, continued } = splitNal(10 + 29 * 7 + 2);
  const { frames, parser } = parseAll(messages);
  assert.equal(parser.counts.splitNals, 1);
  assert.ok(parser.counts.discardedBytes >= continued);
  assert.equal(frames.length, 144);
  assert.deepEqual(frames.flatMap((f, i) => f.corrupt ? [i] : []), [30]);
  // From then on the stream is split at start codes only: random splits later record intact.
});

Deno.test("oversized NAL units are discarded without buffering them whole", () => {
  const s = new AnnexBSplitter();
  const big = new Uint8Array(9 * 1024 * 1024).fill(0xab);
  big.set([0, 0, 0, 1, 0x41]);
  assert.deepEqual(s.push(big, 0), []);
  const after = s.push(Uint8Array.of(0, 0, 1, 0x41, 0x9a), 1);
  assert.equal(after.length, 0);
  assert.equal(s.oversizedNals, 1);
  assert.ok(s.discardedBytes >= 9 * 1024 * 1024 - 5);
  assert.deepEqual([...s.flush()[0].data], [0x41, 0x9a]);
});

Deno.test("SPS of a 1280x720 ffmpeg stream parses to its size (cropping applied)", async () => {
  const h264 = await pattern({ width: 1280, height: 720, fps: 30, seconds: 1, gop: 30, bitrateKbps: 2000 });
  const sps = splitAnnexB(h264, 0).find((n) => (n.data[0] & 0x1f) === 7)!;
  const info = parseSps(sps.data);
  assert.deepEqual([info.width, info.height], [1280, 720]);
});

Deno.test("BitReader skips emulation-prevention bytes and refuses to read past the end", () => {
  const r = new BitReader(Uint8Array.of(0x00, 0x00, 0x03, 0x01, 0x80));
  assert.equal(r.bits(16), 0);
  assert.equal(r.bits(8), 0x01); // the 0x03 was skipped
  assert.equal(r.ue(), 0);
  assert.throws(() => r.bits(8), RangeError);
});

Deno.test("a connection that opens mid-picture: the tail of that picture is incomplete, never a keyframe", () => {
  const messages = upstream(sourceFrames(fixture));
  // The relay's cached SPS+PPS, then the live stream from the IDR picture's third slice on.
  const cached = messages[1];
  const idrSlice3 = 2 + 2 * 3 + 2; // after SPS, SPS+PPS, and two [SPS, SPS+PPS, slice] triples
  const { frames } = parseAll([cached, ...messages.slice(idrSlice3)]);
  assert.equal(frames[0].incomplete, true);
  assert.equal(frames[0].keyframe, false);
  assert.ok(frames.slice(1).every((f) => !f.incomplete && !f.keyframe), "the P pictures after it are whole");
  // The same mid-picture join on a P picture.
  const p40 = 23 + 39 * 7 + 4;
  const joined = parseAll([cached, ...messages.slice(p40)]).frames;
  assert.equal(joined[0].incomplete, true);
  assert.equal(joined.length, 144 - 40);
});

Deno.test("slices a container gave one by one (RTSP through ffmpeg): the picture the stream ends in is incomplete, a whole one is not", () => {
  const raw = (n: Uint8Array) => n.subarray(startCodeLength(n, 0));
  const pictures = sourceFrames(fixture).map((f) => f.nals.map(raw));
  const run = (cut: number) => {
    const parser = new FrameParser();
    const frames: Frame[] = [];
    pictures.slice(0, 51).forEach((nals, k) => {
      for (const nal of k === 50 ? nals.slice(0, cut) : nals) frames.push(...parser.unit([nal], k, false));
    });
    return frames.concat(parser.end());
  };
  const slices = pictures[50].length;
  const cutShort = run(slices - 3);
  assert.equal(cutShort.length, 51);
  assert.ok(cutShort.slice(0, 50).every((f) => !f.incomplete && !f.corrupt));
  assert.equal(cutShort[50].incomplete, true, "cut off in its slices: a decoder would conceal the rest");
  const whole = run(slices);
  assert.equal(whole.length, 51);
  assert.ok(whole.every((f) => !f.incomplete && !f.corrupt), "completed by its layout, before the end");
});

Deno.test("a picture completed by its layout whose last slice turns out split is dropped as corrupt", () => {
  const { messages } = splitNal(10 + 29 * 7 + 6); // the last slice of picture 30
  const { frames, parser } = parseAll(messages);
  assert.equal(parser.counts.splitNals, 1);
  assert.deepEqual(frames.flatMap((f, i) => f.corrupt ? [i] : []), [30]);
  assert.deepEqual(frames.flatMap((f, i) => f.gapBefore ? [i] : []), [31], "and the pictures after it wait");
});

Deno.test("NAL unit checks: escapes, SEI tiling and header types, on hand-made units", () => {
  const n = (...b: number[]) => Uint8Array.of(...b);
  assert.equal(nalDefect(n(0x65, 0x88, 0x00, 0x00, 0x02, 0x80)), "badEscapes"); // 00 00 02 inside
  assert.equal(nalDefect(n(0x65, 0x88, 0x00, 0x00, 0x00, 0x80)), "badEscapes"); // 00 00 00 inside
  assert.equal(nalDefect(n(0x65, 0x88, 0x00, 0x00, 0x03, 0x04, 0x80)), "badEscapes"); // an escape before 04
  assert.equal(nalDefect(n(0x65, 0x88, 0x00, 0x00, 0x03, 0x01, 0x80)), null);
  assert.equal(nalDefect(n(0x65, 0x88, 0x00, 0x00, 0x03)), null, "cabac_zero_word at the end");
  assert.equal(nalDefect(n(0xe5, 0x88)), "badHeaders", "forbidden_zero_bit");
  assert.equal(nalDefect(n(0x74, 0x88)), "badHeaders", "an SVC prefix unit (20)");
  assert.equal(nalDefect(n(0x06, 5, 4, 0, 0, 3, 1, 0x80)), "badSei", "4 bytes announced, 3 there");
  assert.equal(nalDefect(n(0x06, 5, 3, 0, 0, 3)), "badSei", "no trailing bits");
  assert.equal(nalDefect(n(0x06, 5, 2, 7, 7, 6, 1, 9, 0x80)), null, "two messages");
  assert.equal(nalDefect(n(0x06, 0xff, 0x01, 1, 9, 0x80)), null, "payloadType 256");
});

Deno.test("every NAL unit x264 writes passes the checks and every slice header reads to its data", async () => {
  const base = { width: 640, height: 360, fps: 30, seconds: 2, gop: 30, bitrateKbps: 800 };
  // CAVLC (ultrafast), CABAC, and medium with B-frames: weighted prediction, list modifications, MMCOs.
  for (const o of [base, { ...base, cabac: true }, { ...base, preset: "medium", bframes: 3 }]) {
    const h264 = await pattern(o);
    const nals = splitAnnexB(h264, 0);
    assert.ok(nals.some((x) => (x.data[0] & 0x1f) === 6), "an SEI is among them");
    assert.deepEqual(nals.map((x) => nalDefect(x.data)).filter((d) => d !== null), [], JSON.stringify(o));
    const { frames, parser } = parseAll([h264]);
    assert.equal(frames.length, 60, JSON.stringify(o));
    assert.equal(parser.counts.badSlices + parser.counts.badParamSets, 0, JSON.stringify(o));
    assert.ok(frames.every((f) => !f.corrupt));
  }
});

Deno.test("an absurd SPS, or a PPS of an unknown SPS, is refused: the stream goes on under the last good ones", () => {
  const aus = sourceFrames(fixture);
  const absurd = Uint8Array.of(0, 0, 0, 1, 0x67, 0xff, 0xff, 0xff, 0xe1, 0x10, 0x10, 0x80); // avc1.ffffff
  const orphanPps = Uint8Array.of(0, 0, 0, 1, 0x68, 0xa6, 0x3c, 0x80); // PPS 0 of SPS 4
  const { frames, parser } = parseAll([...aus[0].nals, absurd, orphanPps, ...aus[1].nals, ...aus[2].nals]);
  assert.equal(parser.counts.badParamSets, 2);
  assert.equal(frames.length, 3);
  assert.ok(frames.every((f) => !f.corrupt && f.params?.info.codec === "avc1.42c01e"));
  assert.throws(() => parseSps(Uint8Array.of(0x67, 0x42, 0xc0, 0x07, 0xf4)), /level_idc 7/);
});

Deno.test("a producer timestamp far from the arrival clock is re-anchored and counted: u64-max cannot move time", () => {
  const parser = new FrameParser();
  const aus = sourceFrames(fixture).slice(0, 4);
  const times = [0n, 33_333n, 0xffff_ffff_ffff_ffffn, 100_000n];
  const frames = aus.flatMap((au, i) =>
    parser.message(header(i === 0 ? 3 : 4, times[i], concat(au.nals), true), 1_000 + i * 33.3)
  );
  frames.push(...parser.end());
  assert.equal(parser.counts.badTimestamps, 2, "the jump there, and the jump back");
  assert.ok(frames.every((f) => f.ts >= 1_000 && f.ts < 1_200), frames.map((f) => f.ts).join(","));
});

Deno.test("random NAL units are refused by reason, never a keyframe, and the decode chain admits none of them", () => {
  const aus = sourceFrames(fixture);
  const random = rng(11);
  const junk: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const body = Uint8Array.from(
      { length: 8 + Math.floor(random() * 200) },
      () => Math.floor(random() * 256),
    );
    body[0] = [0x65, 0x41, 0x06, 0x67, 0x68, 0x22][i % 6]; // IDR and P slices, SEI, SPS, PPS, a partition
    // Whole NAL units, as a relay delivers them: no start code inside.
    junk.push(
      Uint8Array.of(0, 0, 0, 1, ...body.filter((_, j) => j < 2 || body[j - 1] !== 0 || body[j - 2] !== 0)),
    );
  }
  const parser = new FrameParser();
  const good = [0, 1, 2, 3].flatMap((i) => aus[i].nals);
  const frames = [...good, ...junk, ...aus[4].nals, ...aus[5].nals].flatMap((m) => parser.message(m, 0));
  frames.push(...parser.end());
  const c = parser.counts;
  assert.ok(
    c.badHeaders >= 500 && c.badSei >= 450 && c.badParamSets >= 950 && c.badSlices >= 500,
    JSON.stringify(c),
  );
  assert.deepEqual(
    frames.flatMap((f, i) => f.keyframe ? [i] : []),
    [0],
    "no random IDR passes as a keyframe",
  );
  const chain = new DecodeChain();
  const admitted = frames.filter((f) => !f.corrupt && !f.incomplete && chain.admit(f) === null);
  assert.equal(
    admitted.length,
    3,
    "the pictures before the junk; the 4th is spoiled by the first random slice",
  );
});

Deno.test("a slice cut in its header is refused and spoils the picture it may belong to", () => {
  const aus = sourceFrames(fixture);
  for (const n of [1, 2]) {
    const cut = aus[2].nals.map((x) => (x[4] & 0x1f) === 1 ? x.subarray(0, 5 + n) : x);
    const { frames, parser } = parseAll([
      ...aus[0].nals,
      ...aus[1].nals,
      ...cut,
      ...aus[3].nals,
      ...aus[4].nals,
    ]);
    assert.equal(parser.counts.badSlices, 7, `cut ${n}: its 7 slices`);
    assert.deepEqual(frames.map((f) => f.corrupt), [false, true, false, false], `cut ${n}`);
  }
});
