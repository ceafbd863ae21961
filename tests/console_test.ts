// deno-lint-ignore-file no-explicit-any -- page functions run in the browser, typed without the DOM
/**
 * The web console in a real browser (Debian's chromium, driven by playwright-core) against a real
 * recording: a relay streaming a 640x360 pattern into the recorder, with API_TOKEN set.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { sourceFrames, startRelay } from "../src/tools/relay.ts";
import {
  ffmpegPath,
  pattern,
  probeDurationMs,
  ROOT,
  ServiceProcess,
  SMALL_PATTERN,
  until,
} from "./helpers.ts";

const TOKEN = "console-test-token";
const ARTIFACTS = join(ROOT, "test-artifacts");

function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

interface Range {
  from: string;
  to: string;
}

/** Chunks merged across gaps of at most `gapMs`, as /api/ranges merges them. */
function merge(chunks: { from: number; to: number }[], gapMs: number): { from: number; to: number }[] {
  const out: { from: number; to: number }[] = [];
  for (const c of [...chunks].sort((a, b) => a.from - b.from)) {
    const last = out.at(-1);
    if (last && c.from - last.to <= gapMs) last.to = Math.max(last.to, c.to);
    else out.push({ ...c });
  }
  return out;
}

Deno.test("the web console: streams, timeline, player, export and the token, in a real browser", async () => {
  const storage = await Deno.makeTempDir();
  const uploads = join(storage, "uploads");
  const relay = await startRelay({
    frames: sourceFrames(await pattern(SMALL_PATTERN)),
    intervalMs: () => 1000 / 30,
    loops: Infinity,
  });
  const svc = new ServiceProcess({
    VIDEO_STREAM_URL: relay.url,
    STORAGE_PATH: storage,
    UPLOAD_PATH: uploads,
    AMQP_URL: "",
    API_TOKEN: TOKEN,
    FFMPEG_PATH: await ffmpegPath(), // thumbnails
    VIDEO_CHUNK_DURATION_SECONDS: "5",
    MIN_FREE_DISK_GB: "0",
  });
  const browser = await launch();
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  try {
    const base = `http://127.0.0.1:${await svc.port("http")}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const getJson = async (path: string) => (await fetch(`${base}${path}`, { headers: auth })).json();
    await until(async () => (await getJson("/api/chunks")).chunks.length >= 4, "4 chunks", 60_000, 500);

    // Without the token: the shell loads and asks for it; no data does.
    const page: Page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().includes("401")) errors.push(m.text());
    });
    const refused: string[] = [];
    page.on("response", (r) => {
      if (r.status() === 401) refused.push(new URL(r.url()).pathname);
    });
    await page.goto(base);
    await page.waitForSelector("#login[open]");
    assert.ok(refused.length > 0, "data calls were refused");
    assert.equal(await page.locator("#timeline .chunk").count(), 0, "nothing shown without the token");
    // With it, everything loads.
    await page.fill("#token", TOKEN);
    await page.click("#login-ok");
    await page.waitForSelector("#timeline .chunk");

    // Streams as /healthz has them.
    const health = await (await fetch(`${base}/healthz`)).json();
    await page.waitForSelector(".stream [data-state='recording']");
    assert.deepEqual(
      await page.locator(".stream").evaluateAll((els) => els.map((e: any) => e.dataset.stream)),
      health.streams.map((s: { stream: string }) => s.stream),
    );

    // The timeline's chunks, merged, are /api/ranges (count and times); the last range's end is
    // the chunk being written, which grows between the two reads, so it may only have moved on.
    for (let i = 0; i < 4; i++) await page.click("#zoom-in"); // 24 h / 4^4: under 6 minutes
    const shown = await page.locator("#timeline .chunk").evaluateAll((els) =>
      els.map((e: any) => ({ from: Date.parse(e.dataset.from), to: Date.parse(e.dataset.to) }))
    );
    const { ranges } = await getJson("/api/ranges");
    const merged = merge(shown, 1000);
    assert.equal(merged.length, ranges.length);
    merged.forEach((r, i) => {
      const range = ranges[i] as Range, to = Date.parse(range.to);
      assert.equal(r.from, Date.parse(range.from), `range ${i} starts`);
      if (i < merged.length - 1) assert.equal(r.to, to, `range ${i} ends`);
      else {assert.ok(
          r.to <= to && to - r.to < 5000,
          `the growing range ends ${to - r.to} ms after the timeline's`,
        );}
    });

    // A chunk's thumbnail on hover, at the chunk's size.
    const second = (await page.locator("#timeline .chunk").nth(1).boundingBox())!;
    await page.mouse.move(second.x + second.width / 2, second.y + second.height / 2);
    await page.waitForSelector("#thumb:not([hidden])", { timeout: 20_000 });
    await page.waitForFunction(() => (globalThis as any).document.getElementById("thumb").naturalWidth > 0);
    assert.deepEqual(
      await page.evaluate(() => {
        const img = (globalThis as any).document.getElementById("thumb");
        return [img.naturalWidth, img.naturalHeight];
      }),
      [640, 360],
    );

    // A click plays from that moment: the wall clock shown starts within a GOP before it.
    const chunks = (await getJson("/api/chunks")).chunks;
    const target = (Date.parse(chunks[1].from) + Date.parse(chunks[1].to)) / 2;
    const box = (await page.locator("#timeline").boundingBox())!;
    const view = await page.evaluate(() => {
      const w = (globalThis as any).document.getElementById("window")!;
      return w.dataset.from ? [Number(w.dataset.from), Number(w.dataset.to)] : null;
    });
    assert.ok(view, "the timeline says its window");
    await page.mouse.click(
      box.x + (target - view![0]) / (view![1] - view![0]) * box.width,
      box.y + box.height / 2,
    );
    await page.waitForFunction(
      () => ((globalThis as any).document.getElementById("video")).currentTime > 1.5,
      null,
      {
        timeout: 20_000,
      },
    );
    const played = await page.evaluate(() => {
      const v = (globalThis as any).document.getElementById("video");
      return {
        w: v.videoWidth,
        h: v.videoHeight,
        wall: Number((globalThis as any).document.getElementById("clock")!.dataset.wallMs),
        t: v.currentTime,
        start: Number((globalThis as any).document.getElementById("clock")!.dataset.startS),
      };
    });
    assert.deepEqual([played.w, played.h], [640, 360]);
    const clipFrom = played.wall - (played.t - played.start) * 1000;
    assert.ok(
      target - clipFrom >= -50 && target - clipFrom <= 1050,
      `played from ${target - clipFrom} ms before the click`,
    );

    // Export 10 s into UPLOAD_PATH.
    const from = Date.parse(chunks[0].from) + 500;
    await page.fill("#from", new Date(from).toISOString());
    await page.fill("#to", new Date(from + 10_000).toISOString());
    await page.click("#save");
    const done = page.locator("#jobs li[data-state='done']");
    await done.waitFor({ timeout: 30_000 });
    const filename = (await done.textContent())!.replace(/^saved /, "");
    const ms = await probeDurationMs(join(uploads, filename));
    assert.ok(Math.abs(ms - 10_000) <= 100, `the export lasts ${ms} ms`);

    assert.deepEqual(errors, [], "no console errors");
    await page.screenshot({ path: join(ARTIFACTS, "console-1280x800.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(ARTIFACTS, "console-390x844.png"), fullPage: true });
    await page.close();
  } finally {
    await browser.close();
    svc.signal("SIGTERM");
    await svc.exit();
    await relay.close();
    await Deno.remove(storage, { recursive: true });
  }
});
