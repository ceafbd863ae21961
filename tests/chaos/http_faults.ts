/**
 * HTTP faults: malformed and hostile requests at the clip API. Every answer must be a 2xx or a 4xx
 * (never a 5xx), no error may name an absolute path, and half-sent requests get a 408 in time.
 */
import type { Round } from "./faults.ts";
import type { World } from "./world.ts";
import { HALF_SENT, sendRaw } from "../helpers.ts";
import { BODY_TIMEOUT_MS } from "../../src/serve/clip/api.ts";

export const HTTP_VARIANTS = [
  "malformed",
  "wrong-types",
  "traversal",
  "long-labels",
  "many-tags",
  "absurd-ranges",
  "half-sent",
  "many-clients",
] as const;

async function ranges(world: World): Promise<{ from: string; to: string }[]> {
  const res = await world.api("/command", { method: "POST", body: `{"command":"get-storage-state"}` });
  return (await res.json()).stored_video;
}

/** A POST /command body, or a GET of a path. */
type Req = { body: string } | { path: string };

/** The requests of `variant`. */
function requests(variant: string, rand: () => number, range: { from: string; to: string }): Req[] {
  const pick = (n: number) => Math.floor(rand() * n);
  const randomText = (n: number) =>
    Array.from({ length: n }, () => String.fromCharCode(pick(0x3000))).join("");
  const save = (extra: Record<string, unknown>) => JSON.stringify({ command: "save", ...range, ...extra });
  switch (variant) {
    case "malformed":
      return ["{", "[]", "null", '"save"', randomText(200), '{"command":', "\u0000\u0001", ""].map((
        body,
      ) => ({ body }));
    case "wrong-types":
      return [
        { command: 7 },
        { command: "save", from: 1, to: 2 },
        { command: "save", ...range, tags: "x" },
        { command: "save", ...range, tags: [1, {}] },
        { command: "save", ...range, metadata: {} },
        { command: "fetch", from: [], to: null },
        { command: "save", ...range, stream: 5 },
        { command: "save", ...range, async: "yes" },
      ].map((b) => ({ body: JSON.stringify(b) }));
    case "traversal":
      return [
        save({ metadata: "../../etc" }),
        save({ tags: ["..", "a/b"] }),
        save({ metadata: "a\\b" }),
        save({ stream: "../default" }),
        JSON.stringify({ command: "fetch", ...range, stream: "/etc/passwd" }),
      ].map((body): Req => ({ body })).concat([{ path: "/api/jobs/..%2F..%2Findex.db" }, {
        path: "/../../index.db",
      }]);
    case "long-labels":
      return [
        save({ metadata: "é".repeat(100) }),
        save({ metadata: "語".repeat(100) }),
        save({ tags: ["語".repeat(100)] }),
        save({ metadata: "x".repeat(5000) }),
        save({ tags: ["a".repeat(256)] }),
      ].map((body) => ({ body }));
    case "many-tags":
      return [300, 2000, 20 + pick(100)].map((n) => ({
        body: save({ tags: Array.from({ length: n }, (_, i) => `t${i}`) }),
      }));
    case "absurd-ranges":
      return [
        { from: "9999-12-31_23-59-59", to: "9999-12-31_23-59-59Z" },
        { from: "0000-01-01T00:00:00Z", to: "9999-01-01T00:00:00Z" },
        { from: range.to, to: range.from },
        { from: "2026-13-45_99-99-99", to: range.to },
        { from: "1e308", to: "NaN" },
      ].flatMap((r) => [
        { body: JSON.stringify({ command: "fetch", ...r }) },
        { path: `/api/clip?from=${encodeURIComponent(r.from)}&to=${encodeURIComponent(r.to)}` },
        { path: `/api/ranges?from=${encodeURIComponent(r.from)}&to=${encodeURIComponent(r.to)}` },
      ]);
  }
  return [];
}

export async function httpFaults(world: World, r: Round): Promise<void> {
  const port = await world.service!.port("http");
  const secrets = [world.storage, world.uploads];
  const judge = async (res: Response, what: string) => {
    const text = await res.text();
    // Load shedding is the contract: beyond CLIP_MAX_CONCURRENT clip reads, 503 with Retry-After.
    const shed = res.status === 503 && res.headers.has("retry-after") && /CLIP_MAX_CONCURRENT/.test(text);
    r.checks.check(
      "no 5xx but a clip read shed with Retry-After",
      res.status < 500 || shed,
      `${what}: ${res.status} ${text.slice(0, 200)}`,
    );
    // get-storage-state names STORAGE_PATH by contract; an error never names a path.
    const leaked = res.status >= 400 && secrets.find((p) => text.includes(p));
    r.checks.check("no absolute path in an error", !leaked, `${what}: ${text.slice(0, 200)}`);
    if (res.status === 200 || res.status === 202) {
      try {
        const id = JSON.parse(text).job_id;
        if (id) world.jobs.add(id);
      } catch { /* a clip body */ }
    }
  };
  if (r.variant === "half-sent") {
    const n = 20 + Math.floor(r.rand() * 80);
    const results = await Promise.all(
      Array.from(
        { length: n },
        () => sendRaw(port, r.rand() < 0.5 ? HALF_SENT.headers : HALF_SENT.body, BODY_TIMEOUT_MS + 5000),
      ),
    );
    r.injected += n;
    const held = results.filter((x) => !x.closed);
    r.checks.check(
      "half-sent requests are answered and let go in time",
      held.length === 0,
      `${held.length} of ${n} still open after ${BODY_TIMEOUT_MS / 1000 + 5} s`,
    );
    r.checks.check(
      "half-sent requests get a 4xx",
      results.every((x) => /^HTTP\/1\.1 4\d\d/.test(x.answer)),
      [...new Set(results.map((x) => x.answer.split("\r\n")[0]))].join(" | "),
    );
    return;
  }
  if (r.variant === "many-clients") {
    const n = 100 + Math.floor(r.rand() * 200);
    const range = (await ranges(world))[0];
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      const body = i % 3 === 0
        ? `{"command":"get-storage-state"}`
        : JSON.stringify({ command: "fetch", ...range });
      await judge(await world.api("/command", { method: "POST", body }), `client ${i}`);
    }));
    r.injected += n;
    return;
  }
  const range = (await ranges(world))[0];
  for (const req of requests(r.variant, r.rand, range)) {
    r.injected++;
    const res = "path" in req
      ? await world.api(req.path)
      : await world.api("/command", { method: "POST", body: req.body });
    await judge(res, `${r.variant}: ${JSON.stringify(req).slice(0, 120)}`);
  }
  const depth = (dir: string): number => {
    let deepest = 0;
    try {
      for (const e of Deno.readDirSync(dir)) {
        if (e.isDirectory) deepest = Math.max(deepest, 1 + depth(`${dir}/${e.name}`));
      }
    } catch { /* no uploads yet */ }
    return deepest;
  };
  const d = depth(world.uploads);
  r.checks.check("saved clips sit at most 3 folders deep", d <= 3, `${d} levels`);
}
