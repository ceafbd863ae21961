import assert from "node:assert/strict";
import { formatReport, runChaos } from "./chaos/run.ts";

/** The short run of `deno task chaos`: a fixed seed, about three minutes, every fault class. */
const SEED = 20261122;

Deno.test("chaos: three minutes of seeded faults leave every invariant true", async () => {
  const reports = await runChaos({ seed: SEED, minutes: 3, log: () => {} });
  const report = formatReport(SEED, reports);
  console.log(report);
  assert.ok(reports.every((r) => r.rounds > 0 || r.skipped), "every fault class ran");
  assert.deepEqual(reports.flatMap((r) => r.failures.map((f) => `${r.name}: ${f.name}`)), [], report);
});
