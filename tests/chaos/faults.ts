/**
 * The fault classes. Each round builds a world, injects one fault of its class (the variant and
 * every timing drawn from the round's seeded PRNG), and checks the invariants.
 */
import { nowMs, ServiceProcess, sumMetric } from "../helpers.ts";
import { Checks, healthWithin, jobsSettled, storageInvariants } from "./invariants.ts";
import { FRAGMENT_MS, hold, PATTERN, STREAM_TIMEOUT_S, World } from "./world.ts";
import { INVALID_PRODUCERS, PRODUCER_VARIANTS, producerSource, VALID_PRODUCERS } from "./producers.ts";
import { HTTP_VARIANTS, httpFaults } from "./http_faults.ts";

export interface Round {
  rand: () => number;
  variant: string;
  checks: Checks;
  /** Long runs hold faults for minutes; the short run for seconds. */
  long: boolean;
  /** A round is one fault: the number injected (a kill, an outage, a request burst). */
  injected: number;
}

export interface FaultClass {
  name: string;
  variants: readonly string[];
  /** Root only (a tmpfs): skipped, and reported so, elsewhere. */
  needsRoot?: boolean;
  run(r: Round): Promise<void>;
}

const between = (rand: () => number, lo: number, hi: number) => lo + rand() * (hi - lo);

/**
 * Frames lost to a kill may be those of the fragment in progress, and those on their way to it:
 * the frame clock holds a frame until no earlier one can come (its release check runs every 250 ms).
 */
const KILL_LOSS_MS = FRAGMENT_MS + 250;

const KILL_MOMENTS = [
  "recording",
  "mid-fragment",
  "chunk-close",
  "metadata-rewrite",
  "save",
  "clip-stream",
  "janitor-deletion",
  "startup",
] as const;

const kill: FaultClass = {
  name: "kill",
  variants: KILL_MOMENTS,
  async run(r) {
    // ~0.5 MB chunks against the smallest budget (1 MiB) keep the janitor deleting.
    const world = await World.create({
      env: { STORAGE_SIZE_GB: "0.001" },
      pattern: { ...PATTERN, width: 640, height: 360, bitrateKbps: 2000 },
    });
    try {
      let s = await world.start();
      await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk", 20_000);
      const ranges = async () => {
        const res = await world.api("/command", { method: "POST", body: `{"command":"get-storage-state"}` });
        return (await res.json()).stored_video as { from: string; to: string }[];
      };
      let killAt: number;
      switch (r.variant as typeof KILL_MOMENTS[number]) {
        case "recording":
          await hold(between(r.rand, 0, 3000));
          break;
        case "mid-fragment":
          await s.waitForLog((l) => l.msg === "chunk opened" && !!l.path, "a chunk opening");
          await hold(between(r.rand, 0, FRAGMENT_MS));
          break;
        case "chunk-close":
        case "metadata-rewrite": {
          const closes = s.logs.filter((l) => l.msg === "chunk closed").length;
          await s.waitForLog(
            (l) => l.msg === "chunk closed" && s.logs.filter((m) => m.msg === "chunk closed").length > closes,
            "a chunk close",
          );
          // The index commit and metadata.json follow the close within milliseconds.
          await hold(r.variant === "chunk-close" ? between(r.rand, 0, 3) : between(r.rand, 2, 30));
          break;
        }
        case "save": {
          const range = (await ranges())[0];
          for (let i = 0; i < 1 + Math.floor(r.rand() * 4); i++) {
            const res = await world.api("/command", {
              method: "POST",
              body: JSON.stringify({ command: "save", ...range, async: true, tags: [`t${i}`] }),
            });
            const body = await res.json();
            if (body.job_id) world.jobs.add(body.job_id);
          }
          await hold(between(r.rand, 0, 80));
          break;
        }
        case "clip-stream": {
          const range = (await ranges())[0];
          const res = await world.api(`/api/clip?from=${range.from}&to=${range.to}`);
          const reader = res.body!.getReader();
          await reader.read();
          await hold(between(r.rand, 0, 20));
          killAt = await world.kill();
          await reader.cancel().catch(() => {});
          break;
        }
        case "janitor-deletion": {
          await s.waitForLog((l) => l.msg === "chunk deleted", "a janitor deletion", 30_000);
          const deleted = s.logs.filter((l) => l.msg === "chunk deleted").length;
          await s.waitForLog(
            (l) =>
              l.msg === "chunk deleted" && s.logs.filter((m) => m.msg === "chunk deleted").length > deleted,
            "the next deletion",
            30_000,
          );
          await hold(between(r.rand, 0, 3));
          break;
        }
        case "startup":
          await hold(between(r.rand, 0, 2000));
          break;
      }
      killAt ??= await world.kill();
      r.injected++;
      const mustHave = world.sentBy(killAt - KILL_LOSS_MS);
      if (r.variant === "startup") {
        // A second kill while the restart migrates and recovers.
        world.runs.push(new ServiceProcess(world.env));
        await hold(between(r.rand, 0, 400));
        await world.kill();
        r.injected++;
      }
      s = await world.start();
      await s.waitForLog((l) => l.msg === "chunk opened", "recording after the restart", 20_000);
      await jobsSettled(world, r.checks);
      const code = await world.stop();
      r.checks.check("clean stop after the restart (exit 0)", code === 0, `exit ${code}`);
      const kept = world.indexedFrames(killAt);
      r.checks.check(
        "frames lost to a kill: at most the fragment in progress",
        kept >= mustHave,
        `${kept} frames kept of ${mustHave} sent before kill - ${KILL_LOSS_MS} ms`,
      );
      await storageInvariants(world, r.checks);
    } finally {
      await world.close();
    }
  },
};

/** Producers that misbehave: valid messy streams keep every frame; invalid input never reaches a chunk. */
const producer: FaultClass = {
  name: "producer",
  variants: PRODUCER_VARIANTS,
  async run(r) {
    const stallMs = Math.round(between(r.rand, 3000, r.long ? 30_000 : 8000));
    const world = await World.create({ source: (sent) => producerSource(r.variant, r.rand, sent) });
    try {
      const s = await world.start();
      if (r.variant === "handshake-stall" || r.variant === "tcp-stall") {
        if (r.variant === "tcp-stall") {
          await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk", 20_000);
        }
        world.relayProxy.pause();
        r.injected++;
        const pausedAt = nowMs();
        await healthWithin(
          world,
          r.checks,
          "degraded by the hung relay",
          (h) => h.reasons?.some((x: string) => x.startsWith("stream ")),
          STREAM_TIMEOUT_S * 2000 + 2000,
        );
        await hold(Math.max(0, pausedAt + stallMs - nowMs()));
        world.relayProxy.reset();
        world.relayProxy.resume();
        const connections = s.logs.filter((l) => l.msg === "connected").length;
        await r.checks.eventually("reconnects after the stall", () =>
          s.waitForLog(
            (l) => l.msg === "connected" && s.logs.filter((m) => m.msg === "connected").length > connections,
            "a reconnect",
            10_000,
          ));
        await healthWithin(world, r.checks, "ok after the stall", (h) => h.status === "ok", 10_000);
        const opened = s.logs.filter((l) => l.msg === "chunk opened").length;
        await r.checks.eventually("recording resumes at a keyframe after the stall", () =>
          s.waitForLog(
            (l) => l.msg === "chunk opened" && s.logs.filter((m) => m.msg === "chunk opened").length > opened,
            "a chunk after the stall",
            10_000,
          ));
        await hold(FRAGMENT_MS * 2);
      } else {
        r.injected++;
        await world.source.finished;
      }
      await world.endSource();
      const metrics = await s.metrics();
      const code = await world.stop();
      r.checks.check("clean stop (exit 0)", code === 0, `exit ${code}`);
      const written = world.indexedFrames(), sent = world.sentBy(Infinity);
      r.checks.check("recording went on", written > 0, `${written} frames written`);
      if ((VALID_PRODUCERS as readonly string[]).includes(r.variant)) {
        r.checks.check(
          "a valid messy stream keeps every frame",
          written === sent,
          `${written} written of ${sent}`,
        );
      } else if ((INVALID_PRODUCERS as readonly string[]).includes(r.variant)) {
        const counted = sumMetric(metrics, "storage_bad_input_total") +
          sumMetric(metrics, "storage_frames_dropped_total") +
          sumMetric(metrics, "storage_frames_skipped_total");
        r.checks.check("invalid input is counted", counted > 0, `${counted} counted`);
      }
      await storageInvariants(world, r.checks);
    } finally {
      await world.close();
    }
  },
};

const http: FaultClass = {
  name: "http",
  variants: HTTP_VARIANTS,
  async run(r) {
    const world = await World.create();
    try {
      const s = await world.start();
      await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk", 20_000);
      await httpFaults(world, r);
      await healthWithin(world, r.checks, "ok after the requests", (h) => h.status === "ok", 10_000);
      await jobsSettled(world, r.checks);
      const code = await world.stop();
      r.checks.check("clean stop (exit 0)", code === 0, `exit ${code}`);
      await storageInvariants(world, r.checks);
    } finally {
      await world.close();
    }
  },
};

const broker: FaultClass = {
  name: "broker",
  variants: ["pause", "reset", "refuse"],
  async run(r) {
    const world = await World.create();
    try {
      const s = await world.start();
      await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk", 20_000);
      const outageMs = Math.round(between(r.rand, 5000, r.long ? 180_000 : 20_000));
      const start = nowMs();
      r.injected++;
      if (r.variant === "pause") world.brokerProxy.pause();
      else if (r.variant === "refuse") world.brokerProxy.refuse();
      // Every variant cuts the connection the publisher holds (a refusing port drops it too).
      world.brokerCut = true;
      if (r.variant === "reset") {
        // Resets for the whole outage: every connection the publisher makes is cut at once.
        while (nowMs() - start < outageMs) {
          world.brokerProxy.reset();
          await hold(between(r.rand, 50, 1500));
        }
      } else {
        // A silent broker is noticed by two missed 5 s heartbeats; a refusing one at once.
        const within = r.variant === "pause" ? 16_000 : 3000;
        if (outageMs > within) {
          await healthWithin(
            world,
            r.checks,
            `degraded by the ${r.variant}d broker`,
            (h) => h.status === "degraded",
            within,
          );
        }
        await hold(Math.max(0, start + outageMs - nowMs()));
      }
      world.brokerProxy.resume();
      await healthWithin(
        world,
        r.checks,
        "ok after the outage",
        (h) => h.status === "ok" && h.outbox.depth === 0,
        30_000,
      );
      await world.endSource();
      const code = await world.stop();
      r.checks.check("clean stop (exit 0)", code === 0, `exit ${code}`);
      const written = world.indexedFrames(), sent = world.sentBy(Infinity);
      r.checks.check("a broker outage costs no frame", written === sent, `${written} written of ${sent}`);
      await storageInvariants(world, r.checks);
    } finally {
      await world.close();
    }
  },
};

const disk: FaultClass = {
  name: "disk",
  variants: ["full"],
  needsRoot: true,
  async run(r) {
    const world = await World.create({
      tmpfsMib: 24,
      env: { MIN_FREE_DISK_GB: "0", FRAGMENT_DURATION_MS: "200" },
    });
    try {
      const s = await world.start();
      await s.waitForLog((l) => l.msg === "chunk closed", "a first chunk", 20_000);
      const filler = `${world.storage}/../filler.bin`;
      const file = await Deno.open(filler, { write: true, create: true });
      const block = new Uint8Array(256 * 1024);
      try {
        for (;;) await file.write(block);
      } catch (e) {
        if (!(e instanceof Error && /No space|os error 28/.test(e.message))) throw e;
      } finally {
        file.close();
      }
      r.injected++;
      const fullMs = Math.round(between(r.rand, 3000, r.long ? 180_000 : 15_000));
      const start = nowMs();
      await healthWithin(
        world,
        r.checks,
        "degraded by the full disk",
        (h) => h.reasons?.some((x: string) => x.startsWith("disk full")),
        10_000,
      );
      await hold(Math.max(0, start + fullMs - nowMs()));
      r.checks.check("the service outlives the full disk", (await world.health()).status !== "down");
      await Deno.remove(filler);
      await healthWithin(world, r.checks, "ok when space returns", (h) => h.status === "ok", 15_000);
      await world.endSource();
      const metrics = await s.metrics();
      const code = await world.stop();
      r.checks.check("clean stop (exit 0)", code === 0, `exit ${code}`);
      const written = world.indexedFrames(), sent = world.sentBy(Infinity);
      const lost = sumMetric(metrics, "storage_frames_dropped_total", { reason: "disk_full" });
      const other = sumMetric(metrics, "storage_frames_dropped_total") - lost +
        sumMetric(metrics, "storage_frames_skipped_total");
      r.checks.check(
        "every frame lost to the full disk counts as disk_full",
        other === 0,
        `${other} under other reasons`,
      );
      r.checks.check(
        "every frame sent is written or counted lost",
        written + lost === sent,
        `${written} + ${lost} of ${sent}`,
      );
      await storageInvariants(world, r.checks);
    } finally {
      await world.close();
    }
  },
};

export const FAULT_CLASSES: FaultClass[] = [kill, producer, http, broker, disk];
