/**
 * `deno task chaos [--seed N] [--minutes M] [--only class[:variant],...] [--long]`: the fault
 * injection suite against the real service. The seed is printed first; the same seed replays the
 * same faults. `--only class:variant --round-seed S [--keep]` replays the one round a report names
 * (keeping its storage). Exit 1 if any invariant failed.
 */
import { parseArgs } from "node:util";
import { formatReport, runChaos } from "./run.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    minutes: { type: "string", default: "3" },
    only: { type: "string" },
    long: { type: "boolean", default: false },
    "round-seed": { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const minutes = Number(values.minutes);
if (!Number.isInteger(seed) || !(minutes > 0)) {
  console.error("chaos: --seed must be an integer and --minutes a positive number");
  Deno.exit(2);
}
console.log(`chaos: seed ${seed}, ${minutes} min${values.long ? ", long faults" : ""}`);
if (values.keep) Deno.env.set("CHAOS_KEEP", "1");
const reports = await runChaos({
  seed,
  minutes,
  only: values.only?.split(","),
  long: values.long,
  roundSeed: values["round-seed"] === undefined ? undefined : Number(values["round-seed"]),
});
console.log(formatReport(seed, reports));
Deno.exit(reports.some((r) => r.failures.length > 0) ? 1 : 0);
