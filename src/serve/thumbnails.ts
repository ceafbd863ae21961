import { join } from "node:path";
import { logger } from "../runtime/log.ts";
import { thumbnailPath, TMP_DIR } from "../store/layout.ts";

/** Thumbnails made at once; more wait their turn. */
const AT_ONCE = 2;

/**
 * Chunks' thumbnails: a JPEG of a chunk's first keyframe at the chunk's own size, made by ffmpeg on
 * the first request and kept beside the chunk (`chunk_0001.jpg`, src/store/layout.ts), where the
 * janitor deletes it with the chunk. Made under STORAGE_PATH/tmp and renamed into place, so a
 * thumbnail is whole or absent; one request makes it however many ask at once.
 *
 * @example
 * const jpeg = await thumbnails.get("20261205_092416/video_segments/chunk_0001.mp4");
 */
export class Thumbnails {
  #making = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();
  #running = 0;
  #queue: (() => void)[] = [];
  #log = logger("thumbnails");

  constructor(readonly root: string, readonly ffmpeg: string) {}

  get(chunk: string): Promise<Uint8Array<ArrayBuffer>> {
    const made = this.#making.get(chunk);
    if (made) return made;
    const p = this.#read(chunk).finally(() => this.#making.delete(chunk));
    this.#making.set(chunk, p);
    return p;
  }

  async #read(chunk: string): Promise<Uint8Array<ArrayBuffer>> {
    const file = join(this.root, thumbnailPath(chunk));
    try {
      return await Deno.readFile(file);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await this.#turn();
    try {
      await Deno.mkdir(join(this.root, TMP_DIR), { recursive: true });
      const tmp = join(this.root, TMP_DIR, `thumb-${crypto.randomUUID()}.jpg`);
      const { success, stderr } = await new Deno.Command(this.ffmpeg, {
        args: [
          ...[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-skip_frame",
            "nokey",
            "-i",
            join(this.root, chunk),
          ],
          ...["-frames:v", "1", "-q:v", "4", "-f", "mjpeg", tmp],
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!success) {
        await Deno.remove(tmp).catch(() => {});
        throw new Error(
          `ffmpeg made no thumbnail: ${new TextDecoder().decode(stderr).trim().split("\n").at(-1)}`,
        );
      }
      await Deno.rename(tmp, file);
      this.#log.debug("thumbnail made", { chunk });
      return await Deno.readFile(file);
    } finally {
      this.#running--;
      this.#queue.shift()?.();
    }
  }

  async #turn(): Promise<void> {
    if (this.#running >= AT_ONCE) await new Promise<void>((r) => this.#queue.push(r));
    this.#running++;
  }
}
