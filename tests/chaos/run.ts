/**
 * The chaos suite's runner: rounds of seeded faults against the real service until the time is
 * up, each followed by its invariant checks; a report per fault class.
 */
import { rng } from "../helpers.ts";
import { FAULT_CLASSES, type Round } from "./faults.ts";
import { Checks } from "./invariants.ts";

export interface ChaosOptions {
  seed: number;
  minutes: number;
  /** Only these classes, or `class:variant`s. */
  only?: string[];
  long?: boolean;
  /** Replays one round: the seed a report printed for it (with `only` naming its class:variant). */
  roundSeed?: number;
  log?: (line: string) => void;
}

export interface ClassReport {
  name: string;
  rounds: number;
  injected: number;
  checks: number;
  failures: { name: string; count: number; first: string; round: string }[];
  skipped?: string;
}

/** A round that has not finished in this long has hung: that is a failure of its own. */
const ROUND_LIMIT_MS = 8 * 60_000;

export async function runChaos(o: ChaosOptions): Promise<ClassReport[]> {
  const log = o.log ?? ((l: string) => console.log(l));
  const rand = rng(o.seed);
  const wanted = (name: string, variant?: string) =>
    !o.only || o.only.some((w) => w === name || (variant !== undefined && w === `${name}:${variant}`));
  const reports = new Map<string, ClassReport>();
  const classes = FAULT_CLASSES.filter((c) => wanted(c.name) || c.variants.some((v) => wanted(c.name, v)));
  for (const c of classes) {
    reports.set(c.name, { name: c.name, rounds: 0, injected: 0, checks: 0, failures: [] });
    if (c.needsRoot && Deno.uid() !== 0) reports.get(c.name)!.skipped = "needs root (a tmpfs)";
  }
  const runnable = classes.filter((c) => !reports.get(c.name)!.skipped);
  const deadline = Date.now() + o.minutes * 60_000;
  for (let n = 0; Date.now() < deadline && runnable.length > 0; n++) {
    const c = runnable[n % runnable.length];
    const variants = c.variants.filter((v) => wanted(c.name, v));
    const variant = variants[Math.floor(rand() * variants.length)];
    const roundSeed = o.roundSeed ?? Math.floor(rand() * 2 ** 31);
    const r: Round = { rand: rng(roundSeed), variant, checks: new Checks(), long: !!o.long, injected: 0 };
    const started = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        c.run(r),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`round still running after ${ROUND_LIMIT_MS / 1000} s`)),
            ROUND_LIMIT_MS,
          );
        }),
      ]);
      r.checks.check("round completed", true);
    } catch (e) {
      r.checks.check("round completed", false, e instanceof Error ? e.message.slice(0, 400) : String(e));
    } finally {
      clearTimeout(timer);
    }
    const report = reports.get(c.name)!;
    report.rounds++;
    report.injected += r.injected;
    report.checks += r.checks.list.length;
    for (const f of r.checks.failures) {
      const known = report.failures.find((k) => k.name === f.name);
      if (known) known.count++;
      else {report.failures.push({
          name: f.name,
          count: 1,
          first: f.detail,
          round: `${c.name}:${variant} seed ${roundSeed}`,
        });}
    }
    const failed = r.checks.failures;
    log(
      `round ${
        n + 1
      } ${c.name}:${variant} (seed ${roundSeed}): ${r.injected} injected, ${r.checks.list.length} checks, ` +
        `${failed.length} failed, ${Math.round((Date.now() - started) / 100) / 10} s` +
        failed.map((f) => `\n    FAIL ${f.name}: ${f.detail.slice(0, 300)}`).join(""),
    );
    if (o.roundSeed !== undefined) break;
  }
  return [...reports.values()];
}

/** The report as a table, then one line per distinct failure. */
export function formatReport(seed: number, reports: ClassReport[]): string {
  const lines = [`chaos seed ${seed}`, "class     rounds  injected  checks  failed"];
  for (const r of reports) {
    const failed = r.failures.reduce((n, f) => n + f.count, 0);
    lines.push(
      r.skipped
        ? `${r.name.padEnd(9)} skipped: ${r.skipped}`
        : `${r.name.padEnd(9)} ${String(r.rounds).padStart(6)}  ${String(r.injected).padStart(8)}  ${
          String(r.checks).padStart(6)
        }  ${String(failed).padStart(6)}`,
    );
  }
  for (const r of reports) {
    for (const f of r.failures) {
      lines.push(`FAIL ${r.name}: ${f.name} (x${f.count}; first in ${f.round}): ${f.first.slice(0, 400)}`);
    }
  }
  return lines.join("\n");
}
