import { join } from "node:path";
import type { ClipChunk } from "./plan.ts";

/** A chunk's bytes, wherever they are: its file here, or its archived copy (docs/fleet.md). */
export interface ChunkBytes {
  readonly size: number;
  /** Bytes [from, to): fewer only where the chunk ends. */
  read(from: number, to: number): Promise<Uint8Array>;
  close(): void;
}

/** Opens a planned chunk's bytes. */
export type OpenChunk = (chunk: ClipChunk) => Promise<ChunkBytes>;

/** What reads a range of an archived object (src/store/archive/s3.ts). */
export interface ArchiveReader {
  read(key: string, from: number, to: number): Promise<Uint8Array>;
}

/**
 * A chunk file under `root`, read forward: it is sought only where a read does not follow the last.
 *
 * @example
 * const bytes = await chunkFile(root, "20261121_140210/video_segments/chunk_0001.mp4");
 * try { await bytes.read(0, 8); } finally { bytes.close(); }
 */
export async function chunkFile(root: string, path: string): Promise<ChunkBytes> {
  const file = await Deno.open(join(root, path));
  let position = 0;
  try {
    const size = (await file.stat()).size;
    return {
      size,
      async read(from, to) {
        if (from !== position) await file.seek(from, Deno.SeekMode.Start);
        const bytes = new Uint8Array(Math.max(0, Math.min(to, size) - from));
        let got = 0;
        while (got < bytes.length) {
          const n = await file.read(bytes.subarray(got));
          if (n === null) break;
          got += n;
        }
        position = from + got;
        return got === bytes.length ? bytes : bytes.subarray(0, got);
      },
      close: () => file.close(),
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * An archived chunk, by ranged reads of its object. `size` is the row's: a closed chunk never
 * changes after its upload was verified.
 */
export function archivedChunk(archive: ArchiveReader, key: string, size: number): ChunkBytes {
  return {
    size,
    read: (from, to) => archive.read(key, from, Math.min(to, size)),
    close: () => {},
  };
}
