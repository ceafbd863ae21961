import assert from "node:assert/strict";
import { join } from "node:path";
import {
  chunkPath,
  type Layout,
  nextChunkIndex,
  parseChunkName,
  parseChunkPath,
  sessionDir,
  sessionIdFor,
} from "../src/store/layout.ts";

Deno.test("a chunk's path is parsed back into what wrote it, with one stream or several", () => {
  const id = sessionIdFor(Date.UTC(2026, 10, 21, 14, 2, 10));
  assert.equal(id, "20261121_140210");
  const one: Layout = { root: "/r", multiStream: false };
  const many: Layout = { root: "/r", multiStream: true };
  assert.equal(chunkPath(sessionDir(one, "default", id), 7), "20261121_140210/video_segments/chunk_0007.mp4");
  assert.deepEqual(parseChunkPath(chunkPath(sessionDir(one, "default", id), 7)), {
    stream: undefined,
    sessionId: id,
    index: 7,
  });
  assert.deepEqual(parseChunkPath(chunkPath(sessionDir(many, "cam2", `${id}_2`), 12345)), {
    stream: "cam2",
    sessionId: `${id}_2`,
    index: 12345,
  });
  for (
    const other of [
      "20261121_140210/metadata.json",
      "20261121_140210/video_segments/.chunk_0001.mp4.tmp",
      "tmp/clip.mp4",
      "a/b/c/video_segments/chunk_0001.mp4",
    ]
  ) assert.equal(parseChunkPath(other), null, other);
  assert.equal(parseChunkName("chunk_0001.mp4"), 1);
  assert.equal(parseChunkName("chunk_0001.mp4.tmp"), null);
});

Deno.test("the next chunk number is one past the highest file, whatever else the folder holds", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await nextChunkIndex(join(dir, "missing")), 1);
    for (const name of ["chunk_0002.mp4", "chunk_0010.mp4", "chunk_0099.mp4.tmp", "notes.txt"]) {
      await Deno.writeFile(join(dir, name), new Uint8Array());
    }
    assert.equal(await nextChunkIndex(dir), 11);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
