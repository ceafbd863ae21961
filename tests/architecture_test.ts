/**
 * The layout the folders promise (docs/architecture.md): no import cycles; a stage of `src/`
 * imports only itself and the stages before it; `actors/` build on `src/`, and `src/` does not
 * import them but in `src/app/`, which wires them.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { ROOT } from "./helpers.ts";

/** The stages of `src/`, in the order they may import each other, then what assembles them. */
const STAGES = ["runtime", "ingest", "record", "publish", "store", "serve", "app", "tools"];

type Graph = Map<string, string[]>;

/** Every module under `src/` and `actors/` and the project modules it imports (paths from ROOT). */
function importGraph(): Graph {
  const graph: Graph = new Map();
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(join(ROOT, dir))) {
      const path = join(dir, e.name);
      if (e.isDirectory) walk(path);
      else if (path.endsWith(".ts")) {
        const text = Deno.readTextFileSync(join(ROOT, path));
        const specs = text.matchAll(/(?:^|\n)\s*(?:import|export)[^"';]*?from\s*["'](\.{1,2}\/[^"']+)["']/g);
        graph.set(path, [...specs].map((m) => normalize(join(dirname(path), m[1]))));
      }
    }
  };
  walk("src");
  walk("actors");
  return graph;
}

/** Each import cycle, as the trail of modules around it. */
function cycles(graph: Graph): string[] {
  const found: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (path: string, trail: string[]) => {
    if (state.get(path) === "done") return;
    if (state.get(path) === "open") {
      found.push([...trail.slice(trail.indexOf(path)), path].join(" -> "));
      return;
    }
    state.set(path, "open");
    for (const next of graph.get(path) ?? []) visit(next, [...trail, path]);
    state.set(path, "done");
  };
  for (const path of graph.keys()) visit(path, []);
  return found;
}

/** Imports against the stage order, and actors imported outside the wiring (or importing it). */
function layoutViolations(graph: Graph): string[] {
  const stageOf = (path: string) => path.startsWith("src/") ? path.split("/")[1] : null;
  const wrong: string[] = [];
  for (const [from, targets] of graph) {
    const stage = stageOf(from);
    if (stage !== null && !STAGES.includes(stage)) wrong.push(`${from}: not in a stage folder`);
    for (const to of targets) {
      const target = stageOf(to);
      if (to.startsWith("actors/")) {
        if (stage !== null && stage !== "app") wrong.push(`${from} -> ${to}: only src/app/ wires actors`);
      } else if (stage === null) {
        if (target === "app" || target === "tools") {
          wrong.push(`${from} -> ${to}: an actor imports the wiring`);
        }
      } else if (STAGES.indexOf(target!) > STAGES.indexOf(stage)) {
        wrong.push(`${from} -> ${to}: ${stage} imports the later stage ${target}`);
      }
    }
  }
  return wrong;
}

Deno.test("no module imports, directly or not, a module that imports it", () => {
  const graph = importGraph();
  assert.ok(graph.size > 50 && [...graph.values()].flat().length > 150, "the scan finds the imports");
  assert.deepEqual(cycles(graph), []);
});

Deno.test("src/ is in stages, each importing only itself and earlier ones; actors build on src/", () => {
  assert.deepEqual(layoutViolations(importGraph()), []);
});

Deno.test("the layout checks report a cycle, a backward import and an actor imported by a stage", () => {
  const graph: Graph = new Map([
    ["src/store/a.ts", ["src/serve/b.ts", "src/runtime/log.ts"]],
    ["src/serve/b.ts", ["src/store/a.ts", "actors/writer.ts"]],
    ["actors/writer.ts", ["src/app/config.ts"]],
    ["src/misc.ts", []],
  ]);
  assert.deepEqual(cycles(graph), ["src/store/a.ts -> src/serve/b.ts -> src/store/a.ts"]);
  assert.deepEqual(layoutViolations(graph), [
    "src/store/a.ts -> src/serve/b.ts: store imports the later stage serve",
    "src/serve/b.ts -> actors/writer.ts: only src/app/ wires actors",
    "actors/writer.ts -> src/app/config.ts: an actor imports the wiring",
    "src/misc.ts: not in a stage folder",
  ]);
});
