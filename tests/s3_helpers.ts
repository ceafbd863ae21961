/**
 * A real S3-protocol server for the archive's tests: npm s3rver (file-backed) in a Deno process of
 * its own, so a test can kill it mid-upload and start it again on the same port and folder.
 */
import { ROOT } from "./helpers.ts";

export const BUCKET = "skyreel-test";

/** s3rver's fixed credentials, and the AWS variables that point the recorder at `port`. */
export function archiveEnv(port: number, prefix = "fleet"): Record<string, string> {
  return {
    ARCHIVE_URL: `s3://${BUCKET}/${prefix}`,
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "S3RVER",
    AWS_SECRET_ACCESS_KEY: "S3RVER",
    AWS_S3_FORCE_PATH_STYLE: "true",
  };
}

export class S3Server {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private proc: Deno.ChildProcess,
    private drained: Promise<void>,
  ) {}

  /** Starts s3rver on `port` (0: a free one) over `dir` (a new folder by default), with the test bucket. */
  static async start(dir?: string, port = 0): Promise<S3Server> {
    dir ??= await Deno.makeTempDir({ prefix: "skyreel-s3-" });
    const proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "npm:s3rver@3.7.1",
        "--directory",
        dir,
        "--address",
        "127.0.0.1",
        "--port",
        String(port),
        "--silent",
        "--configure-bucket",
        BUCKET,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // Ready once it prints where it listens (even with --silent); the pipe is drained after.
    const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    let m: RegExpMatchArray | null;
    while (!(m = seen.match(/S3rver listening on \S+:(\d+)/))) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`s3rver exited before it listened: ${seen}`);
      seen += value;
    }
    const drained = (async () => {
      try {
        while (!(await reader.read()).done) { /* discarded */ }
      } catch { /* killed */ }
    })();
    return new S3Server(dir, Number(m[1]), proc, drained);
  }

  /** Kills it (SIGKILL: no goodbye to a client mid-upload). */
  async kill(): Promise<void> {
    try {
      this.proc.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.proc.status;
    await this.drained;
  }

  /** Starts it again on the same port and folder. */
  restart(): Promise<S3Server> {
    return S3Server.start(this.dir, this.port);
  }

  /** The object's bytes as the server stored them (s3rver keeps `<key>._S3rver_object`). */
  async object(key: string): Promise<Uint8Array | null> {
    return await Deno.readFile(`${this.dir}/${BUCKET}/${key}._S3rver_object`).catch(() => null);
  }

  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
