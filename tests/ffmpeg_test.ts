import assert from "node:assert/strict";
import { resolveFfmpeg } from "../src/app/ffmpeg.ts";

const run = async (bin: string, ...args: string[]) =>
  new TextDecoder().decode(
    (await new Deno.Command(bin, { args, stdout: "piped", stderr: "null" }).output()).stdout,
  );

Deno.test({
  name:
    "with no FFMPEG_PATH, ffmpeg comes from the npm package that carries one: it encodes H.264 and decodes JPEG",
  ignore: Deno.build.os !== "linux" || Deno.build.arch !== "x86_64",
  fn: async () => {
    const bin = await resolveFfmpeg({});
    assert.ok(bin?.endsWith("/@ffmpeg-installer/linux-x64/ffmpeg"), `resolved ${bin}`);
    assert.match(await run(bin!, "-hide_banner", "-encoders"), /\blibx264\b/);
    assert.match(await run(bin!, "-hide_banner", "-decoders"), /\bmjpeg\b/);
  },
});

Deno.test("FFMPEG_PATH wins when it runs, and is passed over when it does not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fake = `${dir}/ffmpeg`;
    await Deno.writeTextFile(fake, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    assert.equal(await resolveFfmpeg({ FFMPEG_PATH: fake }), fake);
    const chosen = await resolveFfmpeg({ FFMPEG_PATH: `${dir}/missing` });
    assert.ok(chosen && chosen !== `${dir}/missing`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
