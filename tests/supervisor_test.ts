import assert from "node:assert/strict";
import { type Behavior, Mailbox } from "../src/runtime/actor.ts";
import { ESCALATION_EXIT_CODE, Supervisor } from "../src/runtime/supervisor.ts";
import { until } from "./helpers.ts";

type Msg = { n: number; boom?: boolean };

function counterSpec(name: string, seen: number[], created: { count: number }) {
  const mailbox = new Mailbox<Msg>(100);
  return {
    mailbox,
    spec: {
      name,
      mailbox,
      create: (): Behavior<Msg> => {
        created.count++;
        return {
          receive: (m: Msg) => {
            if (m.boom) throw new Error(`boom ${m.n}`);
            seen.push(m.n);
          },
        };
      },
    },
  };
}

Deno.test("a failed actor alone is restarted, keeps its mailbox, and health shows the restart", async () => {
  const restarts: string[] = [];
  const sup = new Supervisor({
    maxRestarts: 5,
    windowMs: 60_000,
    backoffBaseMs: 1,
    onRestart: (a) => restarts.push(a),
  });
  const seenA: number[] = [], seenB: number[] = [];
  const createdA = { count: 0 }, createdB = { count: 0 };
  const a = counterSpec("a", seenA, createdA);
  const b = counterSpec("b", seenB, createdB);
  sup.register(a.spec);
  sup.register(b.spec);
  await sup.start();
  a.mailbox.send({ n: 1 });
  a.mailbox.send({ n: 2, boom: true });
  a.mailbox.send({ n: 3 });
  b.mailbox.send({ n: 10 });
  await until(() => sup.health()[0].restarts === 1 && sup.health()[0].state === "running", "restart");
  await sup.shutdown(); // drains: message 3 reaches the restarted instance
  assert.deepEqual(seenA, [1, 3]);
  assert.deepEqual(seenB, [10]);
  assert.equal(createdA.count, 2);
  assert.equal(createdB.count, 1);
  assert.deepEqual(restarts, ["a"]);
  const health = sup.health();
  assert.deepEqual(health.map((h) => [h.actor, h.restarts, h.lastError, h.state]), [
    ["a", 1, "boom 2", "stopped"],
    ["b", 0, null, "stopped"],
  ]);
  assert.equal(await sup.done, 0);
});

Deno.test("too many restarts in the window escalate to a shutdown with exit code 70", async () => {
  const sup = new Supervisor({ maxRestarts: 2, windowMs: 60_000, backoffBaseMs: 1 });
  const seen: number[] = [];
  const { mailbox, spec } = counterSpec("flaky", seen, { count: 0 });
  const stopped: string[] = [];
  const other = new Mailbox<Msg>(10);
  sup.register({
    name: "other",
    mailbox: other,
    create: () => ({ receive() {}, close: () => void stopped.push("other") }),
  });
  sup.register(spec);
  await sup.start();
  for (let i = 0; i < 5; i++) mailbox.send({ n: i, boom: true });
  assert.equal(await sup.done, ESCALATION_EXIT_CODE);
  assert.deepEqual(stopped, ["other"]);
  assert.equal(sup.health().find((h) => h.actor === "flaky")?.state, "failed");
  assert.equal(sup.health().find((h) => h.actor === "flaky")?.restarts, 3);
});

Deno.test("a failing run() loop is a failure too, and the backoff grows", async () => {
  let runs = 0;
  const starts: number[] = [];
  const sup = new Supervisor({ maxRestarts: 3, windowMs: 60_000, backoffBaseMs: 20 });
  sup.register({
    name: "runner",
    mailbox: new Mailbox<never>(1),
    create: () => ({
      receive() {},
      run: () => {
        starts.push(performance.now());
        return ++runs <= 3 ? Promise.reject(new Error("socket died")) : new Promise<void>(() => {});
      },
    }),
  });
  await sup.start();
  await until(() => runs === 4, "fourth run");
  const gaps = starts.slice(1).map((t, i) => t - starts[i]);
  assert.ok(gaps[0] >= 20 && gaps[1] >= 40 && gaps[2] >= 80, `gaps ${gaps.map(Math.round)}`);
  await sup.shutdown();
});

Deno.test("a mailbox refuses frames past its message or byte bound, yet control messages get through", () => {
  const box = new Mailbox<{ type: string; size: number }>(3, 100, (m) => m.size);
  assert.equal(box.send({ type: "frame", size: 60 }), true);
  assert.equal(box.send({ type: "frame", size: 60 }), false); // bytes
  assert.equal(box.send({ type: "frame", size: 10 }), true);
  assert.equal(box.send({ type: "frame", size: 10 }), true);
  assert.equal(box.send({ type: "frame", size: 1 }), false); // count
  assert.equal(box.send({ type: "close", size: 0 }), true);
  assert.equal(box.size, 4);
});

Deno.test("a mailbox wait ends on its own signal's abort only, with one listener per signal", async () => {
  const box = new Mailbox<{ n: number }>(10);
  const first = new AbortController();
  let listeners = 0;
  const add = first.signal.addEventListener.bind(first.signal);
  first.signal.addEventListener = ((...a: Parameters<typeof add>) => (listeners++, add(...a))) as typeof add;
  for (let n = 0; n < 100; n++) {
    const next = box.take(first.signal);
    box.send({ n });
    assert.deepEqual(await next, { n });
  }
  assert.equal(listeners, 1);
  // A wait without a signal (a stopping actor draining) is not ended by the old signal's abort.
  const draining = box.take();
  first.abort();
  box.send({ n: 100 });
  assert.deepEqual(await draining, { n: 100 });
  const second = new AbortController();
  const waiting = box.take(second.signal);
  second.abort();
  assert.equal(await waiting, undefined);
  assert.equal(box.poll(), undefined);
});
