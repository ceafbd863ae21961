import assert from "node:assert/strict";
import { type ChainFrame, DecodeChain } from "../src/ingest/decode_chain.ts";

const info = { log2MaxFrameNum: 4, gapsAllowed: false, frameMbsOnly: true };
const f = (frameNum: number, o: Partial<ChainFrame> = {}): ChainFrame => ({
  keyframe: false,
  frameNum,
  reference: true,
  gapBefore: false,
  params: { info },
  ...o,
});
const key = (o: Partial<ChainFrame> = {}) => f(0, { keyframe: true, ...o });

Deno.test("frames pass from a keyframe while frame_num follows on, wrapping at MaxFrameNum", () => {
  const chain = new DecodeChain();
  assert.equal(chain.admit(f(3)), "before_keyframe");
  assert.equal(chain.admit(key()), null);
  for (let n = 1; n < 40; n++) assert.equal(chain.admit(f(n % 16)), null, `frame_num ${n % 16}`);
});

Deno.test("non-reference pictures share the next frame_num; a missing reference picture is a gap", () => {
  const chain = new DecodeChain();
  chain.admit(key());
  assert.equal(chain.admit(f(1, { reference: false })), null);
  assert.equal(chain.admit(f(1, { reference: false })), null);
  assert.equal(chain.admit(f(1)), null);
  assert.equal(chain.admit(f(3)), "gap", "frame_num 2 never came");
  assert.equal(chain.admit(f(4)), "gap", "and nothing passes until a keyframe");
  assert.equal(chain.admit(key()), null);
  assert.equal(chain.admit(f(1)), null);
});

Deno.test("a stream resuming without a loss passes; a damaged picture before, or a drop, stops it", () => {
  const chain = new DecodeChain();
  chain.admit(key());
  chain.admit(f(1));
  // A reconnect: the next frame continues the sequence.
  assert.equal(chain.admit(f(2)), null);
  assert.equal(chain.admit(f(3, { gapBefore: true })), "gap");
  chain.admit(key());
  chain.break();
  assert.equal(chain.admit(f(1)), "after_drop");
  // Unknown parameter sets: the frame_num cannot be judged.
  chain.admit(key());
  assert.equal(chain.admit(f(1, { params: null })), "gap");
});

Deno.test("with gaps_in_frame_num allowed, a jump is legal", () => {
  const chain = new DecodeChain();
  const gaps = { params: { info: { ...info, gapsAllowed: true } } };
  chain.admit(key(gaps));
  assert.equal(chain.admit(f(5, gaps)), null);
});
